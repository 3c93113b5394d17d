package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Every file this package writes holds key material or sits next to it, so
// all of them, certificates included, are private to the Console's user.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// ensureDir creates dir, or narrows an existing one, so that only the owner
// can list or enter it.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("pki dir %s is not a directory", dir)
	}
	if st.Mode().Perm()&^dirMode != 0 {
		if err := os.Chmod(dir, dirMode); err != nil {
			return fmt.Errorf("pki dir: %w", err)
		}
	}
	return nil
}

// checkKeyMode refuses a key file that others may read: the key may already
// have leaked, and silently fixing the mode would hide that.
func checkKeyMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("key %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("key %s is accessible by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}

// writeFileAtomic replaces dir/name with data, mode 0600. Readers and a crash
// see either the old file or the whole new one, never a part.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := writeTemp(dir, name, data)
	if err != nil {
		return err
	}
	// dir is the operator's; name is one of ours or checked by checkFileName.
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil { //nolint:gosec // see above
		_ = os.Remove(tmp) //nolint:gosec // tmp was made by os.CreateTemp in dir
		return err
	}
	return syncDir(dir)
}

// writeFileExclusive creates dir/name with data, mode 0600, like
// writeFileAtomic, but fails with an error matching fs.ErrExist when the file
// already exists, so that two processes never replace each other's key.
func writeFileExclusive(dir, name string, data []byte) error {
	tmp, err := writeTemp(dir, name, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	final := filepath.Join(dir, name)
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		// Some file systems have no hard links; fall back to rename, having
		// just seen that the file did not exist.
		if _, statErr := os.Lstat(final); statErr == nil {
			return &fs.PathError{Op: "create", Path: final, Err: fs.ErrExist}
		}
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

// writeTemp writes data to a new synced temporary file in dir and returns its
// path.
func writeTemp(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return "", err
	}
	if err := f.Chmod(fileMode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
