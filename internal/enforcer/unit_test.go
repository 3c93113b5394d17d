package enforcer

import (
	"context"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestTargetValidate(t *testing.T) {
	good := Target{ContainerID: "c1", CgroupPath: "/c1", PID: 1}
	long := "/" + strings.Repeat("a", maxPathLen)
	for _, tc := range []struct {
		name    string
		edit    func(*Target)
		wantErr []string // substrings; none: valid
	}{
		{"minimal", func(*Target) {}, nil},
		{"every kind", func(t *Target) {
			t.DenyExec = []ExecRule{{Rule: "r", Path: "/bin/nc"}, {Rule: "r", Dev: 1, Ino: 2}}
			t.DenyWrite = []WriteRule{{Rule: "w", Prefix: "/"}, {Rule: "w", Prefix: "/etc"}}
			t.DenyConnect = []ConnectRule{{Rule: "n"}, {Rule: "n", Prefix: netip.MustParsePrefix("::/0"), Port: 22}}
			t.AllowListen = &ListenRule{Rule: "l", Ports: []uint16{80}}
		}, nil},
		{"no cgroup", func(t *Target) { t.CgroupPath = "" }, []string{"CgroupPath is empty"}},
		{"relative cgroup", func(t *Target) { t.CgroupPath = "c1" }, []string{"not absolute"}},
		{"unclean cgroup", func(t *Target) { t.CgroupPath = "/a/../b" }, []string{"not clean"}},
		{"root cgroup", func(t *Target) { t.CgroupPath = "/" }, []string{"root cgroup"}},
		{"negative pid", func(t *Target) { t.PID = -1 }, []string{"negative"}},
		{"exec without rule name", func(t *Target) { t.DenyExec = []ExecRule{{Path: "/x"}} }, []string{"DenyExec[0]: Rule is empty"}},
		{"exec without what", func(t *Target) { t.DenyExec = []ExecRule{{Rule: "r"}} }, []string{"neither Path nor Dev/Ino"}},
		{"exec dev without ino", func(t *Target) { t.DenyExec = []ExecRule{{Rule: "r", Dev: 3}} }, []string{"go together"}},
		{"exec relative path", func(t *Target) { t.DenyExec = []ExecRule{{Rule: "r", Path: "bin/nc"}} }, []string{"not absolute"}},
		{"write path too long", func(t *Target) { t.DenyWrite = []WriteRule{{Rule: "w", Prefix: long}} }, []string{"longer than"}},
		{"write path with NUL", func(t *Target) { t.DenyWrite = []WriteRule{{Rule: "w", Prefix: "/a\x00b"}} }, []string{"NUL"}},
		{"write unclean", func(t *Target) { t.DenyWrite = []WriteRule{{Rule: "w", Prefix: "/etc/"}} }, []string{"not clean"}},
		{"connect invalid prefix", func(t *Target) {
			t.DenyConnect = []ConnectRule{{Rule: "n", Prefix: netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 33)}}
		}, []string{"invalid prefix"}},
		{"listen without rule", func(t *Target) { t.AllowListen = &ListenRule{} }, []string{"AllowListen[0]: Rule is empty"}},
		{"every problem reported", func(t *Target) {
			t.CgroupPath = ""
			t.DenyWrite = []WriteRule{{Prefix: "x"}}
		}, []string{"CgroupPath is empty", "DenyWrite[0]: Rule is empty", `"x": not absolute`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := good
			tc.edit(&tg)
			err := tg.validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Errorf("validate(%+v) = %v, want nil", tg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate(%+v) = nil, want errors %q", tg, tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("validate(%+v) = %v, want it to contain %q", tg, err, want)
				}
			}
		})
	}
}

func TestPathKey(t *testing.T) {
	k := pathKey(0x1122334455667788, "/etc/\x00")
	if k.Plen != 64+8*6 || k.CgLo != 0x55667788 || k.CgHi != 0x11223344 {
		t.Errorf("pathKey = plen %d cg %x %x, want plen %d, cgroup halves", k.Plen, k.CgHi, k.CgLo, 64+8*6)
	}
	if got := cString(unsafe.Slice((*byte)(unsafe.Pointer(&k.Path[0])), len(k.Path))); got != "/etc/" {
		t.Errorf("pathKey path = %q, want %q", got, "/etc/")
	}
}

