// Package k8s reads Kubernetes manifests for the compliance engine: it
// decodes YAML and JSON files (multi-document, v1 List and *List kinds) into
// the pod-bearing objects they hold (Pod, Deployment, ReplicaSet,
// StatefulSet, DaemonSet, Job, CronJob, ReplicationController, PodTemplate),
// normalizes each into a compliance.Workload whose fields carry their paths
// in the object and whose lines can be found again, evaluates the Pod
// Security Standards through k8s.io/pod-security-admission, and reads the
// bulwark.dev/ignore-check.<check> annotations. For the admission controller
// it also parses the admission policy (AdmissionPolicy) and generates the
// ValidatingWebhookConfiguration that sends workloads to it.
//
// The package is a library: bulwarkctl scan k8s and the admission webhook
// share it, and it imports only the compliance domain package and
// third-party code. It does no I/O.
package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sjson "sigs.k8s.io/json"

	"bulwark/internal/compliance"
)

// Object is one pod-bearing Kubernetes object of a manifest.
type Object struct {
	// Workload is the object normalized for compliance.Evaluate. Source has
	// Kind manifest, Engine containerd (Kubernetes pods run on CRI, so
	// findings carry CRI IDs), File, Line (where the object starts: the
	// document's first line, or the List item's), Object (apiVersion, kind,
	// name — generateName when there is no name — and namespace) and the
	// object's Labels and Annotations. Pod holds every field the checks read,
	// with Path and MetaPath set: "spec" for a Pod, "template.spec" for a
	// PodTemplate, "spec.jobTemplate.spec.template.spec" for a CronJob and
	// "spec.template.spec" for the other kinds.
	Workload compliance.Workload
	// Template is the pod's typed metadata and spec (a Pod's own), for the
	// Pod Security Standards and for callers that need more than Workload.
	// One API server default is applied, to Template and Workload alike: a
	// volume without a source is an emptyDir.
	Template corev1.PodTemplateSpec

	node *yaml.Node // the object in its YAML document; nil for JSON
}

