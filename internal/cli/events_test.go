package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"bulwark/api"
)

// eventFeed is a fake runtime audit endpoint: events are added while the
// CLI runs, and pages follow a cursor that is the index of the last event.
type eventFeed struct {
	mu     sync.Mutex
	events []api.RuntimeAudit
	served int // requests answered
}

func (f *eventFeed) add(es ...api.RuntimeAudit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, es...)
}

func (f *eventFeed) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served
}

func (f *eventFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served++
	q := r.URL.Query()
	from := 0
	if a := q.Get("after"); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil {
			http.Error(w, `{"err":"bad cursor"}`, 400)
			return
		}
		from = n + 1
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	to := min(len(f.events), from+limit)
	page := []api.RuntimeAudit{}
	if from < to {
		page = f.events[from:to]
	}
	if len(page) > 0 {
		w.Header().Set(nextHeader, strconv.Itoa(to-1))
	} else if a := q.Get("after"); a != "" {
		w.Header().Set(nextHeader, a)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

// compactJSON compares raw JSON by value, not by layout: the CLI indents.
var compactJSON = cmp.Transformer("compact", func(r json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, r); err != nil {
		return string(r)
	}
	return b.String()
})

func runtimeEvent(n int) api.RuntimeAudit {
	return api.RuntimeAudit{
		ID: fmt.Sprintf("d1:%d", n), Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Hostname: "node-1",
		ContainerID: "3f4e5d6c7b8a99aa", ContainerName: "web", ImageName: "nginx:1", PID: uint32(100 + n), //nolint:gosec // small
		User: "0", Type: "processes", Msg: fmt.Sprintf("exec /bin/true %d by pid %d (parent 1)", n, 100+n), Kind: "process.exec",
		Event: json.RawMessage(fmt.Sprintf(`{"process":{"pid":%d,"ppid":1,"uid":0,"gid":0,"exe":"/bin/true"}}`, 100+n)),
	}
}

// syncBuffer is a bytes.Buffer the test reads while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func feedEnv(t testing.TB, f *fakeConsole) map[string]string {
	env := baseEnv(t)
	env[envConsole], env[envCACert], env[envUsername], env[envPassword] = f.URL, f.caFile, "u", "p"
	return env
}

