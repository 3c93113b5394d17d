// Package shim is the Defender's side of bulwark-shim: it puts the shim in
// place of runc and the original back (byte for byte), finds the runc
// binaries that container engines run, serves decisions on the unix socket
// the shim asks, and reads the audit records the shim leaves when it had to
// decide alone. The decision itself comes from the Defender (Decider).
package shim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"bulwark/api/shimv1"
)

// Paths are where a Defender's shim directory keeps the socket, the
// settings and the shim's audit records.
type Paths struct {
	Socket   string
	Settings string
	AuditDir string
}

// PathsIn returns the paths of a shim directory.
func PathsIn(dir string) Paths {
	return Paths{
		Socket:   filepath.Join(dir, shimv1.SocketName),
		Settings: filepath.Join(dir, shimv1.SettingsName),
		AuditDir: filepath.Join(dir, shimv1.AuditDirName),
	}
}

// State says how a runc path stands.
type State string

// The states of a runc path.
const (
	// StateNotInstalled: runc is there, the shim is not.
	StateNotInstalled State = "not-installed"
	// StateInstalled: the shim is in place, the original runc beside it,
	// both as the manifest says.
	StateInstalled State = "installed"
	// StateOutdated: installed, but with another build of the shim than
	// the one the Defender carries; Install updates it.
	StateOutdated State = "outdated"
	// StateReplaced: installed once, but runc was put back in place since
	// (a package upgrade); Install moves the new runc aside, Uninstall
	// removes the stale original.
	StateReplaced State = "replaced"
	// StateBroken: the shim is in place but the original is missing or
	// differs from the manifest, or the manifest is unreadable. Nothing is
	// touched; an operator must look.
	StateBroken State = "broken"
)

// Status is one runc path's state.
type Status struct {
	Path     string           `json:"path"`
	State    State            `json:"state"`
	Detail   string           `json:"detail,omitempty"`
	Manifest *shimv1.Manifest `json:"manifest,omitempty"`
}

// Errors of install and uninstall.
var (
	// ErrNotRunc: the path holds a binary that is neither runc nor the shim.
	ErrNotRunc = errors.New("not a runc binary")
	// ErrBroken: the installation is inconsistent; nothing was changed.
	ErrBroken = errors.New("shim installation is inconsistent")
)

// Installer puts a shim binary in place of runc binaries and takes it out.
// Install and Uninstall are idempotent: a second call changes nothing.
type Installer struct {
	// Shim is the bulwark-shim binary to put in place.
	Shim string
	// Paths are written into each manifest, for the shim to find the
	// Defender.
	Paths Paths
	// Now stamps manifests; nil means time.Now.
	Now func() time.Time
}

func (in Installer) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// inspection is what is at a runc path.
type inspection struct {
	path     string // symlinks resolved
	sha      string // of the file at path
	manifest *shimv1.Manifest
	mErr     error  // the manifest exists but is unreadable
	origSHA  string // of the original, "" when absent
	shimSHA  string // of the Installer's shim, "" when not asked
}

func (in Installer) inspect(path string, withShim bool) (inspection, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return inspection{}, fmt.Errorf("runc at %s: %w", path, err)
	}
	ins := inspection{path: real}
	if ins.sha, err = fileSHA(real); err != nil {
		return ins, fmt.Errorf("runc at %s: %w", real, err)
	}
	if withShim {
		if ins.shimSHA, err = fileSHA(in.Shim); err != nil {
			return ins, fmt.Errorf("shim binary: %w", err)
		}
	} else if in.Shim != "" {
		// Only looking (status, uninstall): a shim binary that is not
		// there just cannot be recognised.
		ins.shimSHA, _ = fileSHA(in.Shim)
	}
	b, err := os.ReadFile(real + shimv1.ManifestSuffix)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		ins.mErr = err
	default:
		m, err := shimv1.DecodeManifest(b)
		if err != nil {
			ins.mErr = err
		} else {
			ins.manifest = &m
		}
	}
	if sha, err := fileSHA(real + shimv1.OriginalSuffix); err == nil {
		ins.origSHA = sha
	}
	return ins, nil
}

// shimInPlace reports whether the file at the path is a shim: the one the
// manifest recorded or the Installer's.
func (ins inspection) shimInPlace() bool {
	return (ins.manifest != nil && ins.sha == ins.manifest.ShimSHA256) || (ins.shimSHA != "" && ins.sha == ins.shimSHA)
}