func TestNetKey(t *testing.T) {
	v4mapped := func(a string) [16]uint8 { return netip.MustParseAddr(a).As16() }
	for _, tc := range []struct {
		name   string
		prefix netip.Prefix
		port   uint16
		plen   uint32
		addr   [16]uint8
	}{
		{"any address, any port", netip.Prefix{}, 0, 80, [16]uint8{}},
		{"any address, port 22", netip.Prefix{}, 22, 80, [16]uint8{}},
		{"IPv4 /8", netip.MustParsePrefix("10.1.2.3/8"), 0, 80 + 96 + 8, v4mapped("10.0.0.0")},
		{"IPv4 host", netip.MustParsePrefix("127.0.0.1/32"), 443, 80 + 128, v4mapped("127.0.0.1")},
		{"IPv6 /64", netip.MustParsePrefix("2001:db8::1/64"), 0, 80 + 64, netip.MustParseAddr("2001:db8::").As16()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := netKey(7, tc.prefix, tc.port)
			want := enforcerNetKey{Plen: tc.plen, CgLo: 7, Port: htons(tc.port), Addr: tc.addr}
			if diff := cmp.Diff(want, k); diff != "" {
				t.Errorf("netKey(7, %v, %d) mismatch (-want +got):\n%s", tc.prefix, tc.port, diff)
			}
		})
	}
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], htons(0x1234))
	if b != [2]byte{0x12, 0x34} {
		t.Errorf("htons(0x1234) in memory = % x, want 12 34 (network order)", b)
	}
}

func TestMatchPrefix(t *testing.T) {
	prefixes := map[string]string{"/etc/passwd": "passwd", "/root/.ssh": "ssh", "/var": "var", "/var/lib/x": "x"}
	for _, tc := range []struct {
		path string
		rule string
		ok   bool
	}{
		{"/etc/passwd", "passwd", true},
		{"/etc/passwd/x", "passwd", true},
		{"/etc/passwd-", "", false},
		{"/etc/shadow", "", false},
		{"/root/.ssh/authorized_keys", "ssh", true},
		{"/root/.sshx", "", false},
		{"/var/lib/x/y", "x", true},
		{"/var/lib/y", "var", true},
		{"/", "", false},
		{"", "", false},
		{"relative/etc/passwd", "", false},
	} {
		rule, ok := matchPrefix(prefixes, tc.path)
		if rule != tc.rule || ok != tc.ok {
			t.Errorf("matchPrefix(%q) = %q, %v; want %q, %v", tc.path, rule, ok, tc.rule, tc.ok)
		}
	}
	if rule, ok := matchPrefix(map[string]string{"/": "all"}, "/a/b"); rule != "all" || !ok {
		t.Errorf("matchPrefix(/ denies all, /a/b) = %q, %v; want all, true", rule, ok)
	}
}

func TestIsWrite(t *testing.T) {
	for _, tc := range []struct {
		flags uint32
		want  bool
	}{
		{unix.O_RDONLY, false},
		{unix.O_RDONLY | unix.O_CLOEXEC | unix.O_DIRECTORY, false},
		{unix.O_RDONLY | unix.O_CREAT, false},
		{unix.O_WRONLY, true},
		{unix.O_RDWR, true},
		{unix.O_RDONLY | unix.O_TRUNC, true},
		{unix.O_WRONLY | unix.O_APPEND, true},
		{unix.O_ACCMODE, true},
	} {
		if got := isWrite(tc.flags); got != tc.want {
			t.Errorf("isWrite(%#o) = %v, want %v", tc.flags, got, tc.want)
		}
	}
}

func TestKernelDev(t *testing.T) {
	for _, tc := range []struct {
		major, minor uint32
		want         uint32
	}{
		{254, 0, 254 << 20},
		{0, 41, 41},
		{8, 300, 8<<20 | 300},
		{259, 1 << 19, 259<<20 | 1<<19},
	} {
		if got := kernelDev(unix.Mkdev(tc.major, tc.minor)); got != tc.want {
			t.Errorf("kernelDev(%d:%d) = %#x, want %#x", tc.major, tc.minor, got, tc.want)
		}
	}
}

