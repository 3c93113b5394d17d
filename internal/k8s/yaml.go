package k8s

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Kubernetes reads YAML as kubectl does: sigs.k8s.io/yaml turns every
// document into JSON with go-yaml v2, that is with YAML 1.1 scalars
// (yes/no/on/off are booleans, 0777 is octal, 2024-01-02 a timestamp), and
// the API server decodes that JSON. A scanner that read `hostPID: yes` as the
// string "yes" would fail or, worse, miss what the cluster applies. So the
// documents are parsed with go-yaml v3 (for line numbers) and converted here
// with the YAML 1.1 rules; TestYAMLMatchesKubectl compares the result with
// sigs.k8s.io/yaml.

// maxNodes bounds the values one document may expand to through aliases
// ("billion laughs").
const maxNodes = 1 << 20

// jsonDoc is a YAML value converted to JSON, with the source line of every
// value so that a JSON decoding error can name its line.
type jsonDoc struct {
	data  []byte
	marks []mark // starts of values in data, ascending
}

type mark struct{ off, line int }

// lineAt returns the line of the innermost value that starts before off, the
// position a JSON decoding error reports (just after the offending value or
// its first byte).
func (d *jsonDoc) lineAt(off int64) int {
	i := sort.Search(len(d.marks), func(i int) bool { return int64(d.marks[i].off) >= off })
	if i == 0 {
		if len(d.marks) == 0 {
			return 0
		}
		return d.marks[0].line
	}
	return d.marks[i-1].line
}

// converter turns yaml.v3 nodes into JSON.
type converter struct {
	doc       jsonDoc
	budget    int
	expanding map[*yaml.Node]bool // anchors being expanded, to refuse cycles
}

// yamlError is a conversion error at a line.
type yamlError struct {
	line int
	msg  string
}

func (e *yamlError) Error() string { return e.msg }

func errAt(n *yaml.Node, format string, args ...any) error {
	return &yamlError{line: n.Line, msg: fmt.Sprintf(format, args...)}
}

// toJSON converts the value n to JSON.
func toJSON(n *yaml.Node) (*jsonDoc, error) {
	c := &converter{budget: maxNodes}
	if err := c.value(n); err != nil {
		return nil, err
	}
	return &c.doc, nil
}

func (c *converter) value(n *yaml.Node) error {
	c.budget--
	if c.budget < 0 {
		return errAt(n, "the document expands to more than %d values through aliases", maxNodes)
	}
	c.doc.marks = append(c.doc.marks, mark{off: len(c.doc.data), line: n.Line})
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			c.doc.data = append(c.doc.data, "null"...)
			return nil
		}
		return c.value(n.Content[0])
	case yaml.AliasNode:
		if c.expanding[n.Alias] {
			return errAt(n, "anchor %q refers to itself", n.Value)
		}
		if c.expanding == nil {
			c.expanding = map[*yaml.Node]bool{}
		}
		c.expanding[n.Alias] = true
		err := c.value(n.Alias)
		delete(c.expanding, n.Alias)
		return err
	case yaml.SequenceNode:
		c.doc.data = append(c.doc.data, '[')
		for i, e := range n.Content {
			if i > 0 {
				c.doc.data = append(c.doc.data, ',')
			}
			if err := c.value(e); err != nil {
				return err
			}
		}
		c.doc.data = append(c.doc.data, ']')
		return nil
	case yaml.MappingNode:
		es, err := c.entries(n)
		if err != nil {
			return err
		}
		c.doc.data = append(c.doc.data, '{')
		for i, e := range es {
			if i > 0 {
				c.doc.data = append(c.doc.data, ',')
			}
			c.doc.data = appendString(c.doc.data, e.key)
			c.doc.data = append(c.doc.data, ':')
			if err := c.value(e.value); err != nil {
				return err
			}
		}
		c.doc.data = append(c.doc.data, '}')
		return nil
	case yaml.ScalarNode:
		v, err := scalarValue(n)
		if err != nil {
			return err
		}
		b, err := appendScalar(c.doc.data, v)
		if err != nil {
			return errAt(n, "%s", err)
		}
		c.doc.data = b
		return nil
	}
	return errAt(n, "unexpected YAML node kind %d", n.Kind)
}