// Line returns the line where the field at path (a finding's path, such as
// "spec.template.spec.containers[0].securityContext.privileged" or
// `metadata.annotations["key"]`) is written, or the line of its closest
// written ancestor when the field is absent; the object's line when nothing
// of the path is found or the object came from JSON.
func (o Object) Line(path string) int {
	line := o.Workload.Source.Line
	n := o.node
	if n == nil {
		return line
	}
	for _, seg := range splitPath(path) {
		n = resolveAlias(n)
		var next *yaml.Node
		switch {
		case seg.index >= 0 && n.Kind == yaml.SequenceNode:
			if seg.index < len(n.Content) {
				next = n.Content[seg.index]
				line = next.Line
			}
		case seg.index < 0 && n.Kind == yaml.MappingNode:
			if k, v := lookup(n, seg.key, 0); v != nil {
				next = v
				line = k.Line
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return line
}

// lookup finds key in a mapping, following merge keys.
func lookup(m *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if depth > 10 {
		return nil, nil
	}
	for i := len(m.Content) - 2; i >= 0; i -= 2 {
		if kn := m.Content[i]; kn.Kind == yaml.ScalarNode && kn.Value == key && !isMerge(kn) {
			return kn, m.Content[i+1]
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !isMerge(m.Content[i]) {
			continue
		}
		src := resolveAlias(m.Content[i+1])
		srcs := []*yaml.Node{src}
		if src.Kind == yaml.SequenceNode {
			srcs = src.Content
		}
		for _, s := range srcs {
			if s = resolveAlias(s); s.Kind == yaml.MappingNode {
				if k, v := lookup(s, key, depth+1); v != nil {
					return k, v
				}
			}
		}
	}
	return nil, nil
}

type segment struct {
	key   string
	index int // -1 for a key
}

// splitPath splits `a.b[2].c["x.y"]` into a, b, 2, c, x.y. A malformed
// rest is dropped.
func splitPath(p string) []segment {
	var out []segment
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if len(p) > 1 && p[1] == '"' {
				q, err := strconv.QuotedPrefix(p[1:])
				if err != nil {
					return out
				}
				k, _ := strconv.Unquote(q)
				out = append(out, segment{key: k, index: -1})
				p = strings.TrimPrefix(p[1+len(q):], "]")
				continue
			}
			if end < 0 {
				return out
			}
			i, err := strconv.Atoi(p[1:end])
			if err != nil || i < 0 {
				return out
			}
			out = append(out, segment{index: i})
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			out = append(out, segment{key: p[:end], index: -1})
			p = p[end:]
		}
	}
	return out
}

// ParseError is a malformed document or object: YAML or JSON that does not
// parse, or a pod-bearing object whose fields have the wrong types.
type ParseError struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *ParseError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// ErrNotWorkload is returned by DecodeObject for an object that carries no
// pod template: another kind, or a pod kind without its spec or template.
var ErrNotWorkload = errors.New("not a pod or pod controller with a pod template")

// maxListDepth bounds Lists within Lists.
const maxListDepth = 3

// Decode reads the Kubernetes objects of a manifest file: YAML with any
// number of documents, or JSON (one or more objects, when the file starts
// with "{"), read as kubectl reads them (YAML 1.1 scalars, case-sensitive
// field names). Documents of other kinds (Service, ConfigMap, custom
// resources), documents that are not Kubernetes objects (no kind) and pod
// kinds without a pod template (patches, partial manifests) are skipped, not
// errors. Items of v1 List and *List kinds are read in turn; items of a
// typed list (DeploymentList) may leave out apiVersion and kind.
//
// Decode returns the objects of every well-formed document. If some are
// malformed, the error joins one *ParseError per malformed document or
// object, naming its line; a YAML or JSON syntax error ends the file.
func Decode(file string, data []byte) ([]Object, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	d := &decoder{file: file}
	if first := bytes.TrimLeft(data, " \t\r\n"); len(first) > 0 && first[0] == '{' {
		d.jsonStream(data)
	} else {
		d.yamlStream(data)
	}
	return d.objs, errors.Join(d.errs...)
}

// DecodeObject reads one Kubernetes object given as JSON, such as the object
// of an AdmissionReview. It returns ErrNotWorkload (wrapped) for objects that
// carry no pod template, and a *ParseError for malformed JSON or fields.
func DecodeObject(raw []byte) (Object, error) {
	d := &decoder{}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return Object{}, &ParseError{Msg: "want a JSON object"}
	}
	h, err := jsonHeader(raw)
	if err != nil {
		return Object{}, &ParseError{Line: 1, Msg: err.Error()}
	}
	kind := podKindOf(h.apiVersion, h.kind)
	if kind == nil {
		return Object{}, fmt.Errorf("%s %s: %w", h.apiVersion, h.kind, ErrNotWorkload)
	}
	obj, ok, err := d.object(*kind, h, raw, 1, func(int64) int { return 1 }, nil)
	if err != nil {
		return Object{}, err
	}
	if !ok {
		return Object{}, fmt.Errorf("%s %s without a pod template: %w", h.apiVersion, h.kind, ErrNotWorkload)
	}
	return obj, nil
}

// DecodeObjectOf is DecodeObject for an object that should be of the given
// apiVersion and kind, as an AdmissionReview's request.kind says it is: such
// an object is read in one pass, where DecodeObject reads its apiVersion and
// kind first and then the object. For any other object, or one that does not
// decode, it returns what DecodeObject returns.
func DecodeObjectOf(raw []byte, apiVersion, kind string) (Object, error) {
	k := podKindOf(apiVersion, kind)
	data := bytes.TrimSpace(raw)
	if k == nil || len(data) == 0 || data[0] != '{' {
		return DecodeObject(raw)
	}
	h, meta, tmpl, err := decodePod(*k, data, 1, func(int64) int { return 1 }, true)
	if err != nil || h.apiVersion != apiVersion || h.kind != kind || tmpl == nil {
		// DecodeObject says what is wrong, as it would have.
		return DecodeObject(raw)
	}
	return (&decoder{}).build(*k, h, meta, tmpl, 1, nil), nil
}

type decoder struct {
	file string
	objs []Object
	errs []error
}

func (d *decoder) fail(line int, format string, args ...any) {
	d.errs = append(d.errs, &ParseError{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) yamlStream(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			line, msg := yamlErrorLine(err)
			d.fail(line, "invalid YAML: %s", msg)
			return
		}
		if len(doc.Content) == 0 {
			continue
		}
		d.yamlValue(doc.Content[0], header{}, 0)
	}
}

// yamlErrorLine splits go-yaml's "yaml: line N: msg" into N and msg.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, m, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil {
				return line, m
			}
		}
	}
	return 0, msg
}

