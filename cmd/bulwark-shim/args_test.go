package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/api/shimv1"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args string
		want invocation
	}{
		{"version", "--version", invocation{}},
		{"nothing", "", invocation{}},
		{"containerd create", "--root /run/containerd/runc/default --log /s/log.json --log-format json create --bundle /s/b --pid-file /s/init.pid c1",
			invocation{sub: "create", root: "/run/containerd/runc/default", log: "/s/log.json", logFormat: "json", bundle: "/s/b", id: "c1"}},
		{"docker style, = forms", "--root=/run/docker/runtime-runc/moby --log=/l --log-format=json --systemd-cgroup create --bundle=/b --console-socket=/c.sock c2",
			invocation{sub: "create", root: "/run/docker/runtime-runc/moby", log: "/l", logFormat: "json", bundle: "/b", id: "c2"}},
		{"single dash and -b", "-root /r run -d -b /b c3", invocation{sub: "run", root: "/r", bundle: "/b", id: "c3"}},
		{"run in the working directory", "run c4", invocation{sub: "run", id: "c4"}},
		{"bool global flags", "--debug --systemd-cgroup create -b x c5", invocation{sub: "create", bundle: "x", id: "c5"}},
		{"other value flags", "create --pid-file create --console-socket run --preserve-fds 3 -b /b c6", invocation{sub: "create", bundle: "/b", id: "c6"}},
		{"an unknown value flag cannot hide the bundle", "create --new-flag v --bundle /b c7", invocation{sub: "create", bundle: "/b", id: "c7"}},
		{"restore", "restore --image-path /img --work-path /w -b /b --detach c8", invocation{sub: "restore", bundle: "/b", id: "c8"}},
		{"end of flags", "create -- -odd-id", invocation{sub: "create", id: "-odd-id"}},
		{"global end of flags", "--root /r -- create c9", invocation{sub: "create", root: "/r", id: "c9"}},
		{"pass-through", "--root /r state c10", invocation{sub: "state", root: "/r", id: "c10"}},
		{"exec with a process named run", "exec c11 run", invocation{sub: "exec", id: "run"}},
		{"dangling value flag", "--root", invocation{}},
		{"dangling bundle", "create -b", invocation{sub: "create"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseArgs(strings.Fields(tc.args))
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(invocation{})); diff != "" {
				t.Errorf("parseArgs(%q) mismatch (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

// FuzzParseArgs: parsing never panics, and the C constructor never passes a
// command line through that the Go parser would ask about.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"--root /r create -b /b c1", "run c", "--log-format json --log /l restore --image-path /i c", "state c",
		"--root=create state", "-- run", "create", "--debug", "exec c run", "-b", "---x create", "-=y run c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		inv := parseArgs(args)
		if shimv1.Decides(inv.sub) && !constructorMayDecide(args) {
			t.Errorf("parseArgs(%q) is a %s, but the C constructor would pass it through", args, inv.sub)
		}
	})
}

func TestConstructorMayDecide(t *testing.T) {
	for _, tc := range []struct {
		args string
		want bool
	}{
		{"state c1", false}, {"--root /r list", false}, {"--version", false}, {"", false}, {"creat x", false},
		{"create c1", true}, {"--root /r run c1", true}, {"restore c", true}, {"exec c1 run", true},
	} {
		got := constructorMayDecide(strings.Fields(tc.args))
		if !cgoEnabled && got {
			continue // without cgo every command goes to Go
		}
		if got != tc.want {
			t.Errorf("constructorMayDecide(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