// entry is a key of a mapping, resolved to the string JSON uses, and its
// value.
type entry struct {
	key   string
	keyAt *yaml.Node
	value *yaml.Node
}

// entries lists the keys of a mapping as go-yaml v2 builds a map from it: a
// later key replaces an earlier one with the same name, merge keys ("<<")
// insert the keys of the merged mappings where they stand (of a list of
// mappings, the first wins).
func (c *converter) entries(n *yaml.Node) ([]entry, error) {
	var out []entry
	index := map[string]int{}
	set := func(e entry) {
		if i, ok := index[e.key]; ok {
			out[i] = e
			return
		}
		index[e.key] = len(out)
		out = append(out, e)
	}
	var merge func(v *yaml.Node, depth int) error
	add := func(m *yaml.Node, depth int) error {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			if isMerge(k) {
				if err := merge(v, depth+1); err != nil {
					return err
				}
				continue
			}
			key, err := c.key(k)
			if err != nil {
				return err
			}
			set(entry{key: key, keyAt: k, value: v})
		}
		return nil
	}
	merge = func(v *yaml.Node, depth int) error {
		if depth > 100 {
			return errAt(v, "merge keys nest too deep")
		}
		c.budget--
		if c.budget < 0 {
			return errAt(v, "the document expands to more than %d values through aliases", maxNodes)
		}
		v = resolveAlias(v)
		switch v.Kind {
		case yaml.MappingNode:
			return add(v, depth)
		case yaml.SequenceNode:
			for i := len(v.Content) - 1; i >= 0; i-- {
				if m := resolveAlias(v.Content[i]); m.Kind == yaml.MappingNode {
					if err := add(m, depth); err != nil {
						return err
					}
					continue
				}
				return errAt(v.Content[i], "a merge (<<) takes a mapping or a list of mappings")
			}
			return nil
		}
		return errAt(v, "a merge (<<) takes a mapping or a list of mappings")
	}
	if err := add(n, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// resolveAlias follows aliases to the node they name.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && plain(k) && (!tagged(k) || k.Tag == "!!merge")
}

// key turns a mapping key into the string JSON uses: go-yaml v2 resolves it
// like any scalar (so `yes:` is the key "true") and sigs.k8s.io/yaml prints
// numbers and booleans back.
func (c *converter) key(k *yaml.Node) (string, error) {
	k = resolveAlias(k)
	if k.Kind != yaml.ScalarNode {
		return "", errAt(k, "a mapping key must be a scalar, not a %s", kindName(k.Kind))
	}
	v, err := scalarValue(k)
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case timestamp:
		return string(v), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 32)
		switch s {
		case "+Inf":
			s = ".inf"
		case "-Inf":
			s = "-.inf"
		case "NaN":
			s = ".nan"
		}
		return s, nil
	}
	return "", errAt(k, "mapping key %q is not a string, number or boolean", k.Value)
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	}
	return "scalar"
}

const quotedStyles = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle

func plain(n *yaml.Node) bool  { return n.Style&quotedStyles == 0 }
func tagged(n *yaml.Node) bool { return n.Style&yaml.TaggedStyle != 0 }

// YAML tags a scalar may carry explicitly.
const (
	tagStr       = "!!str"
	tagBinary    = "!!binary"
	tagNull      = "!!null"
	tagBool      = "!!bool"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagTimestamp = "!!timestamp"
)

// timestamp is a scalar that YAML 1.1 reads as a timestamp. go-yaml v2
// keeps its text when it decodes into interface{}, and so does kubectl.
type timestamp string