// header is what says what an object is.
type header struct {
	apiVersion, kind string
}

// yamlValue reads one object (or List) from a YAML node; inherit fills
// apiVersion and kind that a typed List's items leave out.
func (d *decoder) yamlValue(n *yaml.Node, inherit header, depth int) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return // not a Kubernetes object
	}
	c := &converter{budget: maxNodes}
	es, err := c.entries(n)
	if err != nil {
		d.yamlFail(n, err)
		return
	}
	h, items := inherit, (*yaml.Node)(nil)
	for _, e := range es {
		switch e.key {
		case "apiVersion", "kind":
			v := resolveAlias(e.value)
			s, _ := scalarString(v)
			if e.key == "kind" {
				h.kind = s
			} else {
				h.apiVersion = s
			}
		case "items":
			items = resolveAlias(e.value)
		}
	}
	if isList(h.kind) {
		if depth >= maxListDepth {
			d.fail(n.Line, "%s nested in more than %d lists", h.kind, maxListDepth)
			return
		}
		if items == nil || items.Kind != yaml.SequenceNode {
			return
		}
		itemHeader := header{}
		if h.kind != "List" {
			itemHeader = header{apiVersion: h.apiVersion, kind: strings.TrimSuffix(h.kind, "List")}
		}
		for _, it := range items.Content {
			d.yamlValue(it, itemHeader, depth+1)
		}
		return
	}
	kind := podKindOf(h.apiVersion, h.kind)
	if kind == nil {
		return
	}
	doc, err := toJSON(n)
	if err != nil {
		d.yamlFail(n, err)
		return
	}
	obj, ok, err := d.object(*kind, h, doc.data, n.Line, doc.lineAt, n)
	switch {
	case err != nil:
		d.errs = append(d.errs, err)
	case ok:
		d.objs = append(d.objs, obj)
	}
}

func (d *decoder) yamlFail(n *yaml.Node, err error) {
	line := n.Line
	var ye *yamlError
	if errors.As(err, &ye) {
		line = ye.line
	}
	d.fail(line, "%s", err.Error())
}

// scalarString is a scalar's value when it is a string.
func scalarString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	v, err := scalarValue(n)
	if err != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case timestamp:
		return string(v), true
	}
	return "", false
}

// isList reports whether kind is v1 List or a typed list (DeploymentList).
func isList(kind string) bool { return strings.HasSuffix(kind, "List") }

// jsonStream reads a stream of JSON values, as kubectl does for files that
// start with "{".
func (d *decoder) jsonStream(data []byte) {
	lines := newLineIndex(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			d.fail(lines.line(jsonErrorOffset(err, dec.InputOffset())), "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
			return
		}
		start := int(dec.InputOffset()) - len(raw)
		d.jsonValue(raw, start, lines, header{}, 0)
	}
}

// lineIndex maps byte offsets to lines.
type lineIndex []int // offsets where lines start

