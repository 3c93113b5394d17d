// Package channel carries the Defender channel (api/bulwarkv1) over
// websockets: the Console's server on :8084, which admits only clients with
// a valid, unrevoked Defender certificate, and the Defender's client, which
// reconnects with jittered exponential back-off.
package channel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"bulwark/api/bulwarkv1"
	"bulwark/internal/event"
	"bulwark/internal/policy"
)

// Backend is what the server needs from the Console.
type Backend interface {
	// Connected records a Defender's hello and returns the highest event seq
	// stored for it.
	Connected(ctx context.Context, id string, h bulwarkv1.Hello, at time.Time) (storedSeq uint64, err error)
	// Heartbeat records a Defender's heartbeat.
	Heartbeat(ctx context.Context, id string, hb bulwarkv1.Heartbeat, at time.Time) error
	// Disconnected records that a Defender's connection ended.
	Disconnected(ctx context.Context, id string, at time.Time) error
	// Policy returns the current policy snapshot.
	Policy(ctx context.Context) (policy.Snapshot, error)
	// AppendEvents commits batches, possibly of several Defenders, in one
	// transaction and returns, per batch, the Defender's highest stored seq.
	AppendEvents(ctx context.Context, batches []event.Batch) ([]uint64, error)
}

// ServerConfig configures the Console side.
type ServerConfig struct {
	Certificate tls.Certificate // the :8084 server certificate
	ClientCAs   *x509.CertPool  // the Console CA
	// Authorize runs inside the TLS handshake with the verified client
	// certificate; an error refuses the handshake (revoked, unknown).
	Authorize         func(leaf *x509.Certificate) error
	HeartbeatInterval time.Duration // default 10s; the Defender is dropped after 3 missed
	ConsoleVersion    string
	Now               func() time.Time
}

// Stats counts what the server saw.
type Stats struct {
	Connected      int
	BadFrames      uint64 // frames that closed a connection
	RefusedIDs     uint64 // hellos whose id did not match the certificate
	EventsIngested uint64 // events committed (including duplicates skipped)
}

// Server is the Console end of the channel.
type Server struct {
	cfg     ServerConfig
	backend Backend
	logger  *slog.Logger
	ingest  *committer

	mu    sync.Mutex
	conns map[string]*serverConn

	// decoding bounds the frames decoded at once to the CPUs, so that a
	// thousand connections do not crowd the committer off the processors.
	decoding chan struct{}

	badFrames  atomic.Uint64
	refusedIDs atomic.Uint64
	ingested   atomic.Uint64
}

// NewServer returns a server; run it with Serve.
func NewServer(cfg ServerConfig, backend Backend, logger *slog.Logger) *Server {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, backend: backend, logger: logger, conns: make(map[string]*serverConn), decoding: make(chan struct{}, runtime.GOMAXPROCS(0))}
	s.ingest = newCommitter(backend, logger)
	return s
}

// TLSConfig requires and verifies a Defender client certificate during the
// handshake, so that no handler ever runs for anyone else.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13, // both ends are ours
		Certificates: []tls.Certificate{s.cfg.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    s.cfg.ClientCAs,
		NextProtos:   []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			if s.cfg.Authorize == nil {
				return nil
			}
			return s.cfg.Authorize(cs.PeerCertificates[0])
		},
	}
}

// Serve accepts Defenders on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+bulwarkv1.Path, s.handle)
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug), // refused handshakes are routine
	}
	ictx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	ingestDone := make(chan struct{})
	go func() { defer close(ingestDone); s.ingest.run(ictx) }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.closeAll(websocket.StatusGoingAway, "console shutting down")
		shctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(shctx)
		cancel()
		err = <-errc
	}
	stopIngest()
	<-ingestDone
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve channel: %w", err)
}

// Push sends snap to every connected Defender and returns how many it reached.
func (s *Server) Push(snap policy.Snapshot) int {
	frame, err := bulwarkv1.Encode(bulwarkv1.TypePolicy, toWirePolicy(snap))
	if err != nil {
		s.logger.Error("encode policy", slog.Any("err", err))
		return 0
	}
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		if c.enqueue(frame) {
			n++
		}
	}
	return n
}

// Disconnect closes the live connection of Defender id, if any.
func (s *Server) Disconnect(id, reason string) bool {
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.close(websocket.StatusPolicyViolation, reason)
	return true
}

// window is the in-flight frame allowance for a Defender that connects now:
// 4 while few are connected, 1 once the fleet's frames in flight would hold
// far more events than the committer queues.
func (s *Server) window() int {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n > manyDefenders {
		return 1
	}
	return 4
}