func TestRuleTable(t *testing.T) {
	var r ruleTable
	a, b := r.id("a"), r.id("b")
	if a == 0 || b == 0 || a == b || r.id("a") != a {
		t.Errorf("ids a=%d b=%d, again a=%d; want distinct, non-zero, stable", a, b, r.id("a"))
	}
	if r.name(a) != "a" || r.name(b) != "b" || r.name(0) != "" || r.name(99) != "" {
		t.Errorf("names = %q %q %q %q; want a b and empty for 0 and unknown", r.name(a), r.name(b), r.name(0), r.name(99))
	}
}

// TestLayout pins struct prevented's offsets, which decodePrevented reads,
// to the Go type bpf2go generated from the C header.
func TestLayout(t *testing.T) {
	var p enforcerPrevented
	for _, tc := range []struct {
		field string
		got   uintptr
		want  int
	}{
		{"Ktime", unsafe.Offsetof(p.Ktime), offKtime},
		{"Kind", unsafe.Offsetof(p.Kind), offKind},
		{"Mech", unsafe.Offsetof(p.Mech), offMech},
		{"Rule", unsafe.Offsetof(p.Rule), offRule},
		{"Pid", unsafe.Offsetof(p.Pid), offPid},
		{"Tid", unsafe.Offsetof(p.Tid), offTid},
		{"Uid", unsafe.Offsetof(p.Uid), offUID},
		{"Comm", unsafe.Offsetof(p.Comm), offComm},
		{"Family", unsafe.Offsetof(p.Family), offFamily},
		{"Port", unsafe.Offsetof(p.Port), offPort},
		{"Addr", unsafe.Offsetof(p.Addr), offAddr},
		{"CgLo", unsafe.Offsetof(p.CgLo), offCgLo},
		{"CgHi", unsafe.Offsetof(p.CgHi), offCgHi},
		{"Path", unsafe.Offsetof(p.Path), offPath},
		{"size", unsafe.Sizeof(p), recLen},
	} {
		if int(tc.got) != tc.want {
			t.Errorf("struct prevented %s at %d, decoder uses %d", tc.field, tc.got, tc.want)
		}
	}
	// The LSM programs look up &prevented.plen as a struct path_key.
	if got, want := unsafe.Offsetof(p.Plen)+unsafe.Sizeof(enforcerPathKey{}), unsafe.Sizeof(p); got > want {
		t.Errorf("path_key at plen ends at %d, beyond struct prevented (%d)", got, want)
	}
}

// record builds a struct prevented as the kernel writes it.
func prevented(kind, mech uint32, f func(*enforcerPrevented)) []byte {
	p := enforcerPrevented{Ktime: 5e9, Kind: kind, Mech: mech, Rule: 3, Pid: 10, Tid: 11, Uid: 0, CgLo: 0x89, CgHi: 1}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&p.Comm[0])), 16), "nc")
	if f != nil {
		f(&p)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&p)), unsafe.Sizeof(p))
}

