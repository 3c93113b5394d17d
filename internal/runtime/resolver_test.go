package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
)

// host is a fake host: a cgroup2 tree, runc state roots and a docker root,
// all under one temporary directory.
type host struct {
	dir        string
	cgroup     string
	runc       string // /run/runc
	containerd string // /run/containerd/runc (namespaces below)
	dockerRunc string // /run/docker/runtime-runc/moby
	docker     string // /var/lib/docker
}

func newHost(t testing.TB) *host {
	t.Helper()
	d := t.TempDir()
	h := &host{
		dir:        d,
		cgroup:     filepath.Join(d, "sys/fs/cgroup"),
		runc:       filepath.Join(d, "run/runc"),
		containerd: filepath.Join(d, "run/containerd/runc"),
		dockerRunc: filepath.Join(d, "run/docker/runtime-runc/moby"),
		docker:     filepath.Join(d, "var/lib/docker"),
	}
	for _, p := range []string{h.cgroup, h.runc, h.containerd, h.dockerRunc, h.docker} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *host) config() Config {
	return Config{
		CgroupRoot: h.cgroup,
		ProcRoot:   filepath.Join(h.dir, "proc"),
		RuncRoots:  []string{h.runc, h.containerd + "/*", h.dockerRunc},
		DockerRoot: h.docker,
	}
}