func TestEventsFilters(t *testing.T) {
	feed := &eventFeed{}
	feed.add(runtimeEvent(1), runtimeEvent(2))
	f := startFake(t, feed.ServeHTTP)
	env := feedEnv(t, f)

	tests := []struct {
		name     string
		args     []string
		wantPath string
		want     url.Values // "from" is checked apart
	}{
		{"defaults", nil, "/api/v1/audits/runtime/container", url.Values{"limit": {"100"}}},
		{"every filter", []string{"--type", "process", "--container", "3f4e5d6c7b8a", "--image", "nginx:1", "--host", "node-1", "--limit", "5"},
			"/api/v1/audits/runtime/container",
			url.Values{"type": {"process"}, "container": {"3f4e5d6c7b8a"}, "image": {"nginx:1"}, "hostname": {"node-1"}, "limit": {"5"}}},
		{"host events", []string{"--host-events", "--type", "kernel"}, "/api/v1/audits/runtime/host", url.Values{"type": {"kernel"}, "limit": {"100"}}},
		{"since a time", []string{"--since", "2026-01-02T03:04:05Z"}, "/api/v1/audits/runtime/container", url.Values{"limit": {"100"}, "from": {"2026-01-02T03:04:05Z"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustRun(t, env, "", append([]string{"events"}, tc.args...)...)
			r := f.last(t)
			if r.URL.Path != tc.wantPath {
				t.Errorf("events %v requested %s, want %s", tc.args, r.URL.Path, tc.wantPath)
			}
			if diff := cmp.Diff(tc.want, r.URL.Query()); diff != "" {
				t.Errorf("events %v query (-want +got):\n%s", tc.args, diff)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "exec /bin/true 1 by pid 101") || !strings.Contains(lines[2], "nginx:1") {
				t.Errorf("events %v printed:\n%s", tc.args, out)
			}
		})
	}

	t.Run("since a duration", func(t *testing.T) {
		before := time.Now()
		mustRun(t, env, "", "events", "--since", "10m")
		from, err := time.Parse(time.RFC3339Nano, f.last(t).URL.Query().Get("from"))
		if err != nil || from.Before(before.Add(-10*time.Minute-time.Second)) || from.After(time.Now().Add(-10*time.Minute)) {
			t.Errorf("events --since 10m sent from=%v (%v), want 10 minutes ago", from, err)
		}
	})

	t.Run("json", func(t *testing.T) {
		got := decode[[]api.RuntimeAudit](t, mustRun(t, env, "", "events", "-o", "json"))
		if diff := cmp.Diff([]api.RuntimeAudit{runtimeEvent(1), runtimeEvent(2)}, got, compactJSON); diff != "" {
			t.Errorf("events -o json (-want +got):\n%s", diff)
		}
	})

	for _, bad := range [][]string{
		{"--limit", "0"}, {"--limit", "1001"}, {"--since", "yesterday"}, {"--since", "-5m"},
		{"--host-events", "--container", "3f4e5d6c7b8a"}, {"--host-events", "--image", "x"},
	} {
		if r := run(t, env, "", append([]string{"events"}, bad...)...); r.code != exitUsage {
			t.Errorf("events %v = %d (%s), want %d", bad, r.code, r.stderr, exitUsage)
		}
	}
}

func TestEventsFollow(t *testing.T) {
	for _, output := range []string{"json", "table"} {
		t.Run(output, func(t *testing.T) {
			feed := &eventFeed{}
			f := startFake(t, feed.ServeHTTP)
			var stdout, stderr syncBuffer
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			env := feedEnv(t, f)
			done := make(chan int, 1)
			go func() {
				done <- Execute(ctx, []string{"events", "--follow", "--poll-interval", "10ms", "-o", output}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
			}()
			waitUntil := func(what string, ok func() bool) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for !ok() {
					if time.Now().After(deadline) {
						t.Fatalf("timed out waiting for %s; stdout:\n%s\nstderr:\n%s", what, stdout.String(), stderr.String())
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			// Events arrive after following started: one, then a burst
			// larger than a page, then one more.
			waitUntil("the first poll", func() bool { return feed.requests() > 0 })
			feed.add(runtimeEvent(1))
			waitUntil("event 1", func() bool { return strings.Contains(stdout.String(), "exec /bin/true 1 ") })
			var burst []api.RuntimeAudit
			for n := 2; n <= maxEventPage+2; n++ {
				burst = append(burst, runtimeEvent(n))
			}
			feed.add(burst...)
			feed.add(runtimeEvent(maxEventPage + 3))
			last := fmt.Sprintf("exec /bin/true %d ", maxEventPage+3)
			waitUntil("the last event", func() bool { return strings.Contains(stdout.String(), last) })
			polls := feed.requests()
			waitUntil("more polls", func() bool { return feed.requests() > polls+2 })
			cancel()
			if code := <-done; code != 0 {
				t.Fatalf("events --follow ended by the context = %d, want 0; stderr: %s", code, stderr.String())
			}

			out := strings.TrimSpace(stdout.String())
			lines := strings.Split(out, "\n")
			var seen []string
			for i, l := range lines {
				if output == "json" {
					var a api.RuntimeAudit
					if err := json.Unmarshal([]byte(l), &a); err != nil {
						t.Fatalf("line %d %q is not one JSON object: %v", i+1, l, err)
					}
					seen = append(seen, a.ID)
					continue
				}
				if i == 0 {
					if !strings.HasPrefix(l, "TIME") {
						t.Errorf("first line %q, want the header", l)
					}
					continue
				}
				if strings.HasPrefix(l, "TIME") {
					t.Errorf("line %d repeats the header", i+1)
				}
				fields := strings.Fields(l)
				seen = append(seen, "d1:"+fields[len(fields)-6]) // exec /bin/true N by pid P (parent 1)
			}
			var want []string
			for n := 1; n <= maxEventPage+3; n++ {
				want = append(want, fmt.Sprintf("d1:%d", n))
			}
			if diff := cmp.Diff(want, seen); diff != "" {
				t.Errorf("events --follow -o %s printed (-want +got):\n%s", output, diff)
			}
		})
	}
}