func newLineIndex(data []byte) lineIndex {
	idx := lineIndex{0}
	for i, c := range data {
		if c == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

// line is the 1-based line of offset off.
func (l lineIndex) line(off int64) int {
	lo, hi := 0, len(l)
	for lo < hi {
		m := (lo + hi) / 2
		if int64(l[m]) <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func jsonErrorOffset(err error, fallback int64) int64 {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Offset
	}
	return fallback
}

func (d *decoder) jsonValue(raw []byte, start int, lines lineIndex, inherit header, depth int) {
	if len(raw) == 0 || raw[0] != '{' {
		return
	}
	line := lines.line(int64(start))
	h, err := jsonHeader(raw)
	if err != nil {
		return // kind or apiVersion is not a string: not a Kubernetes object
	}
	if h.kind == "" {
		h.kind = inherit.kind
	}
	if h.apiVersion == "" {
		h.apiVersion = inherit.apiVersion
	}
	if isList(h.kind) {
		if depth >= maxListDepth {
			d.fail(line, "%s nested in more than %d lists", h.kind, maxListDepth)
			return
		}
		items, err := jsonItems(raw)
		if err != nil {
			d.fail(line, "%s items: %v", h.kind, err)
			return
		}
		itemHeader := header{}
		if h.kind != "List" {
			itemHeader = header{apiVersion: h.apiVersion, kind: strings.TrimSuffix(h.kind, "List")}
		}
		for _, it := range items {
			d.jsonValue(it.raw, start+it.off, lines, itemHeader, depth+1)
		}
		return
	}
	kind := podKindOf(h.apiVersion, h.kind)
	if kind == nil {
		return
	}
	lineAt := func(off int64) int { return lines.line(int64(start) + off) }
	obj, ok, err := d.object(*kind, h, raw, line, lineAt, nil)
	switch {
	case err != nil:
		d.errs = append(d.errs, err)
	case ok:
		d.objs = append(d.objs, obj)
	}
}

// jsonHeader reads apiVersion and kind, case-sensitively as the API server
// does.
func jsonHeader(raw []byte) (header, error) {
	var h struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := k8sjson.UnmarshalCaseSensitivePreserveInts(raw, &h); err != nil {
		return header{}, fmt.Errorf("apiVersion and kind: %w", err)
	}
	return header{apiVersion: h.APIVersion, kind: h.Kind}, nil
}

type jsonItem struct {
	raw []byte
	off int // offset of the item in the list's JSON
}

// jsonItems returns the items of a List object with their offsets.
func jsonItems(raw []byte) ([]jsonItem, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var out []jsonItem
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		if key != "items" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, err
			}
			continue
		}
		t, err = dec.Token()
		if err != nil {
			return nil, err
		}
		if t != json.Delim('[') {
			out = nil // "items": null or not a list
			continue
		}
		out = out[:0]
		for dec.More() {
			var it json.RawMessage
			if err := dec.Decode(&it); err != nil {
				return nil, err
			}
			out = append(out, jsonItem{raw: it, off: int(dec.InputOffset()) - len(it)})
		}
		if _, err := dec.Token(); err != nil { // ]
			return nil, err
		}
	}
	return out, nil
}

// podKind says where a kind keeps its pod.
type podKind struct {
	podPath, metaPath string
}

// podKindOf returns where the pod of a pod-bearing kind is, nil for other
// kinds. Every API version of the kind's groups is accepted, old betas
// included (extensions/v1beta1 Deployments still sit in repositories).
func podKindOf(apiVersion, kind string) *podKind {
	group := ""
	if i := strings.LastIndexByte(apiVersion, '/'); i >= 0 {
		group = apiVersion[:i]
	}
	template := &podKind{podPath: "spec.template.spec", metaPath: "spec.template.metadata"}
	switch {
	case group == "" && kind == "Pod":
		return &podKind{podPath: "spec", metaPath: "metadata"}
	case group == "" && kind == "PodTemplate":
		return &podKind{podPath: "template.spec", metaPath: "template.metadata"}
	case group == "" && kind == "ReplicationController":
		return template
	case (group == "apps" || group == "extensions") && (kind == "Deployment" || kind == "ReplicaSet" || kind == "DaemonSet"):
		return template
	case group == "apps" && kind == "StatefulSet":
		return template
	case group == "batch" && kind == "Job":
		return template
	case group == "batch" && kind == "CronJob":
		return &podKind{podPath: "spec.jobTemplate.spec.template.spec", metaPath: "spec.jobTemplate.spec.template.metadata"}
	}
	return nil
}

// The shapes decoded for each kind: only metadata and the pod template,
// and apiVersion and kind with docHeader.
type (
	docHeader struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	podDoc struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     *corev1.PodSpec   `json:"spec"`
	}
	templateDoc struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			Template *corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	cronJobDoc struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			JobTemplate struct {
				Spec struct {
					Template *corev1.PodTemplateSpec `json:"template"`
				} `json:"spec"`
			} `json:"jobTemplate"`
		} `json:"spec"`
	}
	podTemplateDoc struct {
		Metadata metav1.ObjectMeta       `json:"metadata"`
		Template *corev1.PodTemplateSpec `json:"template"`
	}
)

// object decodes a pod-bearing object from its JSON. ok is false when it has
// no pod template.
func (d *decoder) object(k podKind, h header, data []byte, line int, lineAt func(int64) int, node *yaml.Node) (Object, bool, error) {
	_, meta, tmpl, perr := decodePod(k, data, line, lineAt, false)
	if perr != nil {
		perr.File = d.file
		return Object{}, false, perr
	}
	if tmpl == nil {
		return Object{}, false, nil
	}
	return d.build(k, h, meta, tmpl, line, node), true, nil
}

