package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

// full is a Runtime with every field set, each to a value that needs
// something of the encoder: escapes, non-ASCII, zones, negative numbers.
func full() Runtime {
	at := time.Date(2026, 11, 30, 7, 1, 2, 345678900, time.FixedZone("x", -5*3600))
	p := Process{PID: 1, TID: 2, PPID: 3, UID: 4, GID: 5, Comm: "sh<>&", Exe: "/bin/\"sh\"", Argv: []string{"a\tb", "é\u2028\x01", "\xff"},
		Truncated: true, Cwd: `C:\x`, StartTime: at, CgroupID: 1 << 60, ParentExe: "/p\n", ExeChanged: at.Add(time.Nanosecond)}
	c := p
	c.PID = 99
	return Runtime{
		Process:   p,
		Container: &Container{ID: "id", Name: "n", Image: "i:1", Pod: "pod", Namespace: "ns", Runtime: "runc"},
		Host:      "h", Exit: &Exit{Code: -1, Signal: 9},
		File:   &File{Path: "/a", NewPath: "/b", Flags: 0o101, Mode: 0o644},
		Net:    &Net{Protocol: "tcp", Family: "inet6", SrcAddr: "::1", SrcPort: 1, DstAddr: "::2", DstPort: 65535},
		Setuid: &Setuid{Call: "setresuid", UID: -1, GID: 7},
		Ns:     &Ns{Flags: 1 << 63, FD: -3},
		Ptrace: &Ptrace{Request: -16, TargetPID: 4},
		Module: &Module{Name: "m"},
		Child:  &c, Syscall: "execve", Existing: true, Result: -13,
	}
}

// TestAppendJSONCoversEveryField fails when a field is added to the types
// AppendJSON writes: it must then learn the field, and full() set it.
func TestAppendJSONCoversEveryField(t *testing.T) {
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				t.Errorf("%s is nil in full(): set it, and have AppendJSON write it", path)
				return
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct || v.Type() == reflect.TypeFor[time.Time]() {
			if v.IsZero() {
				t.Errorf("%s is zero in full(): set it, and have AppendJSON write it", path)
			}
			return
		}
		for i := range v.NumField() {
			walk(path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	}
	r := full()
	walk("Runtime", reflect.ValueOf(&r))
}

func TestAppendJSONIsMarshal(t *testing.T) {
	r := full()
	cases := map[string]Runtime{"full": r, "zero": {}, "process only": {Process: Process{PID: 7, Exe: "/x"}}}
	r.Module = &Module{}
	cases["empty module"] = r
	r.Process.StartTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	cases["year 10000"] = r
	r = full()
	r.Child.ExeChanged = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
	cases["child year -1"] = r
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			want, werr := json.Marshal(&r)
			got, err := r.AppendJSON([]byte("prefix"))
			if (err != nil) != (werr != nil) {
				t.Fatalf("AppendJSON error = %v, json.Marshal's = %v", err, werr)
			}
			if werr != nil {
				return
			}
			if !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Errorf("AppendJSON =\n%s\njson.Marshal =\n%s", got[len("prefix"):], want)
			}
		})
	}
}

// FuzzAppendJSON: AppendJSON writes what json.Marshal writes, for any
// strings and numbers in any field.
func FuzzAppendJSON(f *testing.F) {
	f.Add("sh", "/bin/sh", "a\x00b", "\xed\xa0\x80", int64(1764486000123456789), int64(-1), uint64(7), true)
	f.Add("", "<&>", "\u2029", "é", int64(0), int64(0), uint64(0), false)
	f.Fuzz(func(t *testing.T, s1, s2, s3, s4 string, n1, n2 int64, u uint64, flag bool) {
		r := full()
		r.Process.Comm, r.Process.Exe, r.Process.Argv = s1, s2, []string{s3, s4, s1 + s4}
		r.Process.Cwd, r.Process.ParentExe = s3, s4
		r.Process.PID, r.Process.CgroupID = uint32(u), u //nolint:gosec // any value
		r.Process.StartTime = time.Unix(0, n1).In(time.FixedZone("z", int(n2%50000)))
		r.Process.Truncated, r.Existing = flag, !flag
		r.Container.ID, r.Container.Image = s2, s3
		r.Host, r.Syscall = s4, s1
		r.Exit.Code, r.Result = int(n2), n1
		r.File.Path, r.File.NewPath = s1, s2
		r.Net.SrcAddr, r.Net.DstPort = s3, uint16(u) //nolint:gosec // any value
		r.Setuid.UID, r.Ns.FD = n2, int32(n1)        //nolint:gosec // any value
		r.Module.Name = s4
		if flag {
			r.Child, r.Container, r.Net = nil, nil, nil
			r.Process.Argv = slices.Clip(r.Process.Argv[:0])
		}
		want, werr := json.Marshal(&r)
		got, err := r.AppendJSON(nil)
		if (err != nil) != (werr != nil) {
			t.Fatalf("AppendJSON error = %v, json.Marshal's = %v", err, werr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON =\n%s\njson.Marshal =\n%s", got, want)
		}
	})
}

func BenchmarkRuntimeJSON(b *testing.B) {
	r := Runtime{Process: Process{PID: 4242, PPID: 4200, UID: 1000, GID: 1000, Comm: "curl", Exe: "/usr/bin/curl",
		Argv: []string{"curl", "-s", "http://10.0.0.1/x.sh"}, Cwd: "/app", CgroupID: 12345, ParentExe: "/bin/sh", StartTime: time.Now()},
		Container: &Container{ID: "3f4e5d6c7b8a99aa0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778", Image: "registry.example.com/shop/web:1.42.0"},
		Host:      "node-07"}
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf, _ = r.AppendJSON(buf[:0])
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
