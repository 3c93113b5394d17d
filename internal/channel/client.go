package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"bulwark/api/bulwarkv1"
)

// Outbox is the Defender's event spool as the client sees it.
type Outbox interface {
	// Pending returns up to max events with seq ≥ from, in order.
	Pending(from uint64, max int) ([]bulwarkv1.Event, error)
	// Acked discards every event up to seq: the Console has stored them.
	Acked(seq uint64) error
	// Wake signals that events were added.
	Wake() <-chan struct{}
}

// ClientConfig configures the Defender side.
type ClientConfig struct {
	URL string      // wss://console:8084/v1/channel
	TLS *tls.Config // client certificate and the Console CA
	// Hello builds the hello for each new connection (state changes between them).
	Hello func() bulwarkv1.Hello
	// OnPolicy stores and applies a snapshot; it returns only once the
	// snapshot is safe on disk.
	OnPolicy func(bulwarkv1.Policy) error
	// Heartbeat builds the Defender's heartbeat.
	Heartbeat func() bulwarkv1.Heartbeat
	Outbox    Outbox
	// BatchSize is the most events per frame (default 1000); Window the most
	// unacknowledged frames in flight (default 4).
	BatchSize int
	Window    int
	// BackoffMin and BackoffMax bound the reconnect delay (defaults 500ms, 30s).
	BackoffMin, BackoffMax time.Duration
	// OnState is told when the client connects or disconnects (optional).
	OnState func(connected bool, err error)
}

// Client is the Defender end of the channel.
type Client struct {
	cfg    ClientConfig
	logger *slog.Logger
	http   *http.Client

	connected atomic.Bool
}

// NewClient returns a client; run it with Run.
func NewClient(cfg ClientConfig, logger *slog.Logger) *Client {
	if cfg.BatchSize <= 0 || cfg.BatchSize > bulwarkv1.MaxBatchEvents {
		cfg.BatchSize = 1000
	}
	if cfg.Window <= 0 {
		cfg.Window = 4
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	tlsCfg := cfg.TLS.Clone()
	tlsCfg.MinVersion = tls.VersionTLS13
	return &Client{cfg: cfg, logger: logger, http: &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   false,
	}}}
}

// Connected reports whether a session is up.
func (c *Client) Connected() bool { return c.connected.Load() }

// Run connects and reconnects until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		start := time.Now()
		err := c.session(ctx)
		c.connected.Store(false)
		if c.cfg.OnState != nil {
			c.cfg.OnState(false, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			attempt = 0 // it was up for a while: start the back-off again
		}
		d := Backoff(attempt, c.cfg.BackoffMin, c.cfg.BackoffMax, rand.Float64()) //nolint:gosec // jitter, not a secret
		attempt++
		c.logger.Info("console connection lost; retrying", slog.Any("err", err), slog.Duration("in", d))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil
		}
	}
}

// Backoff returns the delay before reconnect attempt n (from 0): "full
// jitter" over an exponentially growing cap, so that many Defenders that lost
// the Console together do not come back together. r is uniform in [0,1).
func Backoff(n int, lo, hi time.Duration, r float64) time.Duration {
	ceil := hi
	if n < 30 {
		ceil = min(hi, lo<<n)
	}
	return lo/2 + time.Duration(r*float64(ceil-lo/2))
}

