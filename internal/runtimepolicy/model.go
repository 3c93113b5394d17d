package runtimepolicy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"bulwark/internal/event"
)

// ModelState is where a model is in its life.
type ModelState string

// Model states, with Prisma's names.
const (
	// StateLearning: the model records what the image's containers do.
	StateLearning ModelState = "learning"
	// StateRelearning: a user asked to learn again; it records as learning does.
	StateRelearning ModelState = "manualRelearning"
	// StateActive: learning ended; deviations are audited.
	StateActive ModelState = "active"
	// StateManualActive: a user edited the model; it no longer learns.
	StateManualActive ModelState = "manualActive"
)

// DefaultLearningWindow is how long a new model learns.
const DefaultLearningWindow = 24 * time.Hour

// Bounds of a model, so that a noisy image cannot grow it without end.
// What does not fit during learning is left out, and audited later.
const (
	MaxModelProcesses = 512
	MaxModelPorts     = 256
	MaxModelIPs       = 256
	MaxModelPaths     = 512
)

// Model is what the containers of one image normally do: the processes they
// run, the ports they listen on and connect to, and the directories they
// write, learned during a window. After the window, anything else is a
// deviation.
type Model struct {
	ID    string     `json:"_id"`
	Image string     `json:"image"`
	State ModelState `json:"state"`
	// Generation counts the Console's edits and relearns of the model: a
	// Defender adopts a Console model of a higher generation, and the
	// Console ignores reports of a lower one.
	Generation      int64     `json:"generation"`
	Created         time.Time `json:"created"`
	Modified        time.Time `json:"modified"`
	LearningStarted time.Time `json:"learningStarted,omitzero"`
	LearningEnds    time.Time `json:"learningEnds,omitzero"`

	Processes  []ModelProcess  `json:"processes"`
	Network    ModelNetwork    `json:"network"`
	Filesystem ModelFilesystem `json:"filesystem"`
	// Truncated says that learning saw more than a model holds.
	Truncated bool `json:"truncated,omitempty"`
	// Hosts are where the model was learned (the Console's merge of what
	// Defenders reported).
	Hosts []string `json:"hosts,omitempty"`
}

// ModelProcess is one learned executable.
type ModelProcess struct {
	Path string `json:"path"`
}

// ModelNetwork is what the image's containers did on the network.
type ModelNetwork struct {
	ListeningPorts []uint16 `json:"listeningPorts"`
	OutboundPorts  []uint16 `json:"outboundPorts"`
	// OutboundIPs are kept for the record; deviations are judged by port,
	// since services behind names change address.
	OutboundIPs []string `json:"outboundIPs"`
}

// ModelFilesystem lists the directories the image's containers wrote in.
type ModelFilesystem struct {
	Paths []string `json:"paths"`
}

// ModelID is the ID of the model of image.
func ModelID(image string) string {
	sum := sha256.Sum256([]byte(image))
	return hex.EncodeToString(sum[:12])
}

// NewModel starts learning the model of image at now for window.
func NewModel(image string, now time.Time, window time.Duration, generation int64) Model {
	return Model{
		ID: ModelID(image), Image: image, State: StateLearning, Generation: generation,
		Created: now, Modified: now, LearningStarted: now, LearningEnds: now.Add(window),
		Processes: []ModelProcess{}, Network: ModelNetwork{ListeningPorts: []uint16{}, OutboundPorts: []uint16{}, OutboundIPs: []string{}},
		Filesystem: ModelFilesystem{Paths: []string{}},
	}
}

// Learning reports whether the model records what it sees.
func (m *Model) Learning() bool { return m.State == StateLearning || m.State == StateRelearning }

// Active reports whether deviations from the model are audited.
func (m *Model) Active() bool { return m.State == StateActive || m.State == StateManualActive }

// Tick ends learning once its window is over; it reports whether the state
// changed.
func (m *Model) Tick(now time.Time) bool {
	if m.Learning() && !now.Before(m.LearningEnds) {
		m.State, m.Modified = StateActive, now
		return true
	}
	return false
}

// Relearn forgets what the model learned and learns again from now.
func (m *Model) Relearn(now time.Time, window time.Duration, generation int64) {
	fresh := NewModel(m.Image, now, window, generation)
	fresh.Created, fresh.State, fresh.Hosts = m.Created, StateRelearning, m.Hosts
	*m = fresh
}

