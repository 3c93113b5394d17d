package shim

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"bulwark/api/shimv1"
)

// maxMessage bounds a decision's message: engines show it on one line.
const maxMessage = 2048

func encodeDecision(d shimv1.Decision) ([]byte, error) {
	if len(d.Message) > maxMessage {
		d.Message = d.Message[:maxMessage-len("…")] + "…"
	}
	return json.Marshal(d)
}

// AuditFile is one record the shim left in the audit directory.
type AuditFile struct {
	Path  string
	Audit shimv1.Audit
	// Err says why the file is not a valid record; it should be reported
	// and removed all the same.
	Err error
}

// ReadAudits returns up to max records from dir, oldest first (the shim
// names them by time). Temporary files of a shim that died while writing
// are removed once they are a minute old. A missing dir holds nothing.
func ReadAudits(dir string, max int) ([]AuditFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shim audit dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				_ = os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		if e.Type().IsRegular() && strings.HasSuffix(name, ".json") {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, compareRecordNames)
	if len(names) > max {
		names = names[:max]
	}
	out := make([]AuditFile, 0, len(names))
	for _, name := range names {
		path := filepath.Join(dir, name)
		af := AuditFile{Path: path}
		b, err := readLimited(path, shimv1.MaxFileBytes)
		if err == nil {
			af.Audit, err = shimv1.DecodeAudit(b)
		}
		af.Err = err
		out = append(out, af)
	}
	return out, nil
}

// compareRecordNames orders "<unix nanos>-<pid>.json" by time, then name.
func compareRecordNames(a, b string) int {
	ta, _, _ := strings.Cut(a, "-")
	tb, _, _ := strings.Cut(b, "-")
	na, errA := strconv.ParseInt(ta, 10, 64)
	nb, errB := strconv.ParseInt(tb, 10, 64)
	if errA == nil && errB == nil && na != nb {
		return cmp.Compare(na, nb)
	}
	return strings.Compare(a, b)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, err
}