func (ins inspection) status() Status {
	st := Status{Path: ins.path, Manifest: ins.manifest}
	switch {
	case ins.mErr != nil:
		st.State, st.Detail = StateBroken, "manifest: "+ins.mErr.Error()
	case ins.manifest == nil && ins.shimInPlace():
		st.State, st.Detail = StateBroken, "the shim is in place without a manifest"
	case ins.manifest == nil:
		st.State = StateNotInstalled
	case !ins.shimInPlace():
		st.State, st.Detail = StateReplaced, "runc was put back in place since the shim was installed"
	case ins.origSHA == "":
		st.State, st.Detail = StateBroken, "the original runc is missing at "+ins.path+shimv1.OriginalSuffix
	case ins.origSHA != ins.manifest.SHA256:
		st.State, st.Detail = StateBroken, "the original runc at "+ins.path+shimv1.OriginalSuffix+" differs from the manifest"
	case ins.shimSHA != "" && ins.sha != ins.shimSHA:
		st.State, st.Detail = StateOutdated, "another build of the shim is in place"
	default:
		st.State = StateInstalled
	}
	return st
}

// Status reports how path stands, changing nothing.
func (in Installer) Status(path string) (Status, error) {
	ins, err := in.inspect(path, false)
	if err != nil {
		return Status{Path: path}, err
	}
	return ins.status(), nil
}

// Install puts the shim in place of the runc at path (symlinks resolved):
// the original is linked to <path>.bulwark-orig, the manifest written, and
// the shim, with the original's mode and owner, renamed over path, so that
// there is no moment without a runc at path. It refuses a path that holds
// neither runc nor a shim. changed is false when it was already installed.
func (in Installer) Install(ctx context.Context, path string) (st Status, changed bool, err error) {
	ins, err := in.inspect(path, true)
	if err != nil {
		return Status{Path: path}, false, err
	}
	st = ins.status()
	switch st.State {
	case StateInstalled:
		m := *ins.manifest
		if m.Socket == in.Paths.Socket && m.Settings == in.Paths.Settings && m.AuditDir == in.Paths.AuditDir {
			return st, false, nil
		}
		m.Socket, m.Settings, m.AuditDir = in.Paths.Socket, in.Paths.Settings, in.Paths.AuditDir
		if err := writeManifest(m); err != nil {
			return st, false, err
		}
		st.Manifest = &m
		return st, true, nil
	case StateBroken:
		return st, false, fmt.Errorf("%w at %s: %s", ErrBroken, ins.path, st.Detail)
	case StateOutdated:
		m := *ins.manifest
		staged, err := in.stageShim(ctx, ins.path, m)
		if err != nil {
			return st, false, err
		}
		defer os.Remove(staged) // no-op after the rename
		if err := replace(staged, ins.path); err != nil {
			return st, false, err
		}
		m.ShimSHA256, m.Socket, m.Settings, m.AuditDir = ins.shimSHA, in.Paths.Socket, in.Paths.Settings, in.Paths.AuditDir
		if err := writeManifest(m); err != nil {
			return st, true, err
		}
		st, err := in.Status(ins.path)
		return st, true, err
	}
	// Not installed, or runc replaced since: move this runc aside.
	version, err := runcVersion(ctx, ins.path)
	if err != nil {
		return st, false, err
	}
	fi, err := os.Stat(ins.path)
	if err != nil {
		return st, false, err
	}
	sys, _ := fi.Sys().(*syscall.Stat_t)
	m := shimv1.Manifest{
		V: shimv1.Version, Path: ins.path, Original: ins.path + shimv1.OriginalSuffix, SHA256: ins.sha,
		Mode: uint32(fi.Mode().Perm() | fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)), RuncVersion: version,
		ShimSHA256: ins.shimSHA, Socket: in.Paths.Socket, Settings: in.Paths.Settings, AuditDir: in.Paths.AuditDir,
		InstalledAt: in.now().UTC(),
	}
	if sys != nil {
		m.UID, m.GID = int(sys.Uid), int(sys.Gid)
	}
	// Stage (and try) the shim first: if it cannot run here, nothing moves.
	staged, err := in.stageShim(ctx, ins.path, m)
	if err != nil {
		return st, false, err
	}
	defer os.Remove(staged) // no-op after the rename
	// A crash between these steps leaves runc at its path and, at worst,
	// an original and a manifest that the next Install or Uninstall
	// recognises ("replaced") and finishes or clears.
	if err := moveAside(ins.path, m.Original, ins.sha); err != nil {
		return st, false, err
	}
	if err := writeManifest(m); err != nil {
		return st, true, err
	}
	if err := replace(staged, ins.path); err != nil {
		return st, true, err
	}
	st, err = in.Status(ins.path)
	return st, true, err
}

