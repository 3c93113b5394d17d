// Package admission is Bulwark's Kubernetes admission controller: an
// http.Handler that answers AdmissionReview v1 requests for Pods and every
// pod controller (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
// CronJob, ReplicationController, PodTemplate) by evaluating their pod
// template with the compliance engine and the Pod Security Standards under
// the admission policy: in audit mode every request is allowed and what
// fails is returned as warnings, in enforce mode a check whose rule blocks
// denies the request. Namespaces can be exempt; other kinds, DELETE and
// CONNECT are allowed. Every decision about a workload is recorded as an
// audit.Admission, written to the store in batches off the request path.
//
// The Console serves it on its own HTTPS listener; the policy comes from the
// store's policy snapshot, compiled once per revision.
package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"bulwark/internal/audit"
	"bulwark/internal/k8s"
	"bulwark/internal/policy"
)

// Defaults of Config.
const (
	// DefaultMaxBodyBytes bounds an AdmissionReview: the API server takes
	// request bodies up to 3 MiB, and an UPDATE's review carries the object
	// twice.
	DefaultMaxBodyBytes = 8 << 20
	// DefaultAuditRetention is how many admission audits are kept.
	DefaultAuditRetention = 100_000
	// DefaultAuditQueue is how many audits may wait to be written; beyond
	// it they are dropped and counted rather than slow the API server down.
	DefaultAuditQueue = 10_000
	// DefaultPolicyRefresh is how often the store's policy revision is
	// checked for changes made through another Console replica.
	DefaultPolicyRefresh = time.Second
)

// Audit batching: a batch is written when it has auditBatch records or is
// auditFlush old, and the store pruned every pruneEvery.
const (
	// maxPooledBody is the largest body buffer kept for the next request:
	// reviews are a few kilobytes, a rare large one is not kept around.
	maxPooledBody = 256 << 10

	auditBatch = 512
	auditFlush = 200 * time.Millisecond
	// auditTx is how many records one transaction inserts: 0.3-0.5 ms of
	// CPU. Between transactions the writer yields, so that reviews waiting
	// for a CPU do not wait for a whole batch (Go would let it run 10 ms).
	auditTx    = 32
	pruneEvery = time.Minute
)

// Config tunes a Webhook; zero fields take the defaults.
type Config struct {
	MaxBodyBytes int64
	// AuditRetention is how many audits the store keeps; negative keeps
	// all of them.
	AuditRetention int
	AuditQueue     int
	PolicyRefresh  time.Duration
	Now            func() time.Time
}

// Store is what the controller needs from the Console's store.
type Store interface {
	PolicySnapshot(ctx context.Context) (policy.Snapshot, error)
	AppendAdmissionAudits(ctx context.Context, recs []audit.Admission) error
	PruneAdmissionAudits(ctx context.Context, keep int) (int64, error)
}

// Stats count what the controller did since it started.
type Stats struct {
	Reviews   uint64 // answered with 200
	Allowed   uint64 // decisions about workloads allowed without findings
	Warned    uint64 // allowed with warnings
	Denied    uint64
	Malformed uint64 // answered with 400
	// AuditsWritten were stored; AuditsDropped found the queue full or the
	// store failing.
	AuditsWritten uint64
	AuditsDropped uint64
	// PolicyRevision is the revision of the policy in force.
	PolicyRevision int64
}

// Webhook is the admission controller. It is an http.Handler; Run writes
// its audits and follows policy changes.
type Webhook struct {
	cfg    Config
	store  Store
	logger *slog.Logger

	mu          sync.Mutex // serialises compiling
	policy      atomic.Pointer[compiled]
	badRevision int64 // the last revision refused, -1 for none

	audits  *auditQueue
	workers *workers
	bodies  sync.Pool // *bytes.Buffer for request bodies, up to maxPooledBody
	stats   struct {
		reviews, allowed, warned, denied, malformed, written, dropped atomic.Uint64
	}
}

var _ http.Handler = (*Webhook)(nil)

