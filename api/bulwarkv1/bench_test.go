package bulwarkv1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func eventsFrame(b *testing.B, n int) []byte {
	b.Helper()
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Seq: uint64(i + 1), Time: time.Now(), Kind: "process.exec",
			Data: json.RawMessage(fmt.Sprintf(`{"process":{"pid":%d,"ppid":1,"uid":0,"gid":0,"exe":"/bin/sh","argv":["sh","-c","id"]},"host":"h"}`, 1000+i))}
	}
	frame, err := Encode(TypeEvents, Events{Events: evs})
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

// BenchmarkDecodeEvents compares Decode (canonical fast path) with the
// general path on a 1,000-event frame.
func BenchmarkDecodeEvents(b *testing.B) {
	frame := eventsFrame(b, 1000)
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			if _, _, err := Decode(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			var env Envelope
			dec := json.NewDecoder(bytes.NewReader(frame))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&env); err != nil {
				b.Fatal(err)
			}
			if _, _, err := decodeBody(env.Type, env.Body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeEvents compares Encode's events path with json.Marshal of
// the envelope, which it replaces, on a 1,000-event frame.
func BenchmarkEncodeEvents(b *testing.B) {
	var evs Events
	if _, body, err := Decode(eventsFrame(b, 1000)); err == nil {
		evs = *body.(*Events)
	} else {
		b.Fatal(err)
	}
	b.Run("Encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := Encode(TypeEvents, evs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			marshalFrame(b, TypeEvents, evs)
		}
	})
}
