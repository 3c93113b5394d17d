package shim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"bulwark/api/shimv1"
)

func TestDiscover(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sbin := mk("usr/sbin/runc", 0o755)
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../sbin/runc", filepath.Join(root, "usr/bin/runc")); err != nil { // Debian's layout
		t.Fatal(err)
	}
	local := mk("usr/local/sbin/runc", 0o700)
	mk("usr/local/bin/runc", 0o644) // not executable
	mk("usr/local/sbin/runc"+shimv1.OriginalSuffix, 0o755)
	custom := mk("opt/runc-1.2/bin/runc", 0o755)
	named := mk("opt/tools/runc-custom", 0o755)
	cfg := filepath.Join(root, "config.toml")
	if err := os.WriteFile(cfg, []byte(`version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "`+custom+`" # the runc we ship
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.other.options]
  BinaryName = 'runc-custom'
  # BinaryName = "/not/this"
  SystemdCgroup = true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Discover(Discovery{
		PATH:              filepath.Join(root, "usr/bin") + ":relative/dir:" + filepath.Join(root, "opt/tools"),
		Dirs:              []string{filepath.Join(root, "usr/sbin"), filepath.Join(root, "usr/local/bin"), filepath.Join(root, "usr/local/sbin")},
		ContainerdConfigs: []string{cfg, filepath.Join(root, "absent.toml")},
	})
	want := []string{sbin, local, custom, named}
	if !slices.Equal(got, want) {
		t.Errorf("Discover = %q, want %q", got, want)
	}
}

func TestContainerdBinaries(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`BinaryName = "/usr/local/bin/runc"`, []string{"/usr/local/bin/runc"}},
		{`  BinaryName="runc" # comment "with quotes"`, []string{"runc"}},
		{`BinaryName = "unterminated`, nil},
		{`BinaryName = 'C:\runc'`, []string{`C:\runc`}},
		{`BinaryName = ""`, nil},
		{`#BinaryName = "/x"`, nil},
		{`NotBinaryName = "/x"`, nil},
		{`BinaryName = "/a\u0062"`, []string{"/ab"}},
	} {
		p := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(p, []byte(tc.line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := containerdBinaries(p); !slices.Equal(got, tc.want) {
			t.Errorf("containerdBinaries(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

func FuzzContainerdBinaries(f *testing.F) {
	for _, s := range []string{`BinaryName = "/usr/bin/runc"`, `BinaryName = 'x'`, `BinaryName = "\"`, `BinaryName='`, "BinaryName = \"a\" # \"b\"\n[x]\nBinaryName=\"c\""} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, b := range containerdBinaries(p) {
			if b == "" || !strings.Contains(s, "BinaryName") {
				t.Errorf("containerdBinaries(%q) returned %q", s, b)
			}
		}
	})
}