// processKey is how a process is known to a model: its executable's path,
// or its command name when the path is unknown, and for a multi-call
// binary the applet it runs ("/bin/busybox nc").
func processKey(p event.Process) string {
	k := p.Exe
	if k == "" {
		k = p.Comm
	}
	if a := applet(p); a != "" {
		k += " " + a
	}
	return k
}

// HasProcess reports whether the model learned p's executable.
func (m *Model) HasProcess(p event.Process) bool {
	k := processKey(p)
	return slices.ContainsFunc(m.Processes, func(q ModelProcess) bool { return q.Path == k })
}

// HasListeningPort reports whether the model learned a listen on port.
func (m *Model) HasListeningPort(port uint16) bool {
	return slices.Contains(m.Network.ListeningPorts, port)
}

// HasOutboundPort reports whether the model learned connections to port.
func (m *Model) HasOutboundPort(port uint16) bool {
	return slices.Contains(m.Network.OutboundPorts, port)
}

// HasPath reports whether the model learned writes in p's directory (or a
// directory above it).
func (m *Model) HasPath(p string) bool {
	d := path.Dir(p)
	return slices.ContainsFunc(m.Filesystem.Paths, func(q string) bool { return matchPath(q, d) })
}

// Learn records what one event shows, while the model learns; it reports
// whether the model changed.
func (m *Model) Learn(kind string, rt event.Runtime, now time.Time) bool {
	if !m.Learning() {
		return false
	}
	changed := false
	switch kind {
	case event.KindProcessExec:
		if k := processKey(rt.Process); k != "" && !m.HasProcess(rt.Process) {
			changed = m.addProcess(k)
		}
	case event.KindNetListen:
		if rt.Net != nil && rt.Net.SrcPort != 0 {
			changed = addBounded(&m.Network.ListeningPorts, rt.Net.SrcPort, MaxModelPorts, &m.Truncated)
		}
	case event.KindNetConnect:
		if rt.Net != nil && rt.Net.DstPort != 0 {
			changed = addBounded(&m.Network.OutboundPorts, rt.Net.DstPort, MaxModelPorts, &m.Truncated)
			if rt.Net.DstAddr != "" && addBounded(&m.Network.OutboundIPs, rt.Net.DstAddr, MaxModelIPs, &m.Truncated) {
				changed = true
			}
		}
	case event.KindFileWrite, event.KindFileCreate, event.KindFileUnlink, event.KindFileRename, event.KindFileChmod:
		for _, p := range writtenPaths(kind, rt.File) {
			if p != "" && !m.HasPath(p) && addBounded(&m.Filesystem.Paths, path.Dir(p), MaxModelPaths, &m.Truncated) {
				changed = true
			}
		}
	}
	if changed {
		m.Modified = now
	}
	return changed
}

func (m *Model) addProcess(k string) bool {
	if len(m.Processes) >= MaxModelProcesses {
		m.Truncated = true
		return false
	}
	m.Processes = append(m.Processes, ModelProcess{Path: k})
	return true
}

func addBounded[T comparable](list *[]T, v T, limit int, truncated *bool) bool {
	if slices.Contains(*list, v) {
		return false
	}
	if len(*list) >= limit {
		*truncated = true
		return false
	}
	*list = append(*list, v)
	return true
}

