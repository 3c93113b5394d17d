// Package bulwarkv1 defines version 1 of the Defender channel: the messages a
// Defender and the Console exchange over a websocket on :8084 after mutual
// TLS. Every websocket message is one JSON Envelope. The websocket
// subprotocol "bulwark.v1" names this version; a peer that cannot speak it is
// refused at the upgrade.
//
// Order of a session:
//
//	Defender → Hello
//	Console  → Welcome (the last event seq it has stored for this Defender)
//	Console  → Policy  (when the Defender's revision is not the current one; again on every change)
//	Defender → Events  (batches in seq order, from Welcome.StoredSeq+1 on)
//	Console  → Ack     (after the batch is committed to the store)
//	both     → Heartbeat, every Welcome.HeartbeatInterval
//
// A peer that receives a malformed, oversized or unknown frame closes the
// connection with a close reason; see Decode.
package bulwarkv1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Subprotocol is the websocket subprotocol of this version.
const Subprotocol = "bulwark.v1"

// Path is the channel endpoint on the Console's channel port.
const Path = "/v1/channel"

// MaxFrameBytes bounds one frame; larger frames close the connection.
const MaxFrameBytes = 4 << 20

// MaxBatchEvents bounds the events in one Events frame.
const MaxBatchEvents = 4096

// Message types.
const (
	TypeHello     = "hello"
	TypeWelcome   = "welcome"
	TypePolicy    = "policy"
	TypeEvents    = "events"
	TypeAck       = "ack"
	TypeHeartbeat = "heartbeat"
)

// Envelope wraps every message.
type Envelope struct {
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// Hello is the Defender's first message.
type Hello struct {
	ID       string `json:"id"` // must equal the client certificate's CN
	Version  string `json:"version"`
	Hostname string `json:"hostname"` // the host's name, or the pod name when not on the host network
	// HostNetwork says whether the Defender runs in the host's network namespace.
	HostNetwork  bool     `json:"hostNetwork"`
	OS           string   `json:"os"`
	Kernel       string   `json:"kernel"`
	Runtimes     []string `json:"runtimes,omitempty"`     // container runtimes found: runc, containerd, docker, crio
	Capabilities []string `json:"capabilities,omitempty"` // sensor/enforcement abilities probed at start
	// PolicyRevision is the revision the Defender enforces now (0: none).
	PolicyRevision int64       `json:"policyRevision"`
	Spool          SpoolInfo   `json:"spool"`
	Sensor         *SensorInfo `json:"sensor,omitempty"`
}

// SensorInfo reports the Defender's runtime sensor: which probes run and
// how many events it lost, ever, and how it prevents each kind of action.
type SensorInfo struct {
	Probes      []Probe     `json:"probes"`
	LostKernel  uint64      `json:"lostKernel"` // ring buffer full
	LostUser    uint64      `json:"lostUser"`   // dropped in user space
	Enforcement []Mechanism `json:"enforcement,omitempty"`
}

// Mechanism says how a Defender prevents one kind of action (exec,
// file-write, connect, listen) before it happens: bpf-lsm, fanotify,
// cgroup-bpf, or none, with the reason.
type Mechanism struct {
	Kind      string `json:"kind"`
	Mechanism string `json:"mechanism"`
	Reason    string `json:"reason,omitempty"`
}

// Probe is one kernel hook of the sensor.
type Probe struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // tracepoint, raw_tp, netlink
	Active bool   `json:"active"`
	Error  string `json:"error,omitempty"`
	// Degraded says, for an active probe, what it does without and why
	// (e.g. the cwd read from /proc because the kernel refused the walk).
	Degraded string `json:"degraded,omitempty"`
}

// SpoolInfo reports the Defender's event spool.
type SpoolInfo struct {
	Depth   uint64 `json:"depth"`   // events not yet acknowledged
	Dropped uint64 `json:"dropped"` // events dropped because the spool was full, ever
	NextSeq uint64 `json:"nextSeq"` // seq the next event will get
}

// Welcome answers Hello.
type Welcome struct {
	// StoredSeq is the highest event seq the Console has stored for this
	// Defender; the Defender may discard everything up to it.
	StoredSeq         uint64        `json:"storedSeq"`
	HeartbeatInterval time.Duration `json:"heartbeatInterval"`
	ConsoleVersion    string        `json:"consoleVersion"`
	// Window is the most unacknowledged Events frames the Defender may have
	// in flight (0: its own default). The Console lowers it when many
	// Defenders are connected, so that a fleet returning from an outage does
	// not put all its backlogs in flight at once.
	Window int `json:"window,omitempty"`
}

