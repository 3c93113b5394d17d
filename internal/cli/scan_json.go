package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
)

// jsonIndex maps the paths of a JSON document to the lines where they are
// written, so that findings naming a config key (HostConfig.PidMode,
// linux.namespaces[2].path, config.ExposedPorts[22/tcp]) point at a line.
// Keys are compared without case, as encoding/json decodes them.
type jsonIndex struct {
	lines map[string]int // path (segments lower-cased, each after a NUL) → line
	root  int            // the line of the document's value
	array bool           // the document is an array
}

// jsonIndexDepth bounds the depth indexed; deeper keys report their
// ancestor's line.
const jsonIndexDepth = 16

// indexJSON indexes the first JSON value of data. A syntax error comes
// back as a *json.SyntaxError with the index of what came before it.
func indexJSON(data []byte) (*jsonIndex, error) {
	x := &jsonIndex{lines: map[string]int{}, root: 1}
	var newlines []int64
	for i, b := range data {
		if b == '\n' {
			newlines = append(newlines, int64(i))
		}
	}
	lineAt := func(off int64) int {
		return sort.Search(len(newlines), func(i int) bool { return newlines[i] >= off }) + 1
	}
	type frame struct {
		path    string
		array   bool
		n       int    // array: the next element's index
		key     string // object: the member being read
		wantKey bool
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				return x, io.ErrUnexpectedEOF
			}
			return x, nil
		}
		if err != nil {
			return x, err
		}
		// A token's last byte is on the line where it starts: JSON strings
		// hold no raw newline.
		line := lineAt(dec.InputOffset() - 1)
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return x, nil // the value is complete; what follows is not ours to judge
			}
			continue
		}
		path := ""
		if len(stack) == 0 {
			x.root = line
			x.array = tok == json.Delim('[')
		} else {
			top := &stack[len(stack)-1]
			switch {
			case top.wantKey:
				top.key, _ = tok.(string)
				top.wantKey = false
				if len(stack) <= jsonIndexDepth {
					x.lines[top.path+"\x00"+strings.ToLower(top.key)] = line
				}
				continue
			case top.array:
				path = top.path + "\x00" + strconv.Itoa(top.n)
				top.n++
				if len(stack) <= jsonIndexDepth {
					x.lines[path] = line
				}
			default:
				path = top.path + "\x00" + strings.ToLower(top.key)
				top.wantKey = true
			}
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{path: path, array: d == '[', wantKey: d == '{'})
		} else if len(stack) == 0 {
			return x, nil // a scalar document
		}
	}
}

// line is the line of the key at path below base ("" for the document,
// "[2]" for the third element of an array), or of its closest written
// ancestor: an option left unset points at the object that would hold it.
func (x *jsonIndex) line(base, path string) int {
	segs := append(splitKeyPath(base), splitKeyPath(path)...)
	for n := len(segs); n > 0; n-- {
		if l, ok := x.lines["\x00"+strings.Join(segs[:n], "\x00")]; ok {
			return l
		}
	}
	return x.root
}

// splitKeyPath splits a finding's path into lower-cased keys: fields
// separated by dots, map keys and indexes in brackets, quoted or not
// (`linux.sysctl[net.ipv4.ip_forward]`, `annotations["a.b"]`,
// `mounts[3]`).
func splitKeyPath(p string) []string {
	var segs []string
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			i++
			continue
		case '[':
			rest := p[i+1:]
			if q, err := strconv.QuotedPrefix(rest); err == nil && strings.HasPrefix(rest[len(q):], "]") {
				s, _ := strconv.Unquote(q)
				segs = append(segs, strings.ToLower(s))
				i += 1 + len(q) + 1
				continue
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				end = len(rest)
			}
			segs = append(segs, strings.ToLower(rest[:end]))
			i += 1 + min(end+1, len(rest))
		default:
			end := strings.IndexAny(p[i:], ".[")
			if end < 0 {
				end = len(p) - i
			}
			segs = append(segs, strings.ToLower(p[i:i+end]))
			i += end
		}
	}
	return segs
}

// jsonSyntaxError is a JSON input that does not parse, at its line.
func jsonSyntaxError(in scanInput, data []byte, err error) decoded {
	se := scanError{File: in.name, Message: "invalid JSON: " + err.Error()}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		se.Line = bytes.Count(data[:min(max(syn.Offset, 0), int64(len(data)))], []byte("\n")) + 1
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		se.Message = "invalid JSON: unexpected end of input"
		se.Line = bytes.Count(data, []byte("\n")) + 1
	}
	return decoded{errors: []scanError{se}}
}
