package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"bulwark/internal/audit"
)

// writeJSON prints v indented, for -o json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// cell makes a value from the Console safe for a terminal table: control
// characters (escape sequences, tabs, newlines) are shown escaped, and an
// empty value as "-".
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// timeCell shows t in local time to the second; the zero time is "-".
func timeCell(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func writeUsers(w io.Writer, users []user) error {
	t := newTable(w, "USERNAME", "ROLE", "AUTH", "LAST MODIFIED")
	for _, u := range users {
		t.row(u.Username, u.Role, u.AuthType, timeCell(u.LastModified))
	}
	return t.flush()
}

func writeKeys(w io.Writer, keys []accessKey) error {
	t := newTable(w, "ID", "USER", "NAME", "ROLE", "CREATED", "EXPIRES", "LAST USED")
	for _, k := range keys {
		role := k.Role
		if role == "" {
			role = "(owner's)"
		}
		expires := timeCell(k.ExpiresAt)
		if expires == "" {
			expires = "never"
		}
		t.row(k.ID, k.Username, k.Name, role, timeCell(k.CreatedAt), expires, timeCell(k.LastUsedAt))
	}
	return t.flush()
}

func writeAudits(w io.Writer, recs []audit.Mgmt) error {
	t := newTable(w, "TIME", "USER", "TYPE", "STATUS", "METHOD", "API", "SOURCE IP", "DIFF")
	for _, r := range recs {
		t.row(timeCell(r.Time), r.Username, r.Type, r.Status, r.Method, r.API, r.SourceIP, r.Diff)
	}
	return t.flush()
}
