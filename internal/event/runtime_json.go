package event

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends r's JSON encoding to b: the bytes json.Marshal(r)
// writes. The Defender encodes every event it sees; encoding/json's
// reflection was the largest part of its CPU per event. When a field needs
// what this writer does not do (a time json.Marshal refuses), it falls back
// to json.Marshal, and fails as it would.
func (r *Runtime) AppendJSON(b []byte) ([]byte, error) {
	if !r.plainTimes() {
		m, err := json.Marshal(r)
		return append(b, m...), err
	}
	b = append(b, `{"process":`...)
	b = r.Process.appendJSON(b)
	if c := r.Container; c != nil {
		b = appendKey(b, "container")
		b = append(b, `{"id":`...)
		b = appendString(b, c.ID)
		b = appendStringField(b, "name", c.Name)
		b = appendStringField(b, "image", c.Image)
		b = appendStringField(b, "pod", c.Pod)
		b = appendStringField(b, "namespace", c.Namespace)
		b = appendStringField(b, "runtime", c.Runtime)
		b = append(b, '}')
	}
	b = appendStringField(b, "host", r.Host)
	if x := r.Exit; x != nil {
		b = appendKey(b, "exit")
		b = append(b, `{"code":`...)
		b = strconv.AppendInt(b, int64(x.Code), 10)
		b = appendIntField(b, "signal", int64(x.Signal))
		b = append(b, '}')
	}
	if f := r.File; f != nil {
		b = appendKey(b, "file")
		b = append(b, `{"path":`...)
		b = appendString(b, f.Path)
		b = appendStringField(b, "newPath", f.NewPath)
		b = appendUintField(b, "flags", uint64(f.Flags))
		b = appendUintField(b, "mode", uint64(f.Mode))
		b = append(b, '}')
	}
	if n := r.Net; n != nil {
		b = appendKey(b, "net")
		b = append(b, `{"protocol":`...)
		b = appendString(b, n.Protocol)
		b = append(b, `,"family":`...)
		b = appendString(b, n.Family)
		b = appendStringField(b, "srcAddr", n.SrcAddr)
		b = appendUintField(b, "srcPort", uint64(n.SrcPort))
		b = appendStringField(b, "dstAddr", n.DstAddr)
		b = appendUintField(b, "dstPort", uint64(n.DstPort))
		b = append(b, '}')
	}
	if s := r.Setuid; s != nil {
		b = appendKey(b, "setuid")
		b = append(b, `{"call":`...)
		b = appendString(b, s.Call)
		b = appendIntField(b, "uid", s.UID)
		b = appendIntField(b, "gid", s.GID)
		b = append(b, '}')
	}
	if n := r.Ns; n != nil {
		b = appendKey(b, "ns")
		b = append(b, `{"flags":`...)
		b = strconv.AppendUint(b, n.Flags, 10)
		b = appendIntField(b, "fd", int64(n.FD))
		b = append(b, '}')
	}
	if p := r.Ptrace; p != nil {
		b = appendKey(b, "ptrace")
		b = append(b, `{"request":`...)
		b = strconv.AppendInt(b, p.Request, 10)
		b = append(b, `,"targetPid":`...)
		b = strconv.AppendUint(b, uint64(p.TargetPID), 10)
		b = append(b, '}')
	}
	if m := r.Module; m != nil {
		b = appendKey(b, "module")
		b = append(b, '{')
		if m.Name != "" {
			b = append(b, `"name":`...)
			b = appendString(b, m.Name)
		}
		b = append(b, '}')
	}
	if c := r.Child; c != nil {
		b = appendKey(b, "child")
		b = c.appendJSON(b)
	}
	b = appendStringField(b, "syscall", r.Syscall)
	if r.Existing {
		b = append(b, `,"existing":true`...)
	}
	b = appendIntField(b, "result", r.Result)
	return append(b, '}'), nil
}

// plainTimes says whether every time in r is one AppendJSON writes itself:
// json.Marshal refuses years outside 0…9999.
func (r *Runtime) plainTimes() bool {
	ok := func(t time.Time) bool { y := t.Year(); return t.IsZero() || (y >= 0 && y <= 9999) }
	p := &r.Process
	if !ok(p.StartTime) || !ok(p.ExeChanged) {
		return false
	}
	return r.Child == nil || ok(r.Child.StartTime) && ok(r.Child.ExeChanged)
}

func (p *Process) appendJSON(b []byte) []byte {
	b = append(b, `{"pid":`...)
	b = strconv.AppendUint(b, uint64(p.PID), 10)
	b = appendUintField(b, "tid", uint64(p.TID))
	b = append(b, `,"ppid":`...)
	b = strconv.AppendUint(b, uint64(p.PPID), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(p.UID), 10)
	b = append(b, `,"gid":`...)
	b = strconv.AppendUint(b, uint64(p.GID), 10)
	b = appendStringField(b, "comm", p.Comm)
	b = appendStringField(b, "exe", p.Exe)
	if len(p.Argv) > 0 {
		b = append(b, `,"argv":[`...)
		for i, a := range p.Argv {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	if p.Truncated {
		b = append(b, `,"argvTruncated":true`...)
	}
	b = appendStringField(b, "cwd", p.Cwd)
	b = appendTimeField(b, "startTime", p.StartTime)
	b = appendUintField(b, "cgroupId", p.CgroupID)
	b = appendStringField(b, "parentExe", p.ParentExe)
	b = appendTimeField(b, "exeChanged", p.ExeChanged)
	return append(b, '}')
}

// appendKey writes ,"key": after an earlier field.
func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// The field writers below leave out a zero value, as omitempty and
// omitzero do.

func appendStringField(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(appendKey(b, key), s)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(appendKey(b, key), v, 10)
}

func appendIntField(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(appendKey(b, key), v, 10)
}

func appendTimeField(b []byte, key string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(appendKey(b, key), '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does: <, >
// and & escaped for HTML, U+2028 and U+2029 escaped, invalid UTF-8 replaced
// by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