// scalarValue is the Go value of a scalar: nil, bool, int64, uint64,
// float64, string or timestamp.
func scalarValue(n *yaml.Node) (any, error) {
	tag := ""
	if tagged(n) {
		tag = n.Tag
	}
	switch {
	case tag == tagBinary:
		b, err := base64.StdEncoding.DecodeString(n.Value)
		if err != nil {
			return nil, errAt(n, "!!binary value is not base64: %v", err)
		}
		return string(b), nil
	case tag == tagStr:
		return n.Value, nil
	case tag == "" && !plain(n):
		return n.Value, nil // quoted and block scalars are strings
	case tag != "" && !resolvable(tag):
		return n.Value, nil // application tags (!foo) keep the text
	}
	v := resolveScalar(tag, n.Value)
	if tag == "" || tagOf(v) == tag {
		return v, nil
	}
	if tag == tagFloat {
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case uint64:
			return float64(x), nil
		}
	}
	return nil, errAt(n, "cannot read %q as %s", n.Value, tag)
}

func resolvable(tag string) bool {
	switch tag {
	case tagNull, tagBool, tagInt, tagFloat, tagTimestamp:
		return true
	}
	return false
}

func tagOf(v any) string {
	switch v.(type) {
	case nil:
		return tagNull
	case bool:
		return tagBool
	case int64, uint64:
		return tagInt
	case float64:
		return tagFloat
	case timestamp:
		return tagTimestamp
	}
	return tagStr
}

// resolveScalar applies YAML 1.1's implicit types to a plain scalar, as
// go-yaml v2 does.
func resolveScalar(tag, s string) any {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return true
	case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return false
	case ".nan", ".NaN", ".NAN":
		return math.NaN()
	case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF":
		return math.Inf(1)
	case "-.inf", "-.Inf", "-.INF":
		return math.Inf(-1)
	}
	switch c := s[0]; {
	case c == '.':
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	case c == '+' || c == '-' || ('0' <= c && c <= '9'):
		if tag == "" || tag == tagTimestamp {
			if _, ok := parseTimestamp(s); ok {
				return timestamp(s)
			}
		}
		p := strings.ReplaceAll(s, "_", "")
		if i, err := strconv.ParseInt(p, 0, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(p, 0, 64); err == nil {
			return u
		}
		if yamlFloat(p) {
			if f, err := strconv.ParseFloat(p, 64); err == nil {
				return f
			}
		}
		if b, ok := strings.CutPrefix(p, "-0b"); ok {
			if i, err := strconv.ParseInt("-"+b, 2, 64); err == nil {
				return i
			}
		}
	}
	return s
}

// yamlFloat reports whether s matches [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
func yamlFloat(s string) bool {
	digits := func(i int) int {
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if i < len(s) && s[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return false
		}
		i = j
	} else {
		j := digits(i)
		if j == i {
			return false
		}
		i = j
		if i < len(s) && s[i] == '.' {
			i = digits(i + 1)
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(s)
}

// parseTimestamp reads the YAML 1.1 timestamps go-yaml v2 knows.
func parseTimestamp(s string) (time.Time, bool) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i != 4 || i == len(s) || s[i] != '-' {
		return time.Time{}, false
	}
	for _, layout := range []string{
		"2006-1-2T15:4:5.999999999Z07:00",
		"2006-1-2t15:4:5.999999999Z07:00",
		"2006-1-2 15:4:5.999999999",
		"2006-1-2",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

var errNotJSON = errors.New("not representable in JSON")

func appendScalar(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%v is %w", v, errNotJSON)
		}
		j, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("number %v: %w", v, err)
		}
		return append(b, j...), nil
	case timestamp:
		return appendString(b, string(v)), nil
	case string:
		return appendString(b, v), nil
	}
	return nil, fmt.Errorf("value of type %T is %w", v, errNotJSON)
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD as
// with encoding/json.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