func TestDecodePrevented(t *testing.T) {
	withPath := func(s string) func(*enforcerPrevented) {
		return func(p *enforcerPrevented) {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&p.Path[0])), len(p.Path)), s)
		}
	}
	withAddr := func(family uint16, a string, port uint16) func(*enforcerPrevented) {
		return func(p *enforcerPrevented) {
			p.Family, p.Port, p.Addr = family, port, netip.MustParseAddr(a).As16()
		}
	}
	base := record{ktime: 5e9, rule: 3, pid: 10, tid: 11, comm: "nc", cgroup: 1<<32 | 0x89}
	for _, tc := range []struct {
		name string
		in   []byte
		want func(r *record)
	}{
		{"exec by LSM", prevented(kExec, 1, withPath("/usr/bin/nc")), func(r *record) {
			r.kind, r.mech, r.path = KindExec, MechanismBPFLSM, "/usr/bin/nc"
		}},
		{"write, path fills the buffer", prevented(kWrite, 1, withPath(strings.Repeat("x", 300))), func(r *record) {
			r.kind, r.mech, r.path = KindFileWrite, MechanismBPFLSM, strings.Repeat("x", 256)
		}},
		{"connect IPv4 by cgroup BPF", prevented(kConnect, 2, withAddr(unix.AF_INET, "::ffff:10.0.0.1", 80)), func(r *record) {
			r.kind, r.mech, r.addr = KindConnect, MechanismCgroupBPF, netip.MustParseAddrPort("10.0.0.1:80")
		}},
		{"bind IPv6", prevented(kBind, 2, withAddr(unix.AF_INET6, "::1", 8080)), func(r *record) {
			r.kind, r.mech, r.addr = KindBind, MechanismCgroupBPF, netip.MustParseAddrPort("[::1]:8080")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePrevented(tc.in)
			if err != nil {
				t.Fatalf("decodePrevented: %v", err)
			}
			want := base
			tc.want(&want)
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(record{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("decodePrevented mismatch (-want +got):\n%s", diff)
			}
		})
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short", prevented(kExec, 1, nil)[:100], "100 bytes"},
		{"unknown kind", prevented(9, 1, nil), "unknown kind 9"},
		{"unknown mechanism", prevented(kExec, 7, nil), "unknown mechanism 7"},
		{"connect without family", prevented(kConnect, 2, nil), "address family 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodePrevented(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("decodePrevented(%s) = %v, want an error containing %q", tc.name, err, tc.want)
			}
		})
	}
}

func FuzzDecodePrevented(f *testing.F) {
	f.Add(prevented(kExec, 1, nil))
	f.Add(prevented(kConnect, 2, func(p *enforcerPrevented) { p.Family = unix.AF_INET }))
	f.Add(prevented(kBind, 2, func(p *enforcerPrevented) { p.Family = unix.AF_INET6 }))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodePrevented(b)
		if err != nil {
			return
		}
		if r.kind == "" || r.mech == "" || len(r.path) > pathLen || len(r.comm) > commLen {
			t.Errorf("decodePrevented(%x) = %+v: accepted without a kind, a mechanism or with an oversized string", b, r)
		}
	})
}

// event builds fanotify event metadata as the kernel writes it.
func event(mask uint64, fd, pid int32) []byte {
	b := make([]byte, fanMetaLen)
	binary.LittleEndian.PutUint32(b[0:], fanMetaLen)
	b[4] = unix.FANOTIFY_METADATA_VERSION
	binary.LittleEndian.PutUint16(b[6:], fanMetaLen)
	binary.LittleEndian.PutUint64(b[8:], mask)
	binary.LittleEndian.PutUint32(b[16:], uint32(fd))  //nolint:gosec // G115: test data
	binary.LittleEndian.PutUint32(b[20:], uint32(pid)) //nolint:gosec // G115: test data
	return b
}

func TestParseEvents(t *testing.T) {
	two := append(event(unix.FAN_OPEN_PERM, 5, 100), event(unix.FAN_OPEN_EXEC_PERM, 6, 101)...)
	got, err := parseEvents(two)
	want := []fanEvent{{unix.FAN_OPEN_PERM, 5, 100}, {unix.FAN_OPEN_EXEC_PERM, 6, 101}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseEvents(two events) = %+v, %v; want %+v", got, err, want)
	}
	badVersion := event(unix.FAN_OPEN_PERM, 7, 1)
	badVersion[4] = 2
	for _, tc := range []struct {
		name    string
		in      []byte
		wantN   int
		wantErr string
	}{
		{"trailing bytes", append(event(unix.FAN_OPEN_PERM, 5, 1), 1, 2, 3), 1, "trailing"},
		{"version", append(event(unix.FAN_OPEN_PERM, 5, 1), badVersion...), 1, "version 2"},
		{"length past the end", func() []byte {
			b := event(unix.FAN_OPEN_PERM, 5, 1)
			binary.LittleEndian.PutUint32(b, 1000)
			return b
		}(), 0, "event length 1000"},
		{"length too short", func() []byte {
			b := event(unix.FAN_OPEN_PERM, 5, 1)
			binary.LittleEndian.PutUint32(b, 8)
			return b
		}(), 0, "event length 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEvents(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || len(got) != tc.wantN {
				t.Errorf("parseEvents = %d events, %v; want %d decoded before an error containing %q", len(got), err, tc.wantN, tc.wantErr)
			}
		})
	}
}