// mkCgroup creates a cgroup directory and returns its id.
func (h *host) mkCgroup(t testing.TB, path string) uint64 {
	t.Helper()
	dir := filepath.Join(h.cgroup, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	id, err := CgroupIDOfPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// writeState writes <root>/<id>/state.json as runc 1.1 does: the bundle and
// the annotations as config.labels, the cgroup2 path under cgroup_paths[""].
// A non-nil bundleAnn also writes the bundle's config.json.
func (h *host) writeState(t testing.TB, root, id, cgPath string, labels, bundleAnn map[string]string) string {
	t.Helper()
	bundle := filepath.Join(h.dir, "bundles", id)
	ls := []string{"bundle=" + bundle}
	for k, v := range labels {
		ls = append(ls, k+"="+v)
	}
	st := map[string]any{
		"id":                 id,
		"init_process_pid":   4242,
		"init_process_start": 1234,
		"created":            "2026-01-02T03:04:05.123456789Z",
		"config":             map[string]any{"labels": ls, "rootfs": bundle + "/rootfs"},
		"rootless":           false,
		"cgroup_paths":       map[string]string{"": filepath.Join(h.cgroup, cgPath), "memory": "/sys/fs/cgroup/memory" + cgPath},
	}
	writeJSON(t, filepath.Join(root, id, "state.json"), st)
	if bundleAnn != nil {
		writeJSON(t, filepath.Join(bundle, "config.json"), map[string]any{
			"ociVersion":  "1.0.2-dev",
			"process":     map[string]any{"args": []string{"sleep", "30"}},
			"annotations": bundleAnn,
		})
	}
	return bundle
}

func (h *host) writeDocker(t testing.TB, id, name, image string) {
	t.Helper()
	writeJSON(t, filepath.Join(h.docker, "containers", id, "config.v2.json"), map[string]any{
		"ID":     id,
		"Name":   name,
		"Config": map[string]any{"Image": image, "Labels": map[string]string{}},
	})
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newResolver(t testing.TB, cfg Config) *Resolver {
	t.Helper()
	r, err := New(cfg, discard())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func hexID(c byte) string { return strings.Repeat(string(c), 64) }

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestContainer(t *testing.T) {
	h := newHost(t)
	var (
		dockerID  = hexID('a')
		scopeID   = hexID('b')
		criID     = hexID('c')
		kubeID    = hexID('d')
		crioID    = hexID('e')
		crioFsID  = hexID('f')
		innerID   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		strayID   = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
		kubeSlice = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_0000_1111_2222_333344445555.slice"
	)

	// docker, cgroupfs driver: runc state under docker's root, name and image from config.v2.json.
	h.writeState(t, h.dockerRunc, dockerID, "/docker/"+dockerID, nil, map[string]string{})
	h.writeDocker(t, dockerID, "/web", "nginx:1.25")
	// containerd CRI, systemd driver: containerd's annotations.
	h.writeState(t, filepath.Join(h.containerd, "k8s.io"), criID, kubeSlice+"/cri-containerd-"+criID+".scope", nil, map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.container-name":    "app",
		"io.kubernetes.cri.sandbox-name":      "web-0",
		"io.kubernetes.cri.sandbox-namespace": "prod",
		"io.kubernetes.cri.image-name":        "registry.local/web:1.2",
	})
	// containerd CRI, cgroupfs driver.
	h.writeState(t, filepath.Join(h.containerd, "k8s.io"), kubeID, "/kubepods/burstable/pod1f2e3d4c-0000-1111-2222-333344445555/"+kubeID, nil, map[string]string{
		"io.kubernetes.cri.container-name":    "sidecar",
		"io.kubernetes.cri.sandbox-name":      "web-1",
		"io.kubernetes.cri.sandbox-namespace": "stage",
		"io.kubernetes.cri.image-name":        "registry.local/proxy:3",
	})
	// CRI-O keeps runc state in /run/runc; its own annotations.
	h.writeState(t, h.runc, crioID, kubeSlice+"/crio-"+crioID+".scope", nil, map[string]string{
		"io.kubernetes.pod.name":        "db-0",
		"io.kubernetes.pod.namespace":   "data",
		"io.kubernetes.container.name":  "postgres",
		"io.kubernetes.cri-o.ImageName": "docker.io/library/postgres:16",
	})
	// plain runc: an arbitrary name, trusted because of its state dir;
	// runc 1.1 also keeps the annotations as labels in state.json.
	runcBundle := h.writeState(t, h.runc, "bwtest-web", "/bwtest-web",
		map[string]string{"io.kubernetes.pod.name": "web-0"},
		map[string]string{
			"io.kubernetes.pod.name":      "web-0",
			"io.kubernetes.pod.namespace": "prod",
			"io.bulwark.image":            "registry.local/web:1.2",
		})
	// plain runc, config.json gone: the labels are enough.
	h.writeState(t, h.runc, "labels-only", "/labels-only",
		map[string]string{"io.bulwark.image": "registry.local/labels:1", "io.kubernetes.pod.namespace": "ops"}, nil)
	// containerd's default /<namespace>/<id> layout (ctr run).
	h.writeState(t, filepath.Join(h.containerd, "default"), "redis-1", "/default/redis-1", nil, map[string]string{
		"org.opencontainers.image.ref.name": "redis:7",
	})
	// a runc container whose cgroup is not the host cgroup of the same name.
	h.writeState(t, h.runc, "user.slice", "/elsewhere/user.slice", nil, map[string]string{})

	tests := []struct {
		name     string
		cgroup   string
		want     event.Container
		wantPath string
		wantOK   bool
	}{
		{
			name:   "docker cgroupfs",
			cgroup: "/docker/" + dockerID,
			want:   event.Container{ID: dockerID, Name: "web", Image: "nginx:1.25", Runtime: "docker"},
			wantOK: true,
		},
		{
			name:   "docker systemd scope, no metadata",
			cgroup: "/system.slice/docker-" + scopeID + ".scope",
			want:   event.Container{ID: scopeID, Runtime: "docker"},
			wantOK: true,
		},
		{
			name:   "cri-containerd systemd scope",
			cgroup: kubeSlice + "/cri-containerd-" + criID + ".scope",
			want:   event.Container{ID: criID, Name: "app", Image: "registry.local/web:1.2", Pod: "web-0", Namespace: "prod", Runtime: "containerd"},
			wantOK: true,
		},
		{
			name:   "containerd kubepods cgroupfs",
			cgroup: "/kubepods/burstable/pod1f2e3d4c-0000-1111-2222-333344445555/" + kubeID,
			want:   event.Container{ID: kubeID, Name: "sidecar", Image: "registry.local/proxy:3", Pod: "web-1", Namespace: "stage", Runtime: "containerd"},
			wantOK: true,
		},
		{
			name:   "crio systemd scope",
			cgroup: kubeSlice + "/crio-" + crioID + ".scope",
			want:   event.Container{ID: crioID, Name: "postgres", Image: "docker.io/library/postgres:16", Pod: "db-0", Namespace: "data", Runtime: "crio"},
			wantOK: true,
		},
		{
			name:   "crio kubepods cgroupfs, no metadata",
			cgroup: "/kubepods/besteffort/pod99/crio-" + crioFsID,
			want:   event.Container{ID: crioFsID, Runtime: "crio"},
			wantOK: true,
		},
		{
			name:   "crio conmon is not the container",
			cgroup: kubeSlice + "/crio-conmon-" + crioID + ".scope",
			wantOK: false,
		},
		{
			name:   "plain runc",
			cgroup: "/bwtest-web",
			want:   event.Container{ID: "bwtest-web", Image: "registry.local/web:1.2", Pod: "web-0", Namespace: "prod", Runtime: "runc"},
			wantOK: true,
		},
		{
			name:   "plain runc, annotations from state labels",
			cgroup: "/labels-only",
			want:   event.Container{ID: "labels-only", Image: "registry.local/labels:1", Namespace: "ops", Runtime: "runc"},
			wantOK: true,
		},
		{
			name:   "containerd namespace layout",
			cgroup: "/default/redis-1",
			want:   event.Container{ID: "redis-1", Image: "redis:7", Runtime: "containerd"},
			wantOK: true,
		},
		{
			name:     "nested child of a runc container",
			cgroup:   "/bwtest-web/sub/deeper",
			want:     event.Container{ID: "bwtest-web", Image: "registry.local/web:1.2", Pod: "web-0", Namespace: "prod", Runtime: "runc"},
			wantPath: "/bwtest-web",
			wantOK:   true,
		},
		{
			name:     "nested child of a docker container",
			cgroup:   "/docker/" + dockerID + "/init.scope",
			want:     event.Container{ID: dockerID, Name: "web", Image: "nginx:1.25", Runtime: "docker"},
			wantPath: "/docker/" + dockerID,
			wantOK:   true,
		},
		{
			name:   "docker in docker: the inner container",
			cgroup: "/docker/" + dockerID + "/docker/" + innerID,
			want:   event.Container{ID: innerID, Runtime: "docker"},
			wantOK: true,
		},
		{
			name:   "bare id elsewhere, runtime unknown",
			cgroup: "/custom/" + strayID,
			want:   event.Container{ID: strayID},
			wantOK: true,
		},
		{name: "host service", cgroup: "/system.slice/ssh.service", wantOK: false},
		{name: "host root", cgroup: "/", wantOK: false},
		{name: "plain name without a state dir", cgroup: "/mygroup", wantOK: false},
		{name: "state dir of another cgroup", cgroup: "/user.slice", wantOK: false},
		{name: "docker parent cgroup", cgroup: "/docker", wantOK: false},
	}
	ids := make(map[string]uint64)
	for _, tc := range tests {
		ids[tc.cgroup] = h.mkCgroup(t, tc.cgroup)
	}
	r := newResolver(t, h.config())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, ok := r.Lookup(ids[tc.cgroup])
			if ok != tc.wantOK {
				t.Fatalf("Lookup(%q) ok = %v, want %v (got %+v)", tc.cgroup, ok, tc.wantOK, info)
			}
			if diff := cmp.Diff(tc.want, info.Container); diff != "" {
				t.Errorf("Lookup(%q) container mismatch (-want +got):\n%s", tc.cgroup, diff)
			}
			wantPath := tc.wantPath
			if wantPath == "" && tc.wantOK {
				wantPath = tc.cgroup
			}
			if info.CgroupPath != wantPath {
				t.Errorf("Lookup(%q) CgroupPath = %q, want %q", tc.cgroup, info.CgroupPath, wantPath)
			}
			c, ok2 := r.Container(ids[tc.cgroup])
			if ok2 != ok || c != info.Container {
				t.Errorf("Container(%q) = %+v, %v; want Lookup's %+v, %v", tc.cgroup, c, ok2, info.Container, ok)
			}
		})
	}
	if got := r.Stats().Walks; got != 1 {
		t.Errorf("Walks = %d, want 1 (one walk finds every cgroup)", got)
	}

	info, _ := r.Lookup(ids["/bwtest-web"])
	want := Info{
		Container:  event.Container{ID: "bwtest-web", Image: "registry.local/web:1.2", Pod: "web-0", Namespace: "prod", Runtime: "runc"},
		CgroupPath: "/bwtest-web",
		StateDir:   filepath.Join(h.runc, "bwtest-web"),
		Bundle:     runcBundle,
		InitPID:    4242,
		Created:    time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
	}
	if diff := cmp.Diff(want, info); diff != "" {
		t.Errorf("Lookup(/bwtest-web) mismatch (-want +got):\n%s", diff)
	}
}