// Merge adds what src learned to m, as the Console does with the reports of
// several Defenders for one image: a report of an older generation is
// ignored, one of a newer generation replaces m, and one of the same
// generation adds its items. Merging the same report twice changes nothing.
// It reports whether m changed.
func (m *Model) Merge(src Model) bool {
	switch {
	case src.Generation < m.Generation:
		return false
	case src.Generation > m.Generation:
		hosts := m.Hosts
		*m = src
		m.Hosts = unionStrings(hosts, src.Hosts)
		return true
	}
	before, _ := json.Marshal(m)
	for _, p := range src.Processes {
		if !slices.Contains(m.Processes, p) {
			m.addProcess(p.Path)
		}
	}
	for _, p := range src.Network.ListeningPorts {
		addBounded(&m.Network.ListeningPorts, p, MaxModelPorts, &m.Truncated)
	}
	for _, p := range src.Network.OutboundPorts {
		addBounded(&m.Network.OutboundPorts, p, MaxModelPorts, &m.Truncated)
	}
	for _, a := range src.Network.OutboundIPs {
		addBounded(&m.Network.OutboundIPs, a, MaxModelIPs, &m.Truncated)
	}
	for _, p := range src.Filesystem.Paths {
		addBounded(&m.Filesystem.Paths, p, MaxModelPaths, &m.Truncated)
	}
	m.Truncated = m.Truncated || src.Truncated
	m.Hosts = unionStrings(m.Hosts, src.Hosts)
	// The state moves forward only: learning → active. An edited model
	// stays as the user left it.
	if m.Learning() && src.Active() && m.State != StateManualActive {
		m.State = src.State
	}
	if !src.LearningStarted.IsZero() && (m.LearningStarted.IsZero() || src.LearningStarted.Before(m.LearningStarted)) {
		m.LearningStarted = src.LearningStarted
	}
	if src.LearningEnds.After(m.LearningEnds) {
		m.LearningEnds = src.LearningEnds
	}
	if m.Created.IsZero() || !src.Created.IsZero() && src.Created.Before(m.Created) {
		m.Created = src.Created
	}
	after, _ := json.Marshal(m)
	if bytes.Equal(before, after) {
		return false
	}
	if src.Modified.After(m.Modified) {
		m.Modified = src.Modified
	}
	return true
}

