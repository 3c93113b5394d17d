package sqlite

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// containerIDOf returns container.id of the JSON of an event.Runtime, nil
// when there is none. AppendEvents calls it for every event, so it skips
// values instead of decoding them, and returns the ID's bytes in data when it
// has no escapes: a decode with encoding/json, or SQLite's json_extract in a
// generated column, cost more than half of the ingest throughput. Keys match
// as encoding/json matches them (ignoring case), so the column agrees with a
// decoded event.Runtime; data that is not such an object has no ID.
func containerIDOf(data []byte) []byte {
	var id []byte
	s := scanner{b: data}
	s.object(func(key []byte) bool {
		if !keyIs(key, "container") {
			return s.skip()
		}
		id = nil
		if s.peek() != '{' {
			return s.skip()
		}
		return s.object(func(key []byte) bool {
			if !keyIs(key, "id") {
				return s.skip()
			}
			id = s.str()
			return s.ok
		})
	})
	if !s.ok || len(id) == 0 {
		return nil
	}
	return id
}

// keyIs reports whether the raw (still escaped) key names the field name, as
// encoding/json matches keys: escapes decoded, case ignored.
func keyIs(raw []byte, name string) bool {
	plain := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return len(raw) == len(name) && strings.EqualFold(string(raw), name)
	}
	var k string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	return json.Unmarshal(quoted, &k) == nil && strings.EqualFold(k, name)
}

// scanner walks JSON text; ok turns false at the first thing it does not
// expect and stays false.
type scanner struct {
	b  []byte
	i  int
	ok bool
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) bool {
	if s.peek() != c {
		s.ok = false
		return false
	}
	s.i++
	return true
}

// object reads an object, calling member with each key while positioned on
// its value; member must consume the value and report s.ok. It sets ok.
func (s *scanner) object(member func(key []byte) bool) bool {
	s.ok = true
	if !s.expect('{') {
		return false
	}
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		key, ok := s.rawString()
		if !ok || !s.expect(':') || !member(key) {
			s.ok = false
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			s.ok = false
			return false
		}
	}
}

// rawString reads a string and returns its bytes between the quotes, escapes
// left as they are.
func (s *scanner) rawString() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			i++
		case '"':
			s.i = i + 1
			return s.b[start:i], true
		}
	}
	return nil, false
}

// str reads a string value; anything else (null, a number…) is nil and
// skipped.
func (s *scanner) str() []byte {
	if s.peek() != '"' {
		s.skip()
		return nil
	}
	start := s.i
	raw, ok := s.rawString()
	if !ok {
		s.ok = false
		return nil
	}
	for _, c := range raw {
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			// Escapes or non-ASCII: let encoding/json decode (and
			// validate) the rare string that needs it.
			var v string
			if json.Unmarshal(s.b[start:s.i], &v) != nil {
				s.ok = false
				return nil
			}
			return []byte(v)
		}
	}
	return raw
}

// skip steps over one value of any type and reports s.ok.
func (s *scanner) skip() bool {
	depth := 0
	for {
		switch c := s.peek(); c {
		case '"':
			if _, ok := s.rawString(); !ok {
				s.ok = false
				return false
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				s.ok = false
				return false
			}
			depth--
			s.i++
		case ',', ':':
			if depth == 0 {
				s.ok = false
				return false
			}
			s.i++
		case 0:
			s.ok = false
			return false
		default: // number, true, false, null
			j := s.i
			for j < len(s.b) && !isDelim(s.b[j]) {
				j++
			}
			s.i = j
		}
		if depth == 0 {
			s.ok = true
			return true
		}
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', ':', '{', '}', '[', ']', '"', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}