func TestLookupWalksAtMostOncePerInterval(t *testing.T) {
	h := newHost(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	cfg := h.config()
	cfg.Now = clock.Now
	r := newResolver(t, cfg)

	hostID := h.mkCgroup(t, "/system.slice/cron.service")
	if _, ok := r.Container(hostID); ok {
		t.Fatal("Container(host) ok = true, want false")
	}
	// A new container appears: its first events come before the next walk
	// is allowed, and cost no walk.
	id := hexID('a')
	cid := h.mkCgroup(t, "/docker/"+id)
	for range 1000 {
		if _, ok := r.Container(cid); ok {
			t.Fatal("Container(new) ok = true before the rescan interval passed")
		}
		if _, ok := r.Container(hostID); ok {
			t.Fatal("Container(host) ok = true, want false")
		}
	}
	if s := r.Stats(); s.Walks != 1 || s.Misses != 1001 {
		t.Errorf("Stats = %+v, want Walks 1, Misses 1001 (the first lookup, then the new id)", s)
	}
	clock.Add(100 * time.Millisecond)
	c, ok := r.Container(cid)
	if !ok || c.ID != id {
		t.Fatalf("Container(new) after the interval = %+v, %v; want %s", c, ok, id)
	}
	for range 1000 {
		r.Container(cid)
	}
	if s := r.Stats(); s.Walks != 2 || s.Entries != 2 || s.Containers != 1 {
		t.Errorf("Stats = %+v, want Walks 2, Entries 2, Containers 1", s)
	}
	// An id that never existed: one walk per interval, whatever the rate.
	for range 100 {
		r.Container(1 << 62)
	}
	if s := r.Stats(); s.Walks != 2 {
		t.Errorf("Walks = %d after unknown ids within the interval, want 2", s.Walks)
	}
}

func TestLateRuncState(t *testing.T) {
	// runc creates the cgroup (and runs runc init in it) before it writes
	// state.json: a cgroup first seen without one is looked at again.
	h := newHost(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	cfg := h.config()
	cfg.Now = clock.Now
	r := newResolver(t, cfg)

	id := h.mkCgroup(t, "/late-1")
	if _, ok := r.Container(id); ok {
		t.Fatal("Container(/late-1) before state.json: ok = true")
	}
	h.writeState(t, h.runc, "late-1", "/late-1", map[string]string{"io.kubernetes.pod.name": "late"}, nil)
	if _, ok := r.Container(id); ok {
		t.Fatal("Container(/late-1) within the rescan interval: ok = true, want the cached answer")
	}
	clock.Add(100 * time.Millisecond)
	c, ok := r.Container(id)
	if want := (event.Container{ID: "late-1", Pod: "late", Runtime: "runc"}); !ok || c != want {
		t.Fatalf("Container(/late-1) = %+v, %v; want %+v", c, ok, want)
	}

	// Past the settle time a host cgroup's answer is final.
	hostID := h.mkCgroup(t, "/never")
	r.Container(hostID)
	clock.Add(settleTime)
	h.writeState(t, h.runc, "never", "/never", nil, nil)
	clock.Add(time.Second)
	if _, ok := r.Container(hostID); ok {
		t.Error("Container(/never) after the settle time: ok = true, want the cached false")
	}

	// A container found by pattern before its runtime wrote anything gets
	// its metadata once the runtime does.
	dockerID := hexID('b')
	did := h.mkCgroup(t, "/docker/"+dockerID)
	clock.Add(time.Second)
	if c, ok := r.Container(did); !ok || c.Name != "" {
		t.Fatalf("Container(docker) = %+v, %v; want a nameless docker container", c, ok)
	}
	h.writeDocker(t, dockerID, "/api", "api:2")
	clock.Add(100 * time.Millisecond)
	if c, _ := r.Container(did); c.Name != "api" || c.Image != "api:2" {
		t.Errorf("Container(docker) after config.v2.json = %+v, want name api, image api:2", c)
	}
}

func TestForgetAndPrune(t *testing.T) {
	h := newHost(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	cfg := h.config()
	cfg.Now = clock.Now
	r := newResolver(t, cfg)

	a, b := hexID('a'), hexID('b')
	ida := h.mkCgroup(t, "/docker/"+a)
	idb := h.mkCgroup(t, "/docker/"+b)
	hostID := h.mkCgroup(t, "/system.slice/cron.service")
	for _, id := range []uint64{ida, idb, hostID} {
		r.Container(id)
	}
	if s := r.Stats(); s.Entries != 3 || s.Containers != 2 {
		t.Fatalf("Stats = %+v, want 3 entries, 2 containers", s)
	}

	r.Forget(idb)
	if s := r.Stats(); s.Entries != 2 || s.Containers != 1 {
		t.Errorf("after Forget: Stats = %+v, want 2 entries, 1 container", s)
	}

	if err := os.Remove(filepath.Join(h.cgroup, "docker", a)); err != nil {
		t.Fatal(err)
	}
	if n := r.Prune(); n != 1 {
		t.Errorf("Prune() = %d, want 1", n)
	}
	if s := r.Stats(); s.Entries != 1 || s.Containers != 0 || s.Pruned != 1 {
		t.Errorf("after Prune: Stats = %+v, want 1 entry (the host), 0 containers, 1 pruned", s)
	}
	clock.Add(time.Second)
	if _, ok := r.Container(ida); ok {
		t.Error("Container(removed cgroup) ok = true")
	}
}

func TestRunPrunes(t *testing.T) {
	h := newHost(t)
	cfg := h.config()
	cfg.PruneInterval = 5 * time.Millisecond
	r := newResolver(t, cfg)
	id := h.mkCgroup(t, "/gone")
	h.writeState(t, h.runc, "gone", "/gone", nil, nil)
	if _, ok := r.Container(id); !ok {
		t.Fatal("Container(/gone) ok = false")
	}
	if err := os.Remove(filepath.Join(h.cgroup, "gone")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats().Entries != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not prune: Stats = %+v", r.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil after cancel", err)
	}
}

func TestConcurrentLookups(t *testing.T) {
	h := newHost(t)
	r := newResolver(t, h.config())
	ids := []uint64{h.mkCgroup(t, "/docker/"+hexID('a')), h.mkCgroup(t, "/system.slice/x.service")}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				r.Container(ids[(i+j)%2])
				if j%50 == 0 {
					r.Prune()
					r.Stats()
				}
			}
		})
	}
	wg.Wait()
	if c, ok := r.Container(ids[0]); !ok || c.Runtime != "docker" {
		t.Errorf("Container(docker) = %+v, %v", c, ok)
	}
}

