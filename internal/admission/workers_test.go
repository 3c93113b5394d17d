package admission

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

func TestWorkers(t *testing.T) {
	ws := &workers{jobs: make(chan *job)}
	req := httptest.NewRequest(http.MethodPost, "/v1/admission", nil)
	if ws.serve(httptest.NewRecorder(), req) {
		t.Fatal("serve() = true without a worker running")
	}

	started, release := make(chan struct{}), make(chan struct{})
	serve := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/slow":
			close(started)
			<-release
		}
		w.WriteHeader(http.StatusTeapot)
	}
	go ws.run(t.Context(), serve)

	rec := httptest.NewRecorder()
	for !ws.serve(rec, req) { // until the worker waits
		runtime.Gosched()
	}
	if rec.Code != http.StatusTeapot {
		t.Errorf("served %d, want the worker's %d", rec.Code, http.StatusTeapot)
	}

	func() {
		defer func() {
			if v := recover(); v == nil || !errors.Is(v.(error), http.ErrAbortHandler) { //nolint:forcetypeassert // test
				t.Errorf("serve() of a request whose handler aborts panicked with %v, want http.ErrAbortHandler", v)
			}
		}()
		ws.serve(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/abort", nil))
	}()

	done := make(chan bool)
	go func() { done <- ws.serve(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/slow", nil)) }()
	<-started
	if ws.serve(httptest.NewRecorder(), req) {
		t.Error("serve() = true while the only worker is busy")
	}
	close(release)
	if !<-done {
		t.Error("the slow request was not served by the worker")
	}
}
