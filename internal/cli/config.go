package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// configFile is the name of the saved login inside the config directory.
const configFile = "config.json"

// savedConfig is what `bulwarkctl login` remembers between runs. It holds a
// bearer token, so it is written 0600 in a 0700 directory.
type savedConfig struct {
	Console  string `json:"console,omitempty"`
	CACert   string `json:"caCert,omitempty"` // absolute path
	Insecure bool   `json:"insecure,omitempty"`
	Token    string `json:"token,omitempty"`
	Username string `json:"username,omitempty"`
}

// loadConfig reads dir/config.json. A missing file is an empty config, not an
// error. The returned warning is non-empty when the file is readable by others.
func loadConfig(dir string) (savedConfig, string, error) {
	path := filepath.Join(dir, configFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return savedConfig{}, "", nil
	}
	if err != nil {
		return savedConfig{}, "", fmt.Errorf("read saved login: %w", err)
	}
	var c savedConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return savedConfig{}, "", fmt.Errorf("read saved login %s: %w (delete it and run `bulwarkctl login`)", path, err)
	}
	var warning string
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			warning = fmt.Sprintf("%s holds a token and is readable by other users (mode %04o); run: chmod 600 %s", path, fi.Mode().Perm(), path)
		}
	}
	return c, warning, nil
}

// saveConfig writes dir/config.json atomically (temporary file, fsync,
// rename) with mode 0600, creating dir with mode 0700 if needed. A reader never
// sees a half-written file, and a crash leaves the old login in place.
func saveConfig(dir string, c savedConfig) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode saved login: %w", err)
	}
	data = append(data, '\n')
	f, err := os.CreateTemp(dir, ".config-*.json") // created 0600
	if err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("save login: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, configFile)); err != nil {
		return fmt.Errorf("save login: %w", err)
	}
	// Make the rename durable; not every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