func FuzzParseEvents(f *testing.F) {
	f.Add(event(unix.FAN_OPEN_PERM, 5, 100))
	f.Add(append(event(unix.FAN_OPEN_PERM, 5, 100), event(unix.FAN_OPEN_EXEC_PERM, -1, 0)...))
	f.Add([]byte{24, 0, 0, 0, 3, 0, 24})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, _ := parseEvents(b)
		if len(evs)*fanMetaLen > len(b) {
			t.Errorf("parseEvents(%x) = %d events from %d bytes", b, len(evs), len(b))
		}
	})
}

const sampleMountinfo = `73 47 254:0 /tmp/bundle/rootfs / rw,relatime - ext4 /dev/vda rw,discard
74 73 0:41 / /proc rw,relatime - proc proc rw
75 73 0:42 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
77 75 0:44 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
90 73 254:0 /srv/data /my\040data rw,relatime shared:1 - ext4 /dev/vda rw
`

func TestParseMountinfo(t *testing.T) {
	got, err := parseMountinfo([]byte(sampleMountinfo))
	if err != nil {
		t.Fatalf("parseMountinfo: %v", err)
	}
	want := []mount{{"/", "ext4"}, {"/proc", "proc"}, {"/dev", "tmpfs"}, {"/dev/shm", "tmpfs"}, {"/my data", "ext4"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mount{})); diff != "" {
		t.Errorf("parseMountinfo mismatch (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"no separator", "73 47 254:0 / / rw ext4 /dev/vda rw\n", "no separator"},
		{"few fields", "73 47 / - ext4 /dev/vda rw\n", "fields"},
		{"relative mount point", "73 47 254:0 / x rw - ext4 /dev/vda rw\n", "not absolute"},
		{"no type", "73 47 254:0 / / rw - \n", "no file system type"},
		{"too many", strings.Repeat("1 1 0:1 / /x rw - tmpfs t rw\n", maxMounts+1), "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseMountinfo([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseMountinfo(%.40q) = %v, want an error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(sampleMountinfo)
	f.Add("1 1 0:1 / /x\\0 rw - tmpfs t rw\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := parseMountinfo([]byte(s))
		if err != nil {
			return
		}
		for _, m := range ms {
			if !strings.HasPrefix(m.point, "/") || m.fstype == "" {
				t.Errorf("parseMountinfo(%q) accepted %+v", s, m)
			}
		}
	})
}

func TestParseCgroup2Line(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"4:memory:/x\n0::/bwtest-1\n", "/bwtest-1", true},
		{"0::/\n", "/", true},
		{"0::/kubepods.slice/cri-containerd-ab.scope", "/kubepods.slice/cri-containerd-ab.scope", true},
		{"1:cpu:/x\n", "", false},
	} {
		got, err := parseCgroup2Line([]byte(tc.in))
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parseCgroup2Line(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseStatusIDs(t *testing.T) {
	for _, tc := range []struct {
		in        string
		tgid, uid uint32
	}{
		{"Name:\tsh\nTgid:\t4242\nPid:\t4243\nUid:\t1000\t1001\t1002\t1003\n", 4242, 1000},
		{"Tgid: x\nUid:\n", 0, 0},
		{"", 0, 0},
	} {
		tgid, uid := parseStatusIDs([]byte(tc.in))
		if tgid != tc.tgid || uid != tc.uid {
			t.Errorf("parseStatusIDs(%q) = %d, %d; want %d, %d", tc.in, tgid, uid, tc.tgid, tc.uid)
		}
	}
}

func TestStopContainerRefusesBadInput(t *testing.T) {
	for _, ref := range []ContainerRef{
		{ID: ""},
		{ID: "--root=/"},
		{ID: "a b"},
		{ID: strings.Repeat("a", 300)},
		{ID: "ok", Runtime: "lxc"},
	} {
		if err := StopContainer(context.Background(), ref); err == nil {
			t.Errorf("StopContainer(%+v) = nil, want an error", ref)
		}
	}
}
