// Package ringwait reads a BPF ring buffer from a goroutine that waits in
// Go's netpoller.
//
// cilium/ebpf's ringbuf.Reader waits in epoll_wait, a blocking system call:
// the goroutine keeps its thread, the runtime takes its P back, and each take
// back resets the runtime's monitor thread to polling every 20 µs. An idle
// Defender woke ~300 times a second for one such reader. Here the records are
// read without ever blocking (the reader's deadline is in the past), and the
// wait is on a non-blocking duplicate of the map's descriptor registered with
// the netpoller, which wakes the goroutine when the kernel signals the ring
// buffer, at a deadline, or when the reader is closed.
package ringwait

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// pollEvery is how often Wait looks at a ring buffer whose descriptor the
// netpoller refused (not seen on Linux; kept so a refusal slows, not stops).
const pollEvery = 50 * time.Millisecond

// Reader reads one ring buffer map. Read and Wait are for one goroutine;
// Close may be called from any.
type Reader struct {
	rd   *ringbuf.Reader
	file *os.File
	rc   syscall.RawConn

	mu   sync.RWMutex // held for writing while Close runs: AvailableBytes reads the mapping
	gone bool
}

// New opens a reader of m, a BPF_MAP_TYPE_RINGBUF map.
func New(m *ebpf.Map) (*Reader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	rd.SetDeadline(time.Unix(1, 0))                                    // ReadInto never blocks
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0) //nolint:gosec // G115: a file descriptor
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		rd.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	file := os.NewFile(uintptr(fd), "ring buffer "+m.String()) //nolint:gosec // G115: a file descriptor
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		rd.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	return &Reader{rd: rd, file: file, rc: rc}, nil
}

// Read reads the next record into rec without blocking. ok is false when
// the ring buffer is empty; after Close, err is os.ErrClosed.
func (r *Reader) Read(rec *ringbuf.Record) (ok bool, err error) {
	err = r.rd.ReadInto(rec)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, nil
	}
	return false, err
}

// Wait returns when records are pending, at deadline (none when zero), when
// ctx ends (with its error) or once the reader is closed (os.ErrClosed).
// The kernel signals the ring buffer as its producers ask (a program that
// submits with BPF_RB_NO_WAKEUP is only seen at the deadline).
func (r *Reader) Wait(ctx context.Context, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.file.SetReadDeadline(deadline); errors.Is(err, os.ErrNoDeadline) {
		return r.sleep(ctx, deadline)
	} else if err != nil {
		return r.closed(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = r.file.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err := r.rc.Read(func(uintptr) bool { return r.pending() })
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		if r.isGone() {
			return os.ErrClosed
		}
		return nil
	}
	return r.closed(err)
}

// sleep stands in for Wait when the netpoller refused the descriptor.
func (r *Reader) sleep(ctx context.Context, deadline time.Time) error {
	d := pollEvery
	if !deadline.IsZero() {
		d = min(d, time.Until(deadline))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if r.isGone() {
		return os.ErrClosed
	}
	return nil
}

func (r *Reader) closed(err error) error {
	if r.isGone() || errors.Is(err, os.ErrClosed) {
		return os.ErrClosed
	}
	return fmt.Errorf("wait for the ring buffer: %w", err)
}

func (r *Reader) pending() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gone || r.rd.AvailableBytes() > 0
}

func (r *Reader) isGone() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.gone
}

// Close ends the reader; a Wait in progress returns os.ErrClosed.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return nil
	}
	r.gone = true
	err := r.rd.Close()
	r.mu.Unlock()
	return errors.Join(err, r.file.Close())
}