// New returns the controller with the store's policy in force.
func New(ctx context.Context, cfg Config, st Store, logger *slog.Logger) (*Webhook, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.AuditRetention == 0 {
		cfg.AuditRetention = DefaultAuditRetention
	}
	if cfg.AuditQueue <= 0 {
		cfg.AuditQueue = DefaultAuditQueue
	}
	if cfg.PolicyRefresh <= 0 {
		cfg.PolicyRefresh = DefaultPolicyRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Webhook{cfg: cfg, store: st, logger: logger, audits: newAuditQueue(cfg.AuditQueue), badRevision: -1}
	h.workers = &workers{jobs: make(chan *job)}
	if err := h.load(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// Stats returns the counters.
func (h *Webhook) Stats() Stats {
	return Stats{
		Reviews: h.stats.reviews.Load(), Allowed: h.stats.allowed.Load(), Warned: h.stats.warned.Load(),
		Denied: h.stats.denied.Load(), Malformed: h.stats.malformed.Load(),
		AuditsWritten: h.stats.written.Load(), AuditsDropped: h.stats.dropped.Load(),
		PolicyRevision: h.policy.Load().revision,
	}
}

// ServeHTTP answers POST k8s.AdmissionPath (or k8s.AdmissionPath/<cluster>)
// with an AdmissionReview v1 response carrying the request's UID, and a
// request that is not such a review with 400 and a message.
//
// The request is served on one of Run's workers when one is idle, else on
// the request's own goroutine.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.workers.serve(w, r) {
		h.serve(w, r)
	}
}

func (h *Webhook) serve(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
				panic(v)
			}
			h.logger.ErrorContext(r.Context(), "admission review panic", slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			writeJSON(w, http.StatusInternalServerError, map[string]string{"err": "internal error"})
		}
	}()
	cluster, ok := clusterOf(r.URL.Path)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"err": "no such endpoint: " + r.URL.Path + "; AdmissionReviews go to " + k8s.AdmissionPath})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"err": "AdmissionReviews are POSTed"})
		return
	}
	resp, err := h.review(r, cluster)
	if err != nil {
		h.stats.malformed.Add(1)
		var me *malformedError
		if !errors.As(err, &me) {
			h.logger.ErrorContext(r.Context(), "admission review", slog.Any("err", err))
			writeJSON(w, http.StatusInternalServerError, map[string]string{"err": "internal error"})
			return
		}
		h.logger.DebugContext(r.Context(), "malformed admission review", slog.String("remote", r.RemoteAddr), slog.String("err", me.msg))
		writeJSON(w, http.StatusBadRequest, map[string]string{"err": me.msg})
		return
	}
	h.stats.reviews.Add(1)
	writeJSON(w, http.StatusOK, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind},
		Response: resp,
	})
}

// review reads, decides and records one AdmissionReview.
func (h *Webhook) review(r *http.Request, cluster string) (*admissionv1.AdmissionResponse, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, malformed("content type %q is not application/json", r.Header.Get("Content-Type"))
	}
	buf, _ := h.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	body, err := readBody(r, h.cfg.MaxBodyBytes, buf)
	var req *admissionv1.AdmissionRequest
	if err == nil {
		req, err = decodeReview(body) // copies what it keeps out of body
	}
	if buf.Cap() <= maxPooledBody {
		buf.Reset()
		h.bodies.Put(buf)
	}
	if err != nil {
		return nil, err
	}
	c := h.policy.Load()
	d, err := h.decide(c, cluster, req)
	if err != nil {
		return nil, err
	}
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: d.allowed, Warnings: d.warnings}
	if !d.allowed {
		resp.Result = &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: d.message,
		}
	}
	if rec := d.record; rec != nil {
		// The API server's audit log shows them, under the webhook's name.
		resp.AuditAnnotations = map[string]string{"decision": rec.Effect, "policy-revision": itoa(rec.PolicyRevision)}
		switch rec.Effect {
		case audit.EffectAllow:
			h.stats.allowed.Add(1)
		case audit.EffectAlert:
			h.stats.warned.Add(1)
		case audit.EffectBlock:
			h.stats.denied.Add(1)
		}
		if !h.audits.push(rec) {
			h.stats.dropped.Add(1)
		}
	}
	return resp, nil
}