// session runs one connection until it fails.
func (c *Client) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	ws, resp, err := websocket.Dial(dctx, c.cfg.URL, &websocket.DialOptions{
		HTTPClient:      c.http,
		Subprotocols:    []string{bulwarkv1.Subprotocol},
		CompressionMode: websocket.CompressionContextTakeover,
	})
	dcancel()
	if resp != nil && resp.Body != nil {
		resp.Body.Close() // the upgrade answer; the connection lives on in ws
	}
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.cfg.URL, err)
	}
	defer func() { _ = ws.CloseNow() }()
	ws.SetReadLimit(bulwarkv1.MaxFrameBytes + 1)

	var wmu sync.Mutex
	write := func(typ string, body any) error {
		frame, err := bulwarkv1.Encode(typ, body)
		if err != nil {
			return err
		}
		wmu.Lock()
		defer wmu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return ws.Write(wctx, websocket.MessageText, frame)
	}
	if err := write(bulwarkv1.TypeHello, c.cfg.Hello()); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	typ, body, err := readFrame(rctx, ws)
	rcancel()
	if err != nil {
		return fmt.Errorf("read welcome: %w", err)
	}
	welcome, ok := body.(*bulwarkv1.Welcome)
	if typ != bulwarkv1.TypeWelcome || !ok {
		_ = ws.Close(websocket.StatusPolicyViolation, "expected welcome")
		return fmt.Errorf("%w: got %s, want welcome", bulwarkv1.ErrFrame, typ)
	}
	if err := c.cfg.Outbox.Acked(welcome.StoredSeq); err != nil {
		return fmt.Errorf("discard stored events: %w", err)
	}
	c.connected.Store(true)
	if c.cfg.OnState != nil {
		c.cfg.OnState(true, nil)
	}
	c.logger.Info("connected to console", slog.String("url", c.cfg.URL), slog.Uint64("stored_seq", welcome.StoredSeq))
	interval := welcome.HeartbeatInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	window := c.cfg.Window
	if welcome.Window > 0 {
		window = min(window, welcome.Window)
	}

	// window holds one token per frame in flight; an ack up to a frame's
	// last seq returns its token.
	type inflight struct{ last uint64 }
	var (
		fmu    sync.Mutex
		flying []inflight
	)
	acked := make(chan struct{}, 1)
	errc := make(chan error, 2)

	go func() { // reader
		for {
			rctx, rcancel := context.WithTimeout(ctx, 3*interval)
			typ, body, err := readFrame(rctx, ws)
			rcancel()
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					err = errors.New("console heartbeat timeout")
				}
				errc <- err
				return
			}
			switch b := body.(type) {
			case *bulwarkv1.Ack:
				if err := c.cfg.Outbox.Acked(b.Seq); err != nil {
					errc <- fmt.Errorf("apply ack %d: %w", b.Seq, err)
					return
				}
				fmu.Lock()
				for len(flying) > 0 && flying[0].last <= b.Seq {
					flying = flying[1:]
				}
				fmu.Unlock()
				select {
				case acked <- struct{}{}:
				default:
				}
			case *bulwarkv1.Policy:
				if err := c.cfg.OnPolicy(*b); err != nil {
					errc <- fmt.Errorf("apply policy revision %d: %w", b.Revision, err)
					return
				}
			case *bulwarkv1.Heartbeat:
			default:
				_ = ws.Close(websocket.StatusPolicyViolation, "unexpected "+typ)
				errc <- fmt.Errorf("%w: console sent %s", bulwarkv1.ErrFrame, typ)
				return
			}
		}
	}()

	go func() { // sender
		next := welcome.StoredSeq + 1
		hb := time.NewTicker(interval)
		defer hb.Stop()
		for {
			fmu.Lock()
			room := len(flying) < window
			fmu.Unlock()
			if room {
				evs, err := c.cfg.Outbox.Pending(next, c.cfg.BatchSize)
				if err != nil {
					errc <- fmt.Errorf("read spool: %w", err)
					return
				}
				if len(evs) > 0 {
					last := evs[len(evs)-1].Seq
					fmu.Lock()
					flying = append(flying, inflight{last})
					fmu.Unlock()
					if err := write(bulwarkv1.TypeEvents, bulwarkv1.Events{Events: evs}); err != nil {
						errc <- fmt.Errorf("send events: %w", err)
						return
					}
					next = last + 1
					continue
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-c.cfg.Outbox.Wake():
			case <-acked:
			case <-hb.C:
				if err := write(bulwarkv1.TypeHeartbeat, c.cfg.Heartbeat()); err != nil {
					errc <- fmt.Errorf("send heartbeat: %w", err)
					return
				}
			}
		}
	}()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		_ = ws.Close(websocket.StatusGoingAway, "defender shutting down")
		return ctx.Err()
	}
}

func readFrame(ctx context.Context, ws *websocket.Conn) (string, any, error) {
	mt, data, err := ws.Read(ctx)
	if err != nil {
		return "", nil, err
	}
	if mt != websocket.MessageText {
		return "", nil, fmt.Errorf("%w: binary frame", bulwarkv1.ErrFrame)
	}
	return bulwarkv1.Decode(data)
}