// Policy is a full policy snapshot. A Defender stores it on disk before it
// applies it, and enforces the stored snapshot at its next start.
type Policy struct {
	Revision int64 `json:"revision"`
	// Policies maps a policy type ("runtime/container", "compliance/container",
	// …) to its rules, in the Console API's JSON shape.
	Policies map[string]json.RawMessage `json:"policies"`
}

// Event is one thing a Defender saw, numbered per Defender from 1.
type Event struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Kind string          `json:"kind"` // "process.exec", "file.write", …
	Data json.RawMessage `json:"data,omitempty"`
}

// Events is a batch with consecutive, increasing seqs.
type Events struct {
	Events []Event `json:"events"`
}

// Ack acknowledges every event up to Seq: they are in the store.
type Ack struct {
	Seq uint64 `json:"seq"`
}

// Heartbeat proves liveness; the Defender's carries its current state.
type Heartbeat struct {
	Time           time.Time   `json:"time"`
	PolicyRevision int64       `json:"policyRevision,omitempty"`
	Spool          *SpoolInfo  `json:"spool,omitempty"`
	Sensor         *SensorInfo `json:"sensor,omitempty"`
}

// ErrFrame marks a frame that breaks the protocol.
var ErrFrame = errors.New("bad frame")

// Encode wraps body in an envelope of type typ. The bytes are those of
// json.Marshal(Envelope{typ, json.Marshal(body)}). An Events body is written
// without compacting each event's Data again, which must therefore be compact
// JSON (the Defender's spool holds nothing else); Data holding characters
// json.Marshal escapes (<, >, &, U+2028, U+2029) takes the general path. The
// Console checks every frame it reads.
func Encode(typ string, body any) ([]byte, error) {
	if evs, ok := body.(Events); ok && typ == TypeEvents && evs.Events != nil {
		if b, ok := appendEvents(nil, evs.Events); ok {
			return b, nil
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	// b is compact: the envelope around it needs no second scan.
	out := append(make([]byte, 0, len(b)+len(typ)+20), `{"type":`...)
	out = appendString(out, typ)
	out = append(out, `,"body":`...)
	out = append(out, b...)
	return append(out, '}'), nil
}

// appendEvents writes an events frame as Encode's general path would; false
// when an event needs that path (a kind or time json.Marshal writes in
// another form, or fails on; empty Data is left out as omitempty does).
func appendEvents(b []byte, evs []Event) ([]byte, bool) {
	size := 64
	for i := range evs {
		size += 96 + len(evs[i].Kind) + len(evs[i].Data)
	}
	b = slices.Grow(b, size)
	b = append(b, `{"type":"events","body":{"events":[`...)
	for i := range evs {
		e := &evs[i]
		if y := e.Time.Year(); y < 0 || y > 9999 || !plainString(e.Kind) || !htmlSafe(e.Data) {
			return nil, false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"seq":`...)
		b = strconv.AppendUint(b, e.Seq, 10)
		b = append(b, `,"time":"`...)
		b = e.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","kind":"`...)
		b = append(b, e.Kind...)
		b = append(b, '"')
		if len(e.Data) > 0 {
			b = append(b, `,"data":`...)
			b = append(b, e.Data...)
		}
		b = append(b, '}')
	}
	return append(b, "]}}"...), true
}

// appendString writes s as a JSON string, as json.Marshal would.
func appendString(b []byte, s string) []byte {
	if plainString(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// plainString says whether json.Marshal writes s between quotes unchanged:
// printable ASCII without the characters it escapes.
func plainString(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// htmlSafe says whether json.Marshal leaves the compact JSON d as it is: it
// escapes <, > and & and the line and paragraph separators (E2 80 A8/A9) even
// inside a json.RawMessage.
func htmlSafe(d []byte) bool {
	for i, c := range d {
		if c == '<' || c == '>' || c == '&' || c == 0xe2 && i+2 < len(d) && d[i+1] == 0x80 && d[i+2]&^1 == 0xa8 {
			return false
		}
	}
	return true
}

// Decode parses one frame into its type and typed body (*Hello, *Events, …).
// It refuses oversized frames, unknown types, malformed JSON, a body that does
// not fit its type, and batches that are empty, too large or not consecutive.
func Decode(frame []byte) (string, any, error) {
	if len(frame) > MaxFrameBytes {
		return "", nil, fmt.Errorf("%w: %d bytes is over the %d-byte limit", ErrFrame, len(frame), MaxFrameBytes)
	}
	if typ, raw, ok := splitCanonical(frame); ok {
		if typ, body, err := decodeBody(typ, raw); err == nil {
			return typ, body, nil
		}
		// A bad frame: the general path names the problem.
	}
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return "", nil, fmt.Errorf("%w: envelope: %v", ErrFrame, err) //nolint:errorlint // one error kind for callers
	}
	if len(bytes.TrimSpace(frame[dec.InputOffset():])) > 0 {
		return "", nil, fmt.Errorf("%w: data after the envelope", ErrFrame)
	}
	return decodeBody(env.Type, env.Body)
}

// splitCanonical recognises the exact bytes Encode writes,
// {"type":"T","body":B}, and returns T and B without scanning B: the body is
// then parsed once, by decodeBody. Frames in any other layout return false and
// take the general path.
func splitCanonical(frame []byte) (string, []byte, bool) {
	const pre, mid = `{"type":"`, `","body":`
	if !bytes.HasPrefix(frame, []byte(pre)) || frame[len(frame)-1] != '}' {
		return "", nil, false
	}
	rest := frame[len(pre):]
	i := bytes.IndexByte(rest, '"')
	if i <= 0 || i > 16 || !bytes.HasPrefix(rest[i:], []byte(mid)) {
		return "", nil, false
	}
	typ := string(rest[:i])
	for _, c := range typ {
		if c < 'a' || c > 'z' {
			return "", nil, false // escapes and the like: let the general path judge
		}
	}
	body := rest[i+len(mid) : len(rest)-1]
	if len(body) == 0 || body[0] != '{' {
		return "", nil, false
	}
	return typ, body, true
}

// decodeBody parses and checks the body of a message of type typ.
func decodeBody(typ string, raw []byte) (string, any, error) {
	var body any
	switch typ {
	case TypeHello:
		body = new(Hello)
	case TypeWelcome:
		body = new(Welcome)
	case TypePolicy:
		body = new(Policy)
	case TypeEvents:
		body = new(Events)
	case TypeAck:
		body = new(Ack)
	case TypeHeartbeat:
		body = new(Heartbeat)
	default:
		return "", nil, fmt.Errorf("%w: unknown type %q", ErrFrame, truncate(typ, 40))
	}
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, fmt.Errorf("%w: %s without a body", ErrFrame, typ)
	}
	if err := json.Unmarshal(raw, body); err != nil {
		return "", nil, fmt.Errorf("%w: %s body: %v", ErrFrame, typ, err) //nolint:errorlint // one error kind for callers
	}
	if err := validate(body); err != nil {
		return "", nil, fmt.Errorf("%w: %s: %v", ErrFrame, typ, err) //nolint:errorlint // one error kind for callers
	}
	return typ, body, nil
}

func validate(body any) error {
	switch b := body.(type) {
	case *Hello:
		if b.ID == "" {
			return errors.New("empty id")
		}
		if len(b.ID) > 128 || len(b.Hostname) > 255 || len(b.Version) > 64 {
			return errors.New("id, hostname or version too long")
		}
	case *Events:
		n := len(b.Events)
		if n == 0 || n > MaxBatchEvents {
			return fmt.Errorf("%d events; want 1..%d", n, MaxBatchEvents)
		}
		for i, e := range b.Events {
			if e.Seq == 0 || e.Seq > math.MaxInt64 {
				return fmt.Errorf("event %d has seq %d; want 1..2^63-1", i, e.Seq)
			}
			if i > 0 && e.Seq != b.Events[i-1].Seq+1 {
				return fmt.Errorf("event %d has seq %d after %d; seqs must be consecutive", i, e.Seq, b.Events[i-1].Seq)
			}
			if e.Kind == "" || len(e.Kind) > 64 {
				return fmt.Errorf("event seq %d: kind empty or too long", e.Seq)
			}
		}
	case *Policy:
		if b.Revision < 0 {
			return errors.New("negative revision")
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