func TestFindCgroup2(t *testing.T) {
	const hybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const pure = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	const elsewhere = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:26 / /host/sys/fs/cgroup\040v2 rw,relatime - cgroup2 cgroup2 rw
`
	const v1only = `32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`
	tests := []struct {
		name, mountinfo, want string
		wantErr               error
	}{
		{"hybrid", hybrid, "/sys/fs/cgroup/unified", nil},
		{"pure v2", pure, "/sys/fs/cgroup", nil},
		{"elsewhere, escaped", elsewhere, "/host/sys/fs/cgroup v2", nil},
		{"v1 only", v1only, "", ErrNoCgroup2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proc := t.TempDir()
			if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(tc.mountinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := FindCgroup2(proc)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("FindCgroup2() = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestFindCgroup2ThisHost(t *testing.T) {
	root, err := FindCgroup2("/proc")
	if err != nil {
		t.Skipf("no cgroup2 here: %v", err)
	}
	if _, err := CgroupIDOfPath(root); err != nil {
		t.Errorf("CgroupIDOfPath(%q): %v", root, err)
	}
}

func TestCgroupIDOfPath(t *testing.T) {
	h := newHost(t)
	id := h.mkCgroup(t, "/a")
	id2, err := CgroupIDOfPath(filepath.Join(h.cgroup, "a"))
	if err != nil || id2 != id || id == 0 {
		t.Errorf("CgroupIDOfPath(a) = %d, %v; want %d", id2, err, id)
	}
	if _, err := CgroupIDOfPath(filepath.Join(h.cgroup, "missing")); err == nil {
		t.Error("CgroupIDOfPath(missing) error = nil")
	}
}

func TestMatchComponent(t *testing.T) {
	id := hexID('9')
	tests := []struct {
		parent, name string
		kube         bool
		want         pattern
		wantOK       bool
	}{
		{"docker", id, false, pattern{id, "docker", true}, true},
		{"pod1", id, true, pattern{id, "containerd", false}, true},
		{"x", id, false, pattern{id, "", false}, true},
		{"system.slice", "docker-" + id + ".scope", false, pattern{id, "docker", true}, true},
		{"x.slice", "cri-containerd-" + id + ".scope", true, pattern{id, "containerd", true}, true},
		{"x.slice", "crio-" + id + ".scope", true, pattern{id, "crio", true}, true},
		{"pod1", "crio-" + id, true, pattern{id, "crio", true}, true},
		{"machine.slice", "libpod-" + id + ".scope", false, pattern{id, "podman", true}, true},
		{"x.slice", "crio-conmon-" + id + ".scope", true, pattern{}, false},
		{"docker", strings.ToUpper(hexID('a')), false, pattern{}, false},
		{"docker", id[:63], false, pattern{}, false},
		{"system.slice", "docker.service", false, pattern{}, false},
		{"", "bwtest-1", false, pattern{}, false},
	}
	for _, tc := range tests {
		got, ok := matchComponent(tc.parent, tc.name, tc.kube)
		if ok != tc.wantOK || got != tc.want {
			t.Errorf("matchComponent(%q, %q, %v) = %+v, %v; want %+v, %v", tc.parent, tc.name, tc.kube, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestLookupWalksEarlyWhenTheTreeChanged(t *testing.T) {
	h := newHost(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	cfg := h.config()
	cfg.Now = clock.Now
	r := newResolver(t, cfg)
	setStat := func(live, dying int) {
		t.Helper()
		stat := fmt.Sprintf("nr_descendants %d\nnr_subsys_cpu 1\nnr_dying_descendants %d\n", live, dying)
		if err := os.WriteFile(filepath.Join(h.cgroup, "cgroup.stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	setStat(1, 0)
	hostID := h.mkCgroup(t, "/system.slice")
	r.Container(hostID)
	// Within the interval, unknown ids cost no walk while the tree is unchanged…
	for range 100 {
		r.Container(1 << 62)
	}
	if w := r.Stats().Walks; w != 1 {
		t.Fatalf("Walks = %d with an unchanged tree, want 1", w)
	}
	// …but a new container's first event finds it at once.
	id := h.mkCgroup(t, "/docker/"+hexID('c'))
	setStat(3, 0)
	if c, ok := r.Container(id); !ok || c.ID != hexID('c') {
		t.Fatalf("Container(new) within the interval after a tree change = %+v, %v", c, ok)
	}
	if w := r.Stats().Walks; w != 2 {
		t.Errorf("Walks = %d, want 2", w)
	}
	for range 100 {
		r.Container(1 << 62)
	}
	if w := r.Stats().Walks; w != 2 {
		t.Errorf("Walks = %d after unknown ids with an unchanged tree, want 2", w)
	}
}

func TestLearn(t *testing.T) {
	h := newHost(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	cfg := h.config()
	cfg.Now = clock.Now
	r := newResolver(t, cfg)
	r.Container(h.mkCgroup(t, "/system.slice")) // the first walk
	id := h.mkCgroup(t, "/system.slice/docker-"+hexID('d')+".scope")
	r.Learn(id, "/system.slice/docker-"+hexID('d')+".scope")
	if c, ok := r.Container(id); !ok || c.ID != hexID('d') {
		t.Errorf("Container(learned) = %+v, %v; want %s", c, ok, hexID('d'))
	}
	if w := r.Stats().Walks; w != 1 {
		t.Errorf("Walks = %d, want 1: a learned cgroup needs no walk", w)
	}
}

func BenchmarkContainerCached(b *testing.B) {
	h := newHost(b)
	r := newResolver(b, h.config())
	id := h.mkCgroup(b, "/docker/"+hexID('a'))
	if _, ok := r.Container(id); !ok {
		b.Fatal("Container(docker) ok = false")
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Container(id)
	}
}