// build normalizes a decoded object with header h (which the caller has
// read, or inherited from a typed List).
func (d *decoder) build(k podKind, h header, meta metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec, line int, node *yaml.Node) Object {
	defaultVolumes(&tmpl.Spec)
	name := meta.Name
	if name == "" {
		name = meta.GenerateName
	}
	w := compliance.Workload{
		Source: compliance.Source{
			Kind:        compliance.SourceManifest,
			Engine:      compliance.EngineContainerd,
			File:        d.file,
			Line:        line,
			Object:      compliance.Object{APIVersion: h.apiVersion, Kind: h.kind, Name: name, Namespace: meta.Namespace},
			Labels:      meta.Labels,
			Annotations: meta.Annotations,
		},
		Pod: podOf(tmpl, k.podPath, k.metaPath),
	}
	return Object{Workload: w, Template: *tmpl, node: node}
}

// decodePod decodes the object's metadata and pod template, and with
// withHeader its apiVersion and kind as written; the template is nil when
// the object has none. Without withHeader, apiVersion and kind are not read
// at all: the stream decoders have read them (a YAML scalar that is not a
// string) or inherited them from a typed List.
func decodePod(k podKind, data []byte, line int, lineAt func(int64) int, withHeader bool) (header, metav1.ObjectMeta, *corev1.PodTemplateSpec, *ParseError) {
	switch k.podPath {
	case "spec":
		var doc struct {
			docHeader
			podDoc
		}
		if err := decodeJSON(data, target(&doc, &doc.podDoc, withHeader), line, lineAt); err != nil {
			return header{}, metav1.ObjectMeta{}, nil, err
		}
		if doc.Spec == nil {
			return doc.header(), doc.Metadata, nil, nil
		}
		return doc.header(), doc.Metadata, &corev1.PodTemplateSpec{ObjectMeta: doc.Metadata, Spec: *doc.Spec}, nil
	case "template.spec":
		var doc struct {
			docHeader
			podTemplateDoc
		}
		if err := decodeJSON(data, target(&doc, &doc.podTemplateDoc, withHeader), line, lineAt); err != nil {
			return header{}, metav1.ObjectMeta{}, nil, err
		}
		return doc.header(), doc.Metadata, doc.Template, nil
	case "spec.jobTemplate.spec.template.spec":
		var doc struct {
			docHeader
			cronJobDoc
		}
		if err := decodeJSON(data, target(&doc, &doc.cronJobDoc, withHeader), line, lineAt); err != nil {
			return header{}, metav1.ObjectMeta{}, nil, err
		}
		return doc.header(), doc.Metadata, doc.Spec.JobTemplate.Spec.Template, nil
	}
	var doc struct {
		docHeader
		templateDoc
	}
	if err := decodeJSON(data, target(&doc, &doc.templateDoc, withHeader), line, lineAt); err != nil {
		return header{}, metav1.ObjectMeta{}, nil, err
	}
	return doc.header(), doc.Metadata, doc.Spec.Template, nil
}

// target is what decodePod decodes into: the document with its header, or
// only the document.
func target(withHeader, doc any, header bool) any {
	if header {
		return withHeader
	}
	return doc
}

func (h docHeader) header() header { return header{apiVersion: h.APIVersion, kind: h.Kind} }

// decodeJSON decodes an object's JSON case-sensitively, as the API server
// does. A type error names the line of the offending value.
func decodeJSON(data []byte, v any, line int, lineAt func(int64) int) *ParseError {
	err := k8sjson.UnmarshalCaseSensitivePreserveInts(data, v)
	if err == nil {
		return nil
	}
	// The case-sensitive decoder's errors carry no offset; encoding/json
	// fails on the same value and says where.
	var te *json.UnmarshalTypeError
	if e := json.Unmarshal(data, reflect.New(reflect.TypeOf(v).Elem()).Interface()); errors.As(e, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		return &ParseError{Line: lineAt(te.Offset), Msg: fmt.Sprintf("%s: want %s, got %s", field, typeName(te.Type), te.Value)}
	}
	return &ParseError{Line: line, Msg: strings.TrimPrefix(err.Error(), "json: ")}
}

// typeName names a Go type in JSON's words.
func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return t.String()
}
