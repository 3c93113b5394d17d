package sensor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/google/go-cmp/cmp"

	"bulwark/internal/event"
)

// rec builds a record as the kernel writes it.
func rec(size int, kind, op, flags uint32) []byte {
	b := make([]byte, size)
	le.PutUint64(b[0:], 1_000_000_000)
	le.PutUint64(b[8:], 4242)
	le.PutUint32(b[16:], kind)
	le.PutUint32(b[20:], op)
	le.PutUint32(b[24:], 100) // pid
	le.PutUint32(b[28:], 101) // tid
	le.PutUint32(b[32:], 1)   // ppid
	le.PutUint32(b[36:], 1000)
	le.PutUint32(b[40:], 1001)
	le.PutUint32(b[44:], flags)
	copy(b[48:], "bash")
	return b
}

func execRecord() []byte {
	b := rec(execSize, kExec, opNone, 0)
	le.PutUint64(b[64:], 500_000_000)
	copy(b[80:], "/usr/bin/curl\x00")
	argv := "curl\x00-sS\x00https://example.com/\x00"
	le.PutUint32(b[72:], uint32(len(argv)))
	copy(b[336:], argv)
	le.PutUint64(b[848:], 1_700_000_000_123_456_789)
	return b
}

// withCwd writes cwd as the kernel's walk does: backwards from the end of
// the record's cwd field at base, its start at offField, and sets fCwd.
func withCwd(b []byte, offField, base int, cwd string) []byte {
	off := pathLen - 1 - len(cwd)
	copy(b[base+off:], cwd)
	b[base+pathLen-1] = 0
	le.PutUint32(b[offField:], uint32(off))
	le.PutUint32(b[44:], le.Uint32(b[44:])|fCwd)
	return b
}

// fileRecord builds a file record of op on path; with a cwd, the long
// record with the kernel's cwd.
func fileRecord(op, flags uint32, path, cwd string) []byte {
	size := fileSize
	if cwd != "" {
		size = fileCwdSize
	}
	b := rec(size, kFile, op, flags)
	le.PutUint32(b[64:], uint32(0xffffff9c)) // AT_FDCWD
	copy(b[84:], path)
	if cwd != "" {
		withCwd(b, 600, 604, cwd)
	}
	return b
}

func TestDecodeCwd(t *testing.T) {
	long := "/" + strings.Repeat("d", pathLen-2) // the longest cwd the field holds
	for _, tc := range []struct {
		name    string
		in      []byte
		wantCwd string
		wantSet bool // fCwd still set after decoding
	}{
		{"exec", withCwd(execRecord(), 76, 856, "/srv/app"), "/srv/app", true},
		{"exec at the root", withCwd(execRecord(), 76, 856, "/"), "/", true},
		{"exec with the longest cwd", withCwd(execRecord(), 76, 856, long), long, true},
		{"exec without", execRecord(), "", false},
		{"exec, offset past the field", func() []byte {
			b := withCwd(execRecord(), 76, 856, "/srv")
			le.PutUint32(b[76:], pathLen)
			return b
		}(), "", false},
		{"exec, not an absolute path", func() []byte {
			b := withCwd(execRecord(), 76, 856, "/srv")
			le.PutUint32(b[76:], le.Uint32(b[76:])+1)
			return b
		}(), "", false},
		{"exec, cut in the kernel", func() []byte {
			b := execRecord()
			le.PutUint32(b[44:], fCwdTrunc)
			return b
		}(), "", false},
		{"file", fileRecord(opOpenat, fPathRel, "x", "/srv/app"), "/srv/app", true},
		{"file without", fileRecord(opOpenat, fPathRel, "x", ""), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r record
			r.cwd = "stale"
			if err := newDecoder(0).decode(tc.in, &r); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if r.cwd != tc.wantCwd || (r.flags&fCwd != 0) != tc.wantSet {
				t.Errorf("decode: cwd %q, fCwd %v; want %q, %v", r.cwd, r.flags&fCwd != 0, tc.wantCwd, tc.wantSet)
			}
			if r.kind == event.KindProcessExec && r.rt.Process.Cwd != tc.wantCwd {
				t.Errorf("decode: Process.Cwd = %q, want %q", r.rt.Process.Cwd, tc.wantCwd)
			}
		})
	}
}