func unionStrings(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Bound cuts a model that holds more than a model may (one a Defender sent)
// down to the limits, and says so in Truncated.
func (m *Model) Bound() {
	cut := func(n, limit int) int {
		if n > limit {
			m.Truncated = true
			return limit
		}
		return n
	}
	m.Processes = m.Processes[:cut(len(m.Processes), MaxModelProcesses)]
	m.Network.ListeningPorts = m.Network.ListeningPorts[:cut(len(m.Network.ListeningPorts), MaxModelPorts)]
	m.Network.OutboundPorts = m.Network.OutboundPorts[:cut(len(m.Network.OutboundPorts), MaxModelPorts)]
	m.Network.OutboundIPs = m.Network.OutboundIPs[:cut(len(m.Network.OutboundIPs), MaxModelIPs)]
	m.Filesystem.Paths = m.Filesystem.Paths[:cut(len(m.Filesystem.Paths), MaxModelPaths)]
	if len(m.Hosts) > maxListEntries {
		m.Hosts = m.Hosts[:maxListEntries]
	}
	if m.Processes == nil {
		m.Processes = []ModelProcess{}
	}
	for _, l := range []*[]uint16{&m.Network.ListeningPorts, &m.Network.OutboundPorts} {
		if *l == nil {
			*l = []uint16{}
		}
	}
	if m.Network.OutboundIPs == nil {
		m.Network.OutboundIPs = []string{}
	}
	if m.Filesystem.Paths == nil {
		m.Filesystem.Paths = []string{}
	}
}

// Normalize sorts the model's lists, so that equal models read the same.
func (m *Model) Normalize() {
	slices.SortFunc(m.Processes, func(a, b ModelProcess) int { return strings.Compare(a.Path, b.Path) })
	slices.Sort(m.Network.ListeningPorts)
	slices.Sort(m.Network.OutboundPorts)
	slices.Sort(m.Network.OutboundIPs)
	slices.Sort(m.Filesystem.Paths)
	slices.Sort(m.Hosts)
}

// ErrInvalidModel marks a model document that ParseModel refuses.
var ErrInvalidModel = errors.New("invalid model")

// ModelEdit is what a user may change in a model: its lists. The rest
// (state, generation, times) is the Console's to set.
type ModelEdit struct {
	Processes  []ModelProcess  `json:"processes"`
	Network    ModelNetwork    `json:"network"`
	Filesystem ModelFilesystem `json:"filesystem"`
}

// ParseModelEdit decodes and validates an edited model. Fields of a whole
// Model that an edit cannot change (_id, image, state, …) are accepted and
// ignored, so that a model read from the API can be sent back changed.
func ParseModelEdit(doc []byte) (ModelEdit, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(doc, &raw); err != nil {
		return ModelEdit{}, fmt.Errorf("%w: %v", ErrInvalidModel, err) //nolint:errorlint // the cause is a message for the user
	}
	if raw == nil {
		return ModelEdit{}, fmt.Errorf("%w: want a JSON object", ErrInvalidModel)
	}
	ignored := []string{"_id", "image", "state", "generation", "created", "modified", "learningStarted", "learningEnds", "truncated", "hosts"}
	var e ModelEdit
	for k, v := range raw {
		var err error
		switch k {
		case "processes":
			err = strictUnmarshal(v, &e.Processes)
		case "network":
			err = strictUnmarshal(v, &e.Network)
		case "filesystem":
			err = strictUnmarshal(v, &e.Filesystem)
		default:
			if !slices.Contains(ignored, k) {
				err = fmt.Errorf("unknown field %q", k)
			}
		}
		if err != nil {
			return ModelEdit{}, fmt.Errorf("%w: %s: %v", ErrInvalidModel, k, err) //nolint:errorlint // the cause is a message for the user
		}
	}
	var problems []string
	if len(e.Processes) > MaxModelProcesses {
		problems = append(problems, fmt.Sprintf("processes: %d entries, at most %d", len(e.Processes), MaxModelProcesses))
	}
	for i, p := range e.Processes {
		if strings.TrimSpace(p.Path) == "" || len(p.Path) > maxEntryLen {
			problems = append(problems, fmt.Sprintf("processes[%d].path: empty or too long", i))
		}
	}
	if len(e.Network.ListeningPorts) > MaxModelPorts || len(e.Network.OutboundPorts) > MaxModelPorts {
		problems = append(problems, fmt.Sprintf("network: more than %d ports", MaxModelPorts))
	}
	for _, ports := range [][]uint16{e.Network.ListeningPorts, e.Network.OutboundPorts} {
		if slices.Contains(ports, 0) {
			problems = append(problems, "network: port 0")
			break
		}
	}
	if len(e.Network.OutboundIPs) > MaxModelIPs {
		problems = append(problems, fmt.Sprintf("network.outboundIPs: %d entries, at most %d", len(e.Network.OutboundIPs), MaxModelIPs))
	}
	for i, a := range e.Network.OutboundIPs {
		if checkIPEntry(a) != "" {
			problems = append(problems, fmt.Sprintf("network.outboundIPs[%d]: %q is not an IP address", i, truncate(a, 80)))
		}
	}
	if len(e.Filesystem.Paths) > MaxModelPaths {
		problems = append(problems, fmt.Sprintf("filesystem.paths: %d entries, at most %d", len(e.Filesystem.Paths), MaxModelPaths))
	}
	for i, p := range e.Filesystem.Paths {
		if !strings.HasPrefix(p, "/") || len(p) > maxEntryLen {
			problems = append(problems, fmt.Sprintf("filesystem.paths[%d]: %q is not an absolute path", i, truncate(p, 80)))
		}
	}
	if len(problems) > 0 {
		return ModelEdit{}, fmt.Errorf("%w: %s", ErrInvalidModel, strings.Join(problems, "; "))
	}
	if e.Processes == nil {
		e.Processes = []ModelProcess{}
	}
	for _, l := range []*[]uint16{&e.Network.ListeningPorts, &e.Network.OutboundPorts} {
		if *l == nil {
			*l = []uint16{}
		}
	}
	if e.Network.OutboundIPs == nil {
		e.Network.OutboundIPs = []string{}
	}
	if e.Filesystem.Paths == nil {
		e.Filesystem.Paths = []string{}
	}
	return e, nil
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Apply replaces the model's lists with e and makes it a user's model of
// the next generation: it no longer learns.
func (m *Model) Apply(e ModelEdit, now time.Time) {
	m.Processes, m.Network, m.Filesystem = e.Processes, e.Network, e.Filesystem
	m.State, m.Generation, m.Modified, m.Truncated = StateManualActive, m.Generation+1, now, false
	m.Normalize()
}

// Overrides are the Console's changes to models that every Defender
// adopts: edits and relearns, each at a generation. The Console pushes them
// in the policy snapshot under OverridesType.
type Overrides struct {
	Models []Override `json:"models"`
}

// OverridesType is the key of the model overrides in the policy snapshot.
// It is not an API policy type: the models API writes it.
const OverridesType = "runtime/models"

// Override is one model's change. Relearn with a nil Model asks Defenders
// to learn the image again; an Override with a Model replaces theirs.
type Override struct {
	ID         string `json:"_id"`
	Image      string `json:"image"`
	Generation int64  `json:"generation"`
	Relearn    bool   `json:"relearn,omitempty"`
	Model      *Model `json:"model,omitempty"`
}
