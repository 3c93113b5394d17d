package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"bulwark/api/shimv1"
)

// Decider decides whether a container may be created. It must answer
// quickly: the container engine waits. The server writes the decision to
// the shim and then calls done (when not nil) with the write's error (nil:
// the shim has it), so that recording the decision does not delay the
// container.
type Decider interface {
	Decide(ctx context.Context, req shimv1.Request) (d shimv1.Decision, done func(delivered error))
}

// DeciderFunc adapts a function that records nothing to Decider.
type DeciderFunc func(ctx context.Context, req shimv1.Request) shimv1.Decision

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, req shimv1.Request) (shimv1.Decision, func(error)) {
	return f(ctx, req), nil
}

// ServerConfig tunes a Server; zero fields take the defaults.
type ServerConfig struct {
	// Socket is the unix socket's path. Its directory is created with
	// mode 0700; the socket gets 0600 and only root peers are served.
	Socket string
	// ReadTimeout bounds reading one request (default 10 s).
	ReadTimeout time.Duration
	// MaxConcurrent bounds decisions in progress (default 64); further
	// shims wait in the listen backlog, and fail open at their timeout.
	MaxConcurrent int
	// AllowUID, for tests that do not run as root, is served besides
	// root. Nil: root only.
	AllowUID *int
}

// Server answers the shim on a unix socket.
type Server struct {
	cfg    ServerConfig
	ln     *net.UnixListener
	d      Decider
	logger *slog.Logger
	wg     sync.WaitGroup
	sem    chan struct{}
}

// Listen creates the socket. A stale socket (nobody listening) is replaced;
// a live one or anything else at the path is an error.
func Listen(cfg ServerConfig, d Decider, logger *slog.Logger) (*Server, error) {
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		return nil, fmt.Errorf("shim socket dir: %w", err)
	}
	if fi, err := os.Lstat(cfg.Socket); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("shim socket %s: exists and is not a socket", cfg.Socket)
		}
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(context.Background(), "unix", cfg.Socket); err == nil {
			c.Close()
			return nil, fmt.Errorf("shim socket %s: another process serves it", cfg.Socket)
		}
		if err := os.Remove(cfg.Socket); err != nil {
			return nil, fmt.Errorf("remove stale shim socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("shim socket: %w", err)
	}
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("shim socket: %w", err)
	}
	return &Server{cfg: cfg, ln: ln, d: d, logger: logger, sem: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// Serve answers until ctx ends, then waits for decisions in progress.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.logger.Warn("shim socket accept", slog.Any("err", err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			conn.Close()
			return nil
		}
		s.wg.Go(func() {
			defer func() { <-s.sem }()
			s.serve(ctx, conn)
		})
	}
}

// Close stops accepting and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Addr is the socket's path.
func (s *Server) Addr() string { return s.cfg.Socket }

func (s *Server) serve(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	uid, pid, err := peer(conn)
	if err != nil {
		s.logger.Warn("shim socket: peer credentials", slog.Any("err", err))
		return
	}
	if uid != 0 && (s.cfg.AllowUID == nil || uid != *s.cfg.AllowUID) {
		s.logger.Warn("shim socket: refused a peer that is not root", slog.Int("uid", uid), slog.Int("pid", pid))
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	b, err := io.ReadAll(io.LimitReader(conn, shimv1.MaxRequestBytes+1))
	if err != nil {
		s.logger.Warn("shim socket: read request", slog.Int("pid", pid), slog.Any("err", err))
		return
	}
	req, err := shimv1.DecodeRequest(b)
	if err != nil {
		// No answer: the shim fails open (or closed) and audits that.
		s.logger.Warn("shim socket: bad request", slog.Int("pid", pid), slog.Any("err", err))
		return
	}
	d, done := s.d.Decide(ctx, req)
	d.V = shimv1.Version
	out, err := encodeDecision(d)
	if err == nil {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err = conn.Write(out); err != nil {
			// The shim gave up waiting and audited a timeout itself.
			s.logger.Warn("shim socket: the shim did not wait for the decision", slog.String("container", req.ID), slog.String("verdict", d.Verdict), slog.Any("err", err))
		}
	}
	conn.Close() // the shim goes on now
	if done != nil {
		done(err)
	}
}

// peer returns the connecting process's uid and pid (SO_PEERCRED).
func peer(conn *net.UnixConn) (uid, pid int, err error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, os.NewSyscallError("getsockopt SO_PEERCRED", cerr)
	}
	return int(cred.Uid), int(cred.Pid), nil
}