// manyDefenders is where window drops to 1.
const manyDefenders = 64

// Stats returns counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{Connected: n, BadFrames: s.badFrames.Load(), RefusedIDs: s.refusedIDs.Load(), EventsIngested: s.ingested.Load()}
}

func (s *Server) closeAll(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(code, reason)
	}
}

func toWirePolicy(snap policy.Snapshot) bulwarkv1.Policy {
	return bulwarkv1.Policy{Revision: snap.Revision, Policies: snap.Policies}
}

// handle runs one Defender's session. The TLS handshake has already proved
// a valid, unrevoked Defender certificate.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "client certificate required", http.StatusUnauthorized) // unreachable behind TLSConfig
		return
	}
	certID := r.TLS.PeerCertificates[0].Subject.CommonName
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{bulwarkv1.Subprotocol},
		CompressionMode: websocket.CompressionContextTakeover,
	})
	if err != nil {
		s.logger.Debug("websocket upgrade", slog.String("defender", certID), slog.Any("err", err))
		return
	}
	if ws.Subprotocol() != bulwarkv1.Subprotocol {
		_ = ws.Close(websocket.StatusPolicyViolation, "subprotocol "+bulwarkv1.Subprotocol+" required")
		return
	}
	ws.SetReadLimit(bulwarkv1.MaxFrameBytes + 1)
	c := &serverConn{s: s, ws: ws, id: certID, out: make(chan []byte, 64), done: make(chan struct{})}
	c.run(r.Context())
}

// serverConn is one Defender's live connection.
type serverConn struct {
	s    *Server
	ws   *websocket.Conn
	id   string
	out  chan []byte // frames to write, in order
	done chan struct{}

	closeOnce sync.Once
}

// enqueue queues a frame for writing; false when the connection is gone or
// hopelessly behind (then it is closed and will reconnect).
func (c *serverConn) enqueue(frame []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- frame:
		return true
	case <-c.done:
		return false
	case <-time.After(5 * time.Second):
		c.close(websocket.StatusTryAgainLater, "defender too slow to read")
		return false
	}
}

func (c *serverConn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		close(c.done)
		go func() { _ = c.ws.Close(code, reason) }() // Close waits for the peer; do not block the caller
	})
}

// fail closes the connection for a protocol error, counted and logged once.
func (c *serverConn) fail(err error) {
	c.s.badFrames.Add(1)
	c.s.logger.Warn("defender channel protocol error", slog.String("defender", c.id), slog.Any("err", err))
	reason := err.Error()
	if len(reason) > 120 { // a close reason must fit a control frame
		reason = reason[:120]
	}
	c.close(websocket.StatusPolicyViolation, reason)
}

