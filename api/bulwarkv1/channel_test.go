package bulwarkv1

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		typ  string
		body any
	}{
		{TypeHello, &Hello{ID: "d1", Version: "1", Hostname: "h", HostNetwork: true, Runtimes: []string{"runc"}, PolicyRevision: 3, Spool: SpoolInfo{Depth: 2, Dropped: 1, NextSeq: 9}}},
		{TypeWelcome, &Welcome{StoredSeq: 7, HeartbeatInterval: 5 * time.Second, ConsoleVersion: "x"}},
		{TypePolicy, &Policy{Revision: 4, Policies: map[string]json.RawMessage{"runtime/container": json.RawMessage(`{"rules":[]}`)}}},
		{TypeEvents, &Events{Events: []Event{{Seq: 5, Time: now, Kind: "synthetic", Data: json.RawMessage(`{"n":1}`)}, {Seq: 6, Time: now, Kind: "synthetic"}}}},
		{TypeAck, &Ack{Seq: 6}},
		{TypeHeartbeat, &Heartbeat{Time: now, PolicyRevision: 4, Spool: &SpoolInfo{Depth: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			frame, err := Encode(tc.typ, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			typ, body, err := Decode(frame)
			if err != nil {
				t.Fatalf("Decode(%s) = %v", frame, err)
			}
			if typ != tc.typ {
				t.Errorf("type = %q, want %q", typ, tc.typ)
			}
			if diff := cmp.Diff(tc.body, body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	tests := []struct {
		name, frame, want string
	}{
		{"not json", `hello`, "envelope"},
		{"unknown type", `{"type":"shell","body":{}}`, `unknown type "shell"`},
		{"unknown envelope field", `{"type":"ack","body":{"seq":1},"x":1}`, "envelope"},
		{"no body", `{"type":"ack"}`, "without a body"},
		{"null body", `{"type":"ack","body":null}`, "without a body"},
		{"body of wrong shape", `{"type":"ack","body":{"seq":"one"}}`, "ack body"},
		{"trailing data", `{"type":"ack","body":{"seq":1}} {}`, "after the envelope"},
		{"trailing brace", `{"type":"ack","body":{"seq":1}}}`, "after the envelope"},
		{"hello without id", `{"type":"hello","body":{"hostname":"h"}}`, "empty id"},
		{"empty batch", `{"type":"events","body":{"events":[]}}`, "0 events"},
		{"seq zero", `{"type":"events","body":{"events":[{"seq":0,"kind":"k"}]}}`, "seq 0"},
		{"seq beyond int64", `{"type":"events","body":{"events":[{"seq":9223372036854775808,"kind":"k"}]}}`, "want 1..2^63-1"},
		{"gap in batch", `{"type":"events","body":{"events":[{"seq":1,"kind":"k"},{"seq":3,"kind":"k"}]}}`, "consecutive"},
		{"no kind", `{"type":"events","body":{"events":[{"seq":1}]}}`, "kind"},
		{"oversized", `{"type":"ack","body":{"seq":1},"pad":"` + strings.Repeat("x", MaxFrameBytes) + `"}`, "over the"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode([]byte(tc.frame))
			if !errors.Is(err, ErrFrame) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode(%.60q) = %v, want ErrFrame containing %q", tc.frame, err, tc.want)
			}
		})
	}
}

// TestCanonicalPathAgrees: the fast path and the general path judge every
// frame alike.
func TestCanonicalPathAgrees(t *testing.T) {
	frames := []string{
		`{"type":"ack","body":{"seq":1}}`,
		`{"type":"ack","body":{"seq":1}}}`,
		`{"type":"ack","body":{"seq":1},"x":1}`,
		`{"type":"ack","body":{"seq":1} , "body":{"seq":2}}`,
		`{"type":"ack","body":{"seq":1}}{"type":"ack","body":{"seq":2}}`,
		`{"type":"events","body":{"events":[{"seq":1,"kind":"k"}]}}`,
		`{"type":"a\u0063k","body":{"seq":1}}`,
	}
	for _, f := range frames {
		checkAgree(t, []byte(f))
	}
}

// checkAgree decodes frame by both paths and fails if they disagree.
func checkAgree(t *testing.T, frame []byte) {
	t.Helper()
	typ, body, err := Decode(frame)
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.DisallowUnknownFields()
	gerr := dec.Decode(&env)
	if gerr == nil && len(bytes.TrimSpace(frame[dec.InputOffset():])) > 0 {
		gerr = errors.New("trailing data")
	}
	var gtyp string
	var gbody any
	if gerr == nil {
		gtyp, gbody, gerr = decodeBody(env.Type, env.Body)
	}
	if (err == nil) != (gerr == nil) {
		t.Fatalf("Decode(%q): fast path err %v, general path err %v", frame, err, gerr)
	}
	if err == nil && (typ != gtyp || !cmp.Equal(body, gbody)) {
		t.Fatalf("Decode(%q): paths disagree: %s %+v vs %s %+v", frame, typ, body, gtyp, gbody)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","body":{"id":"a","hostname":"h"}}`,
		`{"type":"events","body":{"events":[{"seq":1,"kind":"k","time":"2026-01-01T00:00:00Z"}]}}`,
		`{"type":"ack","body":{"seq":18446744073709551615}}`,
		`{"type":"policy","body":{"revision":1,"policies":{"a":{}}}}`,
		`{"type":"heartbeat","body":{"time":"2026-01-01T00:00:00Z"}}`,
		`{}`, `[`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		checkAgree(t, frame)
		typ, body, err := Decode(frame)
		if err != nil {
			if !errors.Is(err, ErrFrame) {
				t.Fatalf("Decode error %v is not ErrFrame", err)
			}
			return
		}
		// Whatever decodes re-encodes and decodes to the same thing.
		again, err := Encode(typ, body)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		typ2, body2, err := Decode(again)
		if err != nil || typ2 != typ {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
		if diff := cmp.Diff(body, body2); diff != "" {
			t.Fatalf("round trip changed the body: %s", diff)
		}
	})
}

// marshalFrame is what Encode writes, the slow way.
func marshalFrame(t testing.TB, typ string, body any) []byte {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	frame, err := json.Marshal(Envelope{Type: typ, Body: b})
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

// TestEncodeIsMarshal: Encode writes the same bytes as json.Marshal of the
// envelope around json.Marshal of the body, on its fast paths too.
func TestEncodeIsMarshal(t *testing.T) {
	at := time.Date(2026, 11, 30, 7, 1, 2, 345678900, time.UTC)
	for _, tc := range []struct {
		name string
		typ  string
		body any
	}{
		{"events", TypeEvents, Events{Events: []Event{
			{Seq: 1, Time: at, Kind: "process.exec", Data: json.RawMessage(`{"process":{"pid":1,"argv":["a\u003cb","é"]}}`)},
			{Seq: 2, Time: at.In(time.FixedZone("x", 3600)), Kind: "file.write"},
			{Seq: 3, Time: time.Time{}, Kind: "sensor.loss", Data: json.RawMessage(`[]`)},
		}}},
		{"no events", TypeEvents, Events{}},
		{"kind json escapes", TypeEvents, Events{Events: []Event{{Seq: 9, Time: at, Kind: "a<b&\"é\u2028", Data: json.RawMessage(`1`)}}}},
		{"year 10000", TypeEvents, Events{Events: []Event{{Seq: 9, Time: at.AddDate(8000, 0, 0), Kind: "k", Data: json.RawMessage(`1`)}}}},
		{"heartbeat", TypeHeartbeat, Heartbeat{Time: at}},
		{"ack", TypeAck, Ack{Seq: 7}},
		{"hello", TypeHello, Hello{ID: "d<1>", Hostname: "h"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gerr := Encode(tc.typ, tc.body)
			b, werr := json.Marshal(tc.body)
			if werr != nil {
				if gerr == nil {
					t.Fatalf("Encode = %s, want an error like json.Marshal's %v", got, werr)
				}
				return
			}
			if gerr != nil {
				t.Fatalf("Encode error: %v", gerr)
			}
			want, _ := json.Marshal(Envelope{Type: tc.typ, Body: b})
			if !bytes.Equal(got, want) {
				t.Errorf("Encode =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// FuzzEncodeEvents: for any events whose data is compact JSON, Encode's fast
// path writes what json.Marshal writes, and Decode reads it back.
func FuzzEncodeEvents(f *testing.F) {
	f.Add(uint64(1), int64(1764486000123456789), "process.exec", []byte(`{"a":[1,"x"]}`), uint64(2), "file.write", []byte(``))
	f.Add(uint64(5), int64(-62135596800000000), "k<", []byte(`"\u2028"`), uint64(6), "k", []byte(`null`))
	f.Fuzz(func(t *testing.T, seq1 uint64, nanos int64, kind1 string, data1 []byte, seq2 uint64, kind2 string, data2 []byte) {
		compact := func(d []byte) json.RawMessage {
			if len(d) == 0 {
				return nil
			}
			var buf bytes.Buffer
			if json.Compact(&buf, d) != nil {
				return json.RawMessage(`{}`)
			}
			return buf.Bytes()
		}
		at := time.Unix(0, nanos).UTC()
		body := Events{Events: []Event{
			{Seq: seq1, Time: at, Kind: kind1, Data: compact(data1)},
			{Seq: seq2, Time: at.Add(time.Microsecond), Kind: kind2, Data: compact(data2)},
		}}
		got, err := Encode(TypeEvents, body)
		b, werr := json.Marshal(body)
		if werr != nil {
			if err == nil {
				t.Fatalf("Encode = %s, want json.Marshal's error %v", got, werr)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode error: %v", err)
		}
		want, _ := json.Marshal(Envelope{Type: TypeEvents, Body: b})
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode =\n%s\nwant\n%s", got, want)
		}
	})
}
