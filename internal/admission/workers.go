package admission

import (
	"context"
	"net/http"
	"sync"
)

// workers serve requests on long-lived goroutines rather than on the HTTP
// server's new goroutine per request. Decoding an AdmissionReview goes deep
// into the JSON decoder: a new goroutine's stack grew two or three times on
// each review, each time copied and its frames rewritten, about a tenth of
// the Console's CPU per review at 1,000 reviews/s. A worker's stack stays
// grown (the collector halves an idle one at most once a cycle). A request
// that finds no worker idle is served on its own goroutine, as before: the
// workers add no queue.
type workers struct {
	jobs chan *job // unbuffered: a send succeeds only to an idle worker
	pool sync.Pool // *job
}

type job struct {
	w http.ResponseWriter
	r *http.Request
	// panicked is what escaped serve (http.ErrAbortHandler), to panic
	// with again on the request's goroutine, where net/http expects it.
	panicked any
	done     chan struct{}
}

// serve has an idle worker serve the request and waits for it; false when
// none is idle.
func (ws *workers) serve(w http.ResponseWriter, r *http.Request) bool {
	j, _ := ws.pool.Get().(*job)
	if j == nil {
		j = &job{done: make(chan struct{}, 1)}
	}
	j.w, j.r = w, r
	select {
	case ws.jobs <- j:
		<-j.done
	default:
		j.w, j.r = nil, nil
		ws.pool.Put(j)
		return false
	}
	panicked := j.panicked
	j.w, j.r, j.panicked = nil, nil, nil
	ws.pool.Put(j)
	if panicked != nil {
		panic(panicked)
	}
	return true
}

// run is a worker: it serves requests with serve until ctx ends.
func (ws *workers) run(ctx context.Context, serve http.HandlerFunc) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-ws.jobs:
			ws.do(j, serve)
		}
	}
}

func (ws *workers) do(j *job, serve http.HandlerFunc) {
	defer func() {
		j.panicked = recover()
		j.done <- struct{}{}
	}()
	serve(j.w, j.r)
}
