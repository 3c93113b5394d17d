package defender

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"bulwark/internal/runtime"
)

// TestWatchCgroups makes and removes real cgroups (nested, so that the
// watch of a directory made after the start is exercised) and checks that
// each is told, and that a file written in a cgroup is not.
func TestWatchCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("makes cgroups: run as root (it runs in CI)")
	}
	root, err := runtime.FindCgroup2("/proc")
	if err != nil {
		t.Skipf("no cgroup2 here: %v", err)
	}
	base := filepath.Join(root, "bulwark-test-watch-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	child, grandchild := filepath.Join(base, "child"), filepath.Join(base, "child", "grandchild")
	t.Cleanup(func() {
		for _, d := range []string{grandchild, child, base} {
			_ = os.Remove(d)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Below base only: other tests (and the host) make cgroups elsewhere
	// meanwhile, which the quiet checks must not see.
	changed, err := watchCgroups(ctx, base, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	expect := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change told after %s", what)
		}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-changed:
			t.Fatalf("a change was told after %s", what)
		case <-time.After(200 * time.Millisecond):
		}
	}
	quiet("the start")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	expect("mkdir " + child)
	// The child's own watch is added as its creation is read; give the
	// reader that moment, then make a cgroup inside it.
	time.Sleep(200 * time.Millisecond)
	if err := os.Mkdir(grandchild, 0o755); err != nil {
		t.Fatal(err)
	}
	expect("mkdir " + grandchild + " (inside a cgroup made after the watch started)")
	if err := os.WriteFile(filepath.Join(grandchild, "cgroup.procs"), nil, 0); err != nil {
		t.Logf("write cgroup.procs: %v", err) // an empty write; what matters is that it tells nothing
	}
	quiet("a write to cgroup.procs")
	if err := os.Remove(grandchild); err != nil {
		t.Fatal(err)
	}
	expect("rmdir " + grandchild)
	if err := os.Remove(child); err != nil {
		t.Fatal(err)
	}
	expect("rmdir " + child)
}
