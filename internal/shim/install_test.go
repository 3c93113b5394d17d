package shim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"bulwark/api/shimv1"
	"bulwark/internal/shim"
)

var built struct {
	once sync.Once
	dir  string
	shim string
	err  error
}

func TestMain(m *testing.M) {
	if os.Getenv(peerHelperEnv) != "" {
		os.Exit(peerHelper())
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// shimBinary builds bulwark-shim once per test run.
func shimBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "bulwark-shim-bin-"); built.err != nil {
			return
		}
		built.shim = filepath.Join(built.dir, "bulwark-shim")
		if out, err := exec.Command("go", "build", "-o", built.shim, "bulwark/cmd/bulwark-shim").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build bulwark-shim: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.shim
}

// systemRunc is the runc the tests copy; they never touch it.
func systemRunc(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("needs runc (scripts/setup.sh installs it)")
	}
	return p
}

// fakeHost is a directory with a copy of the system's runc in bin/.
type fakeHost struct {
	dir, runc string
	orig      []byte // the copy's bytes
	in        shim.Installer
}

func newHost(t *testing.T) *fakeHost {
	t.Helper()
	b, err := os.ReadFile(systemRunc(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := &fakeHost{dir: dir, runc: filepath.Join(dir, "bin", "runc"), orig: b}
	if err := os.MkdirAll(filepath.Dir(h.runc), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.runc, b, 0o751); err != nil {
		t.Fatal(err)
	}
	h.in = shim.Installer{Shim: shimBinary(t), Paths: shim.PathsIn(filepath.Join(dir, "state", "shim"))}
	return h
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stamp identifies a file version: inode, size, mode and modification time.
type stamp struct {
	ino   uint64
	size  int64
	mode  os.FileMode
	mtime time.Time
}

func stampOf(t *testing.T, path string) stamp {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return stamp{fi.Sys().(*syscall.Stat_t).Ino, fi.Size(), fi.Mode(), fi.ModTime()}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestInstallUninstallRoundTrip(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	before := stampOf(t, h.runc)

	st, changed, err := h.in.Install(ctx, h.runc)
	if err != nil || !changed || st.State != shim.StateInstalled {
		t.Fatalf("Install = %+v, %v, %v; want installed, changed", st, changed, err)
	}
	shimBytes, _ := os.ReadFile(h.in.Shim)
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, shimBytes) {
		t.Errorf("%s is not the shim after Install", h.runc)
	}
	if s := stampOf(t, h.runc); s.mode != before.mode {
		t.Errorf("the shim has mode %v, want the original's %v", s.mode, before.mode)
	}
	if got, _ := os.ReadFile(h.runc + shimv1.OriginalSuffix); !bytes.Equal(got, h.orig) {
		t.Errorf("the original at %s differs from runc", h.runc+shimv1.OriginalSuffix)
	}
	m := st.Manifest
	if m == nil || m.Path != h.runc || m.SHA256 != sha(h.orig) || m.ShimSHA256 != sha(shimBytes) || m.Mode != 0o751 ||
		m.Socket != h.in.Paths.Socket || m.AuditDir != h.in.Paths.AuditDir || !strings.HasPrefix(m.RuncVersion, "runc version ") {
		t.Errorf("manifest = %+v, want path, both hashes, mode 0751, the Defender's paths and runc's version", m)
	}
	// The shim passes `runc --version` to the original.
	out, err := exec.Command(h.runc, "--version").Output()
	if want, _ := exec.Command(systemRunc(t), "--version").Output(); err != nil || !bytes.Equal(out, want) {
		t.Errorf("%s --version through the shim = %q, %v; want runc's %q", h.runc, out, err, want)
	}

	// Installing twice changes nothing.
	stamps := map[string]stamp{}
	for _, p := range []string{h.runc, h.runc + shimv1.OriginalSuffix, h.runc + shimv1.ManifestSuffix} {
		stamps[p] = stampOf(t, p)
	}
	if st, changed, err := h.in.Install(ctx, h.runc); err != nil || changed || st.State != shim.StateInstalled {
		t.Errorf("second Install = %+v, %v, %v; want installed, unchanged", st, changed, err)
	}
	for p, s := range stamps {
		if got := stampOf(t, p); got != s {
			t.Errorf("second Install touched %s: %+v → %+v", p, s, got)
		}
	}

	st, changed, err = h.in.Uninstall(h.runc)
	if err != nil || !changed || st.State != shim.StateNotInstalled {
		t.Fatalf("Uninstall = %+v, %v, %v; want not installed, changed", st, changed, err)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, h.orig) {
		t.Errorf("%s after Uninstall is not the original byte for byte", h.runc)
	}
	if after := stampOf(t, h.runc); after.ino != before.ino || after.mode != before.mode || !after.mtime.Equal(before.mtime) {
		t.Errorf("after Uninstall %s = %+v, want the original file back (%+v)", h.runc, after, before)
	}
	for _, p := range []string{h.runc + shimv1.OriginalSuffix, h.runc + shimv1.ManifestSuffix} {
		if exists(p) {
			t.Errorf("%s is left after Uninstall", p)
		}
	}
	if st, changed, err := h.in.Uninstall(h.runc); err != nil || changed || st.State != shim.StateNotInstalled {
		t.Errorf("second Uninstall = %+v, %v, %v; want not installed, unchanged", st, changed, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(h.runc))
	if len(entries) != 1 {
		t.Errorf("bin/ after the round trip holds %d files, want runc only", len(entries))
	}
}

func TestInstallRefusesWhatIsNotRunc(t *testing.T) {
	h := newHost(t)
	script := []byte("#!/bin/sh\necho 'crun version 1.8'\n")
	if err := os.WriteFile(h.runc, script, 0o755); err != nil {
		t.Fatal(err)
	}
	_, changed, err := h.in.Install(context.Background(), h.runc)
	if !errors.Is(err, shim.ErrNotRunc) || changed {
		t.Fatalf("Install(a non-runc binary) = %v, changed %v; want ErrNotRunc", err, changed)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, script) || exists(h.runc+shimv1.OriginalSuffix) || exists(h.runc+shimv1.ManifestSuffix) {
		t.Error("a refused Install changed files")
	}
}

func TestInstallRefusesAShimThatDoesNotRun(t *testing.T) {
	h := newHost(t)
	bad := filepath.Join(t.TempDir(), "bulwark-shim")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.in.Shim = bad
	if _, changed, err := h.in.Install(context.Background(), h.runc); err == nil || changed {
		t.Fatalf("Install(with a shim that does not run) = %v, changed %v; want an error and nothing changed", err, changed)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, h.orig) || exists(h.runc+shimv1.OriginalSuffix) || exists(h.runc+shimv1.ManifestSuffix) {
		t.Error("a refused Install changed files")
	}
	if entries, _ := os.ReadDir(filepath.Dir(h.runc)); len(entries) != 1 {
		t.Errorf("a refused Install left %d files in bin/, want runc only", len(entries))
	}
}

func TestInstallFollowsSymlinks(t *testing.T) {
	h := newHost(t)
	link := filepath.Join(h.dir, "usr-bin-runc")
	if err := os.Symlink(h.runc, link); err != nil {
		t.Fatal(err)
	}
	st, _, err := h.in.Install(context.Background(), link)
	if err != nil || st.Path != h.runc {
		t.Fatalf("Install(symlink) = %+v, %v; want the shim at the link's target %s", st, err, h.runc)
	}
	if target, err := os.Readlink(link); err != nil || target != h.runc {
		t.Errorf("the symlink now points at %q (%v), want it untouched", target, err)
	}
	if _, _, err := h.in.Uninstall(link); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, h.orig) {
		t.Error("Uninstall(symlink) did not restore runc")
	}
}

// A package upgrade writes a new runc over the shim.
func TestRuncReplacedSinceInstall(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	if _, _, err := h.in.Install(ctx, h.runc); err != nil {
		t.Fatal(err)
	}
	upgraded := append(append([]byte(nil), h.orig...), "upgrade"...) // still runs: trailing bytes of an ELF file are ignored
	if err := os.WriteFile(h.runc+".new", upgraded, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(h.runc+".new", h.runc); err != nil {
		t.Fatal(err)
	}
	if st, err := h.in.Status(h.runc); err != nil || st.State != shim.StateReplaced {
		t.Fatalf("Status after the upgrade = %+v, %v; want replaced", st, err)
	}
	st, changed, err := h.in.Install(ctx, h.runc)
	if err != nil || !changed || st.State != shim.StateInstalled || st.Manifest.SHA256 != sha(upgraded) {
		t.Fatalf("Install after the upgrade = %+v, %v, %v; want the new runc moved aside", st, changed, err)
	}
	if _, _, err := h.in.Uninstall(h.runc); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, upgraded) {
		t.Error("Uninstall did not restore the upgraded runc")
	}

	// Uninstall right after an upgrade leaves the new runc and clears the rest.
	if _, _, err := h.in.Install(ctx, h.runc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.runc+".new", h.orig, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(h.runc+".new", h.runc); err != nil {
		t.Fatal(err)
	}
	if st, changed, err := h.in.Uninstall(h.runc); err != nil || !changed || st.State != shim.StateNotInstalled {
		t.Fatalf("Uninstall after an upgrade = %+v, %v, %v; want the stale original cleared", st, changed, err)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, h.orig) || exists(h.runc+shimv1.OriginalSuffix) || exists(h.runc+shimv1.ManifestSuffix) {
		t.Error("Uninstall after an upgrade: want the upgraded runc alone")
	}
}

func TestBrokenInstallIsLeftAlone(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	if _, _, err := h.in.Install(ctx, h.runc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T)
	}{
		{"original missing", func(t *testing.T) {
			if err := os.Rename(h.runc+shimv1.OriginalSuffix, h.runc+".saved"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Rename(h.runc+".saved", h.runc+shimv1.OriginalSuffix) })
		}},
		{"original changed", func(t *testing.T) {
			saved, _ := os.ReadFile(h.runc + shimv1.OriginalSuffix)
			if err := os.WriteFile(h.runc+shimv1.OriginalSuffix, []byte("tampered"), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(h.runc+shimv1.OriginalSuffix, saved, 0o751) })
		}},
		{"manifest corrupt", func(t *testing.T) {
			saved, _ := os.ReadFile(h.runc + shimv1.ManifestSuffix)
			if err := os.WriteFile(h.runc+shimv1.ManifestSuffix, []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.WriteFile(h.runc+shimv1.ManifestSuffix, saved, 0o644) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.breakIt(t)
			shimStamp := stampOf(t, h.runc)
			if st, err := h.in.Status(h.runc); err != nil || st.State != shim.StateBroken || st.Detail == "" {
				t.Errorf("Status = %+v, %v; want broken with a detail", st, err)
			}
			if _, changed, err := h.in.Install(ctx, h.runc); !errors.Is(err, shim.ErrBroken) || changed {
				t.Errorf("Install = %v, changed %v; want ErrBroken", err, changed)
			}
			if _, changed, err := h.in.Uninstall(h.runc); !errors.Is(err, shim.ErrBroken) || changed {
				t.Errorf("Uninstall = %v, changed %v; want ErrBroken", err, changed)
			}
			if got := stampOf(t, h.runc); got != shimStamp {
				t.Error("the shim was touched")
			}
		})
	}
	if st, err := h.in.Status(h.runc); err != nil || st.State != shim.StateInstalled {
		t.Errorf("Status once repaired = %+v, %v; want installed", st, err)
	}
}

func TestOutdatedShimIsUpdated(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	if _, _, err := h.in.Install(ctx, h.runc); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(h.in.Shim)
	newer := filepath.Join(t.TempDir(), "bulwark-shim")
	if err := os.WriteFile(newer, append(b, "v2"...), 0o755); err != nil {
		t.Fatal(err)
	}
	in2 := h.in
	in2.Shim = newer
	if st, _ := in2.Status(h.runc); st.State != shim.StateOutdated {
		t.Fatalf("Status with a newer shim = %+v, want outdated", st)
	}
	st, changed, err := in2.Install(ctx, h.runc)
	if err != nil || !changed || st.State != shim.StateInstalled || st.Manifest.ShimSHA256 != sha(append(b, "v2"...)) || st.Manifest.SHA256 != sha(h.orig) {
		t.Fatalf("Install(newer shim) = %+v, %v, %v; want the new shim in place, the original unchanged", st, changed, err)
	}
	if _, _, err := in2.Uninstall(h.runc); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(h.runc); !bytes.Equal(got, h.orig) {
		t.Error("Uninstall after an update did not restore runc")
	}
}

func TestInstallUpdatesTheDefenderPaths(t *testing.T) {
	h := newHost(t)
	ctx := context.Background()
	if _, _, err := h.in.Install(ctx, h.runc); err != nil {
		t.Fatal(err)
	}
	in2 := h.in
	in2.Paths = shim.PathsIn(filepath.Join(h.dir, "elsewhere"))
	st, changed, err := in2.Install(ctx, h.runc)
	if err != nil || !changed || st.Manifest.Socket != in2.Paths.Socket {
		t.Fatalf("Install with new paths = %+v, %v, %v; want the manifest to name the new socket", st, changed, err)
	}
}