// TestEnrichCwd: the kernel's cwd wins; without it (cut, or the walk is
// off) the cwd comes from procfs (here a directory of symlinks standing in
// for /proc) while the process is there, and a relative path whose process
// is gone is user-space loss.
func TestEnrichCwd(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "100"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/from/proc", filepath.Join(proc, "100", "cwd")); err != nil {
		t.Fatal(err)
	}
	gone := func(b []byte) []byte { le.PutUint32(b[24:], 200); return b }
	trunc := func(b []byte) []byte { le.PutUint32(b[44:], le.Uint32(b[44:])|fCwdTrunc); return b }
	for _, tc := range []struct {
		name     string
		in       []byte
		wantCwd  string // exec: Process.Cwd
		wantPath string // file: File.Path
		keep     bool
		fromProc uint64
	}{
		{"exec, kernel's cwd", withCwd(execRecord(), 76, 856, "/srv/app"), "/srv/app", "", true, 0},
		{"exec, kernel's cwd, process gone", gone(withCwd(execRecord(), 76, 856, "/srv/app")), "/srv/app", "", true, 0},
		{"exec, cut in the kernel", trunc(execRecord()), "/from/proc", "", true, 1},
		{"exec, cut, process gone", gone(trunc(execRecord())), "", "", true, 1},
		{"relative write, kernel's cwd", fileRecord(opOpenat, fPathRel, "../app/x", "/srv/tmp"), "", "/srv/app/x", true, 0},
		{"relative write, kernel's cwd, process gone", gone(fileRecord(opOpenat, fPathRel, "x", "/srv")), "", "/srv/x", true, 0},
		{"relative write, from proc", fileRecord(opOpenat, fPathRel, "x", ""), "", "/from/proc/x", true, 1},
		{"relative write, process gone", gone(fileRecord(opOpenat, fPathRel, "x", "")), "", "", false, 1},
		{"relative write outside the watched paths", fileRecord(opOpenat, fPathRel, "x", "/tmp"), "", "", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sensor{cfg: Config{ProcRoot: proc}, watched: []string{"/srv", "/from"}}
			var r record
			if err := newDecoder(0).decode(tc.in, &r); err != nil {
				t.Fatalf("decode: %v", err)
			}
			keep := s.enrich(&r)
			if keep != tc.keep {
				t.Fatalf("enrich = %v, want %v", keep, tc.keep)
			}
			if r.kind == event.KindProcessExec && r.rt.Process.Cwd != tc.wantCwd {
				t.Errorf("Cwd = %q, want %q", r.rt.Process.Cwd, tc.wantCwd)
			}
			if r.kind == event.KindFileWrite && keep && r.rt.File.Path != tc.wantPath {
				t.Errorf("File.Path = %q, want %q", r.rt.File.Path, tc.wantPath)
			}
			if n := s.cwdFromProc.Load(); n != tc.fromProc {
				t.Errorf("cwd read from procfs %d times, want %d", n, tc.fromProc)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	proc := event.Process{PID: 100, TID: 101, PPID: 1, UID: 1000, GID: 1001, Comm: "bash", CgroupID: 4242}
	file := func(op, flags, mode uint32, path, path2 string) []byte {
		b := rec(fileSize, kFile, op, 0)
		le.PutUint32(b[72:], flags)
		le.PutUint32(b[76:], mode)
		copy(b[84:], path)
		copy(b[344:], path2)
		return b
	}
	// pathOnly is what the kernel sends for one path without a cwd: the
	// record ends with the path's NUL, or without one at PATH_MAX_LEN.
	pathOnly := func(op, hflags, flags uint32, path string, nul bool) []byte {
		n := filePath + len(path)
		if nul {
			n++
		}
		b := rec(n, kFile, op, hflags|fPathOnly)
		le.PutUint32(b[72:], flags)
		copy(b[filePath:], path)
		return b
	}
	netRec := func(kind, op uint32, fam, proto, sport, dport uint16, saddr, daddr []byte, result int64) []byte {
		b := rec(netSize, kind, op, 0)
		le.PutUint16(b[64:], fam)
		le.PutUint16(b[66:], proto)
		le.PutUint16(b[68:], sport)
		le.PutUint16(b[70:], dport)
		copy(b[72:], saddr)
		copy(b[88:], daddr)
		le.PutUint64(b[104:], uint64(result))
		return b
	}
	gen := func(kind, op uint32, a ...int64) []byte {
		b := rec(genSize, kind, op, 0)
		for i, v := range a {
			le.PutUint64(b[64+8*i:], uint64(v))
		}
		return b
	}
	exit := rec(exitSize, kExit, opNone, 0)
	le.PutUint32(exit[64:], 3<<8)
	killed := rec(exitSize, kExit, opNone, 0)
	le.PutUint32(killed[64:], 9)
	lo := []byte{127, 0, 0, 1}
	with := func(f func(*event.Runtime)) event.Runtime {
		rt := event.Runtime{Process: proc}
		f(&rt)
		return rt
	}
	for _, tc := range []struct {
		name     string
		in       []byte
		wantKind string
		want     event.Runtime
		wantFile event.File
		wantNet  event.Net
	}{
		{"exec", execRecord(), event.KindProcessExec, with(func(rt *event.Runtime) {
			rt.Process.Exe = "/usr/bin/curl"
			rt.Process.Argv = []string{"curl", "-sS", "https://example.com/"}
			rt.Process.ExeChanged = time.Unix(1_700_000_000, 123_456_789).UTC()
		}), event.File{}, event.Net{}},
		{"exit code", exit, event.KindProcessExit, with(func(rt *event.Runtime) { rt.Exit = &event.Exit{Code: 3} }), event.File{}, event.Net{}},
		{"killed", killed, event.KindProcessExit, with(func(rt *event.Runtime) { rt.Exit = &event.Exit{Signal: 9} }), event.File{}, event.Net{}},
		{"create", file(opOpenat, 0o101, 0o644, "/etc/x", ""), event.KindFileCreate,
			with(func(rt *event.Runtime) { rt.Syscall = "openat" }), event.File{Path: "/etc/x", Flags: 0o101, Mode: 0o644}, event.Net{}},
		{"write", file(opOpenat, 0o2, 0o644, "/etc/x", ""), event.KindFileWrite,
			with(func(rt *event.Runtime) { rt.Syscall = "openat" }), event.File{Path: "/etc/x", Flags: 2}, event.Net{}},
		{"read", func() []byte {
			b := file(opOpenat, 0, 0, "/etc/shadow", "")
			le.PutUint32(b[44:], fRead)
			return b
		}(), event.KindFileRead, with(func(rt *event.Runtime) { rt.Syscall = "openat" }), event.File{Path: "/etc/shadow"}, event.Net{}},
		{"write, path only", pathOnly(opOpenat, 0, 0o1101, "/etc/x", true), event.KindFileCreate,
			with(func(rt *event.Runtime) { rt.Syscall = "openat" }), event.File{Path: "/etc/x", Flags: 0o1101}, event.Net{}},
		{"read, path only", pathOnly(opOpenat, fRead, 0, "/etc/shadow", true), event.KindFileRead,
			with(func(rt *event.Runtime) { rt.Syscall = "openat" }), event.File{Path: "/etc/shadow"}, event.Net{}},
		{"path only, PATH_MAX_LEN without a NUL", pathOnly(opUnlinkat, 0, 0, "/"+strings.Repeat("p", pathLen-1), false), event.KindFileUnlink,
			with(func(rt *event.Runtime) { rt.Syscall = "unlinkat" }), event.File{Path: "/" + strings.Repeat("p", pathLen-1)}, event.Net{}},
		{"fchmod by fd, path only", pathOnly(opFchmod, fByFD, 0, "", true), event.KindFileChmod,
			with(func(rt *event.Runtime) { rt.Syscall = "fchmod" }), event.File{}, event.Net{}},
		{"rename", file(opRenameat2, 0, 0, "/etc/a", "/etc/b"), event.KindFileRename,
			with(func(rt *event.Runtime) { rt.Syscall = "renameat2" }), event.File{Path: "/etc/a", NewPath: "/etc/b"}, event.Net{}},
		{"connect", netRec(kConnect, opConnect, afInet, ipprotoTCP, 40000, 443, lo, []byte{10, 0, 0, 1}, -115), event.KindNetConnect,
			with(func(rt *event.Runtime) { rt.Syscall = "connect"; rt.Result = -115 }), event.File{},
			event.Net{Protocol: "tcp", Family: "inet", SrcAddr: "127.0.0.1", SrcPort: 40000, DstAddr: "10.0.0.1", DstPort: 443}},
		{"accept", netRec(kAccept, opAccept4, afInet, ipprotoTCP, 80, 50000, lo, lo, 5), event.KindNetAccept,
			with(func(rt *event.Runtime) { rt.Syscall = "accept4"; rt.Result = 5 }), event.File{},
			event.Net{Protocol: "tcp", Family: "inet", SrcAddr: "127.0.0.1", SrcPort: 50000, DstAddr: "127.0.0.1", DstPort: 80}},
		{"setresuid", gen(kSetuid, opSetresuid, 0xffffffff, 0, 0xffffffff), event.KindSetuid,
			with(func(rt *event.Runtime) {
				rt.Syscall = "setresuid"
				rt.Setuid = &event.Setuid{Call: "setresuid", UID: 0}
			}), event.File{}, event.Net{}},
		{"setregid", gen(kSetuid, opSetregid, 5, 0xffffffff), event.KindSetuid,
			with(func(rt *event.Runtime) { rt.Syscall = "setregid"; rt.Setuid = &event.Setuid{Call: "setregid", GID: 5} }), event.File{}, event.Net{}},
		{"unshare", gen(kUnshare, opUnshare, 0x10000000), event.KindUnshare,
			with(func(rt *event.Runtime) { rt.Syscall = "unshare"; rt.Ns = &event.Ns{Flags: 0x10000000} }), event.File{}, event.Net{}},
		{"ptrace", gen(kPtrace, opPtrace, 16, 77), event.KindPtrace,
			with(func(rt *event.Runtime) { rt.Syscall = "ptrace"; rt.Ptrace = &event.Ptrace{Request: 16, TargetPID: 77} }), event.File{}, event.Net{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder(0)
			var r record
			if err := d.decode(tc.in, &r); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if r.kind != tc.wantKind {
				t.Errorf("kind = %q, want %q", r.kind, tc.wantKind)
			}
			tc.want.Process.StartTime = r.rt.Process.StartTime
			if diff := cmp.Diff(tc.want, r.rt); diff != "" {
				t.Errorf("runtime (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFile, r.file); diff != "" {
				t.Errorf("file (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantNet, r.net); diff != "" {
				t.Errorf("net (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	d := newDecoder(0)
	var r record
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", make([]byte, hdrSize-1)},
		{"short exec", rec(execSize-1, kExec, 0, 0)},
		{"short file", rec(fileSize-1, kFile, opOpenat, 0)},
		{"file with a cwd, short", rec(fileCwdSize-1, kFile, opOpenat, fPathRel|fCwd)},
		{"path-only file without a path", rec(filePath, kFile, opOpenat, fPathOnly)},
		{"path-only file with a cwd, short", rec(fileSize, kFile, opOpenat, fPathOnly|fPathRel|fCwd)},
		{"unknown kind", rec(genSize, 99, 0, 0)},
		{"file with a non-file op", rec(fileSize, kFile, opConnect, 0)},
	} {
		if err := d.decode(tc.in, &r); err == nil {
			t.Errorf("decode(%s) = nil, want an error", tc.name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(execRecord())
	f.Add(rec(fileSize, kFile, opRename, fPathRel))
	f.Add(rec(netSize, kConnect, opConnect, 0))
	f.Add(withCwd(execRecord(), 76, 856, "/srv/app"))
	f.Add(fileRecord(opRenameat2, fPathRel|fPath2Rel, "a", "/srv"))
	f.Add(append(rec(filePath, kFile, opOpenat, fPathOnly), "/etc/x\x00"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r record
		_ = newDecoder(0).decode(b, &r)
	})
}

func BenchmarkDecodeExec(b *testing.B) {
	d := newDecoder(0)
	in := execRecord()
	var r record
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := d.decode(in, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLayout checks the sizes and offsets decode reads against the compiled
// object's BTF (bpf/sensor.h), for the records it has types of (the others
// are built on the stack, and their types are not in it).
func TestLayout(t *testing.T) {
	spec, err := loadSensor()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		size    int
		members map[string]int
	}{
		{"hdr", hdrSize, map[string]int{"flags": 44}},
		{"exec_rec", execSize, map[string]int{"argv_len": 72, "cwd_off": 76, "filename": 80, "argv": 336, "exe_ctime": 848, "cwd": 856}},
		{"file_rec", fileCwdSize, map[string]int{"path": filePath, "path2": 344, "cwd_off": fileSize, "cwd": 604}},
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(tc.name, &st); err != nil {
			t.Errorf("struct %s: %v", tc.name, err)
			continue
		}
		if int(st.Size) != tc.size {
			t.Errorf("sizeof(struct %s) = %d, want %d", tc.name, st.Size, tc.size)
		}
		for _, m := range st.Members {
			if want, ok := tc.members[m.Name]; ok && int(m.Offset.Bytes()) != want {
				t.Errorf("offsetof(struct %s, %s) = %d, want %d", tc.name, m.Name, m.Offset.Bytes(), want)
			}
			delete(tc.members, m.Name)
		}
		for name := range tc.members {
			t.Errorf("struct %s has no member %s", tc.name, name)
		}
	}
}

// BenchmarkEnrichExec: what user space does per exec record, with the cwd
// from the kernel and with it read from /proc (this process's, so that it
// is there).
func BenchmarkEnrichExec(b *testing.B) {
	self := uint32(os.Getpid()) //nolint:gosec // G115: a pid
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"cwd=kernel", withCwd(execRecord(), 76, 856, "/srv/app")},
		{"cwd=proc", execRecord()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			le.PutUint32(tc.in[24:], self)
			s := &Sensor{cfg: Config{ProcRoot: "/proc"}}
			d := newDecoder(0)
			var r record
			b.ReportAllocs()
			for b.Loop() {
				if err := d.decode(tc.in, &r); err != nil {
					b.Fatal(err)
				}
				if !s.enrich(&r) || r.rt.Process.Cwd == "" {
					b.Fatalf("enrich: cwd %q", r.rt.Process.Cwd)
				}
			}
		})
	}
}