// readBody reads at most limit bytes of the body into buf.
func readBody(r *http.Request, limit int64, buf *bytes.Buffer) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, malformed("the AdmissionReview is larger than %d bytes", limit)
	}
	if r.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free before it sees the end.
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, malformed("the AdmissionReview is larger than %d bytes", limit)
		}
		return nil, malformed("read the AdmissionReview after %d bytes: %v", n, err)
	}
	if n == 0 {
		return nil, malformed("the body is empty; an AdmissionReview is required")
	}
	return buf.Bytes(), nil
}

// clusterOf splits k8s.AdmissionPath[/<cluster>]; ok is false for any other
// path.
func clusterOf(path string) (cluster string, ok bool) {
	rest, ok := strings.CutPrefix(path, k8s.AdmissionPath)
	switch {
	case !ok:
		return "", false
	case rest == "" || rest == "/":
		return "", true
	}
	cluster = rest[1:]
	if rest[0] != '/' || len(cluster) > 253 || strings.ContainsAny(cluster, "/ ") {
		return "", false
	}
	return cluster, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

// Run serves reviews on its workers, writes the audits and follows the
// store's policy until ctx ends, then writes the audits still queued and
// returns nil.
func (h *Webhook) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { h.writeAudits(gctx); return nil })
	for range 2 * runtime.GOMAXPROCS(0) {
		g.Go(func() error { h.workers.run(gctx, h.serve); return nil })
	}
	g.Go(func() error {
		t := time.NewTicker(h.cfg.PolicyRefresh)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if err := h.load(gctx); err != nil && gctx.Err() == nil {
					h.logger.WarnContext(gctx, "admission: reading the policy failed; keeping the one in force", slog.Any("err", err))
				}
			}
		}
	})
	return g.Wait()
}

// writeAudits stores queued audits when auditBatch wait or every
// auditFlush, auditTx records a transaction. A batch the store refuses is dropped
// and counted: the decisions were made and answered already, and holding
// them would only grow memory while the store is down.
func (h *Webhook) writeAudits(ctx context.Context) {
	flush := time.NewTicker(auditFlush)
	defer flush.Stop()
	lastPrune := time.Now()
	var reportedDrops uint64
	var queued []audit.Admission
	write := func(ctx context.Context) {
		queued = h.audits.take(queued)
		for batch := range slices.Chunk(queued, auditTx) {
			runtime.Gosched()
			if err := h.store.AppendAdmissionAudits(ctx, batch); err != nil {
				h.stats.dropped.Add(uint64(len(batch)))
				h.logger.ErrorContext(ctx, "admission: store audits", slog.Int("records", len(batch)), slog.Any("err", err))
			} else {
				h.stats.written.Add(uint64(len(batch)))
			}
		}
		if d := h.stats.dropped.Load(); d != reportedDrops {
			h.logger.WarnContext(ctx, "admission: audits dropped", slog.Uint64("dropped", d-reportedDrops), slog.Uint64("total", d))
			reportedDrops = d
		}
		if h.cfg.AuditRetention > 0 && time.Since(lastPrune) >= pruneEvery {
			lastPrune = time.Now()
			if n, err := h.store.PruneAdmissionAudits(ctx, h.cfg.AuditRetention); err != nil {
				h.logger.ErrorContext(ctx, "admission: prune audits", slog.Any("err", err))
			} else if n > 0 {
				h.logger.DebugContext(ctx, "admission: pruned audits", slog.Int64("deleted", n))
			}
		}
	}
	for {
		select {
		case <-h.audits.full:
			write(ctx)
		case <-flush.C:
			write(ctx)
		case <-ctx.Done():
			// What was decided before the end is stored, within a bound.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			write(sctx)
			cancel()
			return
		}
	}
}