// Uninstall puts the original runc back at path (a rename: the same bytes,
// mode and owner as before install) and removes the manifest. When runc was
// replaced since install, only the stale original and manifest go. changed
// is false when there was nothing to undo.
func (in Installer) Uninstall(path string) (st Status, changed bool, err error) {
	ins, err := in.inspect(path, false)
	if err != nil {
		return Status{Path: path}, false, err
	}
	st = ins.status()
	switch st.State {
	case StateNotInstalled:
		return st, false, nil
	case StateBroken:
		return st, false, fmt.Errorf("%w at %s: %s; restore runc by hand", ErrBroken, ins.path, st.Detail)
	case StateReplaced:
		if err := os.Remove(ins.path + shimv1.OriginalSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, false, err
		}
	default: // installed or outdated
		if err := os.Rename(ins.path+shimv1.OriginalSuffix, ins.path); err != nil {
			return st, false, fmt.Errorf("restore runc at %s: %w", ins.path, err)
		}
	}
	if err := os.Remove(ins.path + shimv1.ManifestSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return st, true, err
	}
	if err := syncDir(filepath.Dir(ins.path)); err != nil {
		return st, true, err
	}
	st, err = in.Status(ins.path)
	return st, true, err
}

// moveAside makes orig a hard link to the runc at path (a copy where links
// do not work), atomically replacing a stale original, and checks it.
func moveAside(path, orig, sha string) error {
	tmp := orig + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(path, tmp); err != nil {
		if err := copyFile(path, tmp); err != nil {
			return fmt.Errorf("move runc aside: %w", err)
		}
	}
	got, err := fileSHA(tmp)
	if err == nil && got != sha {
		err = fmt.Errorf("the copy at %s has sha256 %s, runc %s", tmp, got, sha)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("move runc aside: %w", err)
	}
	if err := os.Rename(tmp, orig); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("move runc aside: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// stageShim copies the shim next to path with the original's mode and
// owner and checks that it runs on this host. The caller renames it over
// path (replace) or removes it.
func (in Installer) stageShim(ctx context.Context, path string, m shimv1.Manifest) (string, error) {
	src, err := os.Open(in.Shim)
	if err != nil {
		return "", fmt.Errorf("shim binary: %w", err)
	}
	defer src.Close()
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".bulwark-new-*")
	if err != nil {
		return "", fmt.Errorf("stage shim: %w", err)
	}
	staged := f.Name()
	_, err = io.Copy(f, src)
	if err == nil {
		err = f.Chown(m.UID, m.GID)
	}
	if err == nil {
		err = f.Chmod(fileMode(m.Mode))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = selfTest(ctx, staged)
	}
	if err != nil {
		_ = os.Remove(staged)
		return "", fmt.Errorf("stage shim at %s: %w", staged, err)
	}
	return staged, nil
}

// replace renames a staged shim over path: there is a runc (or a shim) at
// path at every moment.
func replace(staged, path string) error {
	if err := os.Rename(staged, path); err != nil {
		return fmt.Errorf("put the shim in place of %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&uint32(os.ModeSetuid) != 0 {
		mode |= os.ModeSetuid
	}
	if m&uint32(os.ModeSetgid) != 0 {
		mode |= os.ModeSetgid
	}
	if m&uint32(os.ModeSticky) != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// selfTest runs a staged shim, which is not yet next to an original and so
// answers --bulwark-shim-version itself: a shim that cannot run on this host
// (a dynamically linked build for another C library) must not replace runc.
func selfTest(ctx context.Context, staged string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, staged, "--bulwark-shim-version").CombinedOutput()
	if err == nil && !bytes.HasPrefix(out, []byte("bulwark-shim ")) {
		err = errors.New("it does not answer as bulwark-shim")
	}
	if err != nil {
		return fmt.Errorf("the shim binary does not run on this host: %w: %.200q", err, out)
	}
	return nil
}

// runcVersion runs `path --version` and returns its first line, or
// ErrNotRunc when the binary does not answer as runc does.
func runcVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	first, _, _ := strings.Cut(string(out), "\n")
	if err != nil {
		return "", fmt.Errorf("%w at %s: `--version` failed: %w; refusing to replace it", ErrNotRunc, path, err)
	}
	if !strings.HasPrefix(first, "runc version ") {
		return "", fmt.Errorf("%w at %s: `--version` says %.80q; refusing to replace it", ErrNotRunc, path, first)
	}
	return strings.TrimSpace(first), nil
}

func writeManifest(m shimv1.Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(m.Path+shimv1.ManifestSuffix, append(b, '\n'), 0o644)
}

func fileSHA(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && err == nil {
		err = dst.Chown(int(sys.Uid), int(sys.Gid))
	}
	if err == nil {
		err = dst.Chmod(fi.Mode())
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(to)
	}
	return err
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, synced, renamed over path, and the directory synced.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// WriteSettings writes the settings the shim reads (mode 0600: only root,
// as runc, reads them).
func WriteSettings(path string, s shimv1.Settings) error {
	s.V = shimv1.Version
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}