func (c *serverConn) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	defer c.close(websocket.StatusNormalClosure, "")
	cfg := c.s.cfg

	// Hello first, within a deadline.
	hctx, hcancel := context.WithTimeout(ctx, 15*time.Second)
	typ, body, err := c.read(hctx)
	hcancel()
	if err != nil {
		c.s.logger.Debug("defender hello", slog.String("defender", c.id), slog.Any("err", err))
		return
	}
	hello, ok := body.(*bulwarkv1.Hello)
	if typ != bulwarkv1.TypeHello || !ok {
		c.fail(fmt.Errorf("%w: first frame is %s, want hello", bulwarkv1.ErrFrame, typ))
		return
	}
	if hello.ID != c.id {
		c.s.refusedIDs.Add(1)
		c.fail(fmt.Errorf("hello id %q does not match certificate %q", hello.ID, c.id))
		return
	}
	stored, err := c.s.backend.Connected(ctx, c.id, *hello, cfg.Now())
	if err != nil {
		c.s.logger.Error("record defender connect", slog.String("defender", c.id), slog.Any("err", err))
		c.close(websocket.StatusInternalError, "console store unavailable")
		return
	}
	c.register()
	defer c.unregister()

	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.writeLoop(ctx) }()
	defer func() { c.close(websocket.StatusNormalClosure, ""); <-writerDone }()

	welcome, _ := bulwarkv1.Encode(bulwarkv1.TypeWelcome, bulwarkv1.Welcome{StoredSeq: stored, HeartbeatInterval: cfg.HeartbeatInterval, ConsoleVersion: cfg.ConsoleVersion, Window: c.s.window()})
	c.enqueue(welcome)
	if snap, err := c.s.backend.Policy(ctx); err != nil {
		c.s.logger.Error("load policy", slog.Any("err", err))
	} else if snap.Revision != hello.PolicyRevision {
		if frame, err := bulwarkv1.Encode(bulwarkv1.TypePolicy, toWirePolicy(snap)); err == nil {
			c.enqueue(frame)
		}
	}

	timeout := 3 * cfg.HeartbeatInterval
	for {
		rctx, rcancel := context.WithTimeout(ctx, timeout)
		typ, body, err := c.read(rctx)
		rcancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				c.close(websocket.StatusGoingAway, "heartbeat timeout")
			}
			return
		}
		switch b := body.(type) {
		case *bulwarkv1.Events:
			batch := event.Batch{DefenderID: c.id, Events: make([]event.Event, len(b.Events))}
			for i, e := range b.Events {
				batch.Events[i] = event.Event{DefenderID: c.id, Seq: e.Seq, Time: e.Time, Kind: e.Kind, Data: e.Data}
			}
			n := uint64(len(batch.Events))
			if !c.s.ingest.submit(ctx, batch, func(stored uint64, err error) {
				if err != nil {
					c.s.logger.Error("store events", slog.String("defender", c.id), slog.Any("err", err))
					c.close(websocket.StatusInternalError, "console store unavailable")
					return
				}
				c.s.ingested.Add(n)
				if frame, err := bulwarkv1.Encode(bulwarkv1.TypeAck, bulwarkv1.Ack{Seq: stored}); err == nil {
					c.enqueue(frame)
				}
			}) {
				return
			}
		case *bulwarkv1.Heartbeat:
			if err := c.s.backend.Heartbeat(ctx, c.id, *b, cfg.Now()); err != nil {
				c.s.logger.Warn("record heartbeat", slog.String("defender", c.id), slog.Any("err", err))
			}
		default:
			c.fail(fmt.Errorf("%w: a defender may not send %s", bulwarkv1.ErrFrame, typ))
			return
		}
	}
}

// read returns the next decoded frame; protocol errors close the connection.
func (c *serverConn) read(ctx context.Context) (string, any, error) {
	mt, data, err := c.ws.Read(ctx)
	if err != nil {
		// The library closes an oversized frame's connection with 1009 itself;
		// it reports the breach only in its error text.
		if strings.Contains(err.Error(), "read limited at") {
			c.s.badFrames.Add(1)
			c.s.logger.Warn("defender channel protocol error", slog.String("defender", c.id),
				slog.Any("err", fmt.Errorf("%w: frame over %d bytes", bulwarkv1.ErrFrame, bulwarkv1.MaxFrameBytes)))
		}
		return "", nil, err
	}
	if mt != websocket.MessageText {
		err := fmt.Errorf("%w: binary frame", bulwarkv1.ErrFrame)
		c.fail(err)
		return "", nil, err
	}
	select {
	case c.s.decoding <- struct{}{}:
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	typ, body, err := bulwarkv1.Decode(data)
	<-c.s.decoding
	if err != nil {
		c.fail(err)
		return "", nil, err
	}
	return typ, body, nil
}

func (c *serverConn) writeLoop(ctx context.Context) {
	hb := time.NewTicker(c.s.cfg.HeartbeatInterval)
	defer hb.Stop()
	for {
		var frame []byte
		select {
		case <-c.done:
			return
		case <-ctx.Done():
			return
		case frame = <-c.out:
		case <-hb.C:
			frame, _ = bulwarkv1.Encode(bulwarkv1.TypeHeartbeat, bulwarkv1.Heartbeat{Time: c.s.cfg.Now()})
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.ws.Write(wctx, websocket.MessageText, frame)
		cancel()
		if err != nil {
			c.close(websocket.StatusGoingAway, "write failed")
			return
		}
	}
}

// register makes c the connection of its Defender, closing an older one.
func (c *serverConn) register() {
	c.s.mu.Lock()
	old := c.s.conns[c.id]
	c.s.conns[c.id] = c
	c.s.mu.Unlock()
	if old != nil {
		old.close(websocket.StatusPolicyViolation, "replaced by a newer connection of the same defender")
	}
}

func (c *serverConn) unregister() {
	c.s.mu.Lock()
	mine := c.s.conns[c.id] == c
	if mine {
		delete(c.s.conns, c.id)
	}
	c.s.mu.Unlock()
	if mine {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.s.backend.Disconnected(ctx, c.id, c.s.cfg.Now()); err != nil {
			c.s.logger.Warn("record disconnect", slog.String("defender", c.id), slog.Any("err", err))
		}
	}
}
