package ringwait

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// producer is a ring buffer and a socket filter that writes one 8-byte
// record to it (the value in the program's first stack slot) each time it is
// run through BPF_PROG_TEST_RUN.
type producer struct {
	ring *ebpf.Map
	prog *ebpf.Program
}

func newProducer(t *testing.T, flags int32) *producer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ringwait tests load an eBPF program: run them as root (they run in CI)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Fatalf("ring buffer map: %v", err)
	}
	t.Cleanup(func() { ring.Close() })
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0x5eed),
			asm.StoreMem(asm.R10, -8, asm.R1, asm.DWord),
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, flags),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("producer program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return &producer{ring: ring, prog: prog}
}

func (p *producer) emit(t *testing.T) {
	t.Helper()
	if _, err := p.prog.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		t.Fatalf("run producer: %v", err)
	}
}

func newReader(t *testing.T, p *producer) *Reader {
	t.Helper()
	r, err := New(p.ring)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestReadNeverBlocks(t *testing.T) {
	p := newProducer(t, 0)
	r := newReader(t, p)
	var rec ringbuf.Record
	if ok, err := r.Read(&rec); ok || err != nil {
		t.Fatalf("Read on an empty ring = %v, %v; want false, nil", ok, err)
	}
	p.emit(t)
	p.emit(t)
	for i := range 2 {
		ok, err := r.Read(&rec)
		if !ok || err != nil {
			t.Fatalf("record %d: Read = %v, %v", i, ok, err)
		}
		if got := binary.NativeEndian.Uint64(rec.RawSample); got != 0x5eed {
			t.Fatalf("record %d = %#x, want 0x5eed", i, got)
		}
	}
	if ok, err := r.Read(&rec); ok || err != nil {
		t.Fatalf("Read after draining = %v, %v; want false, nil", ok, err)
	}
}

func TestWaitWakesOnRecord(t *testing.T) {
	p := newProducer(t, 0)
	r := newReader(t, p)
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background(), time.Time{}) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v on an empty ring with no deadline", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.emit(t) // default flags: the kernel wakes a consumer that has caught up
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wait = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a record was written")
	}
	var rec ringbuf.Record
	if ok, err := r.Read(&rec); !ok || err != nil {
		t.Fatalf("Read after the wakeup = %v, %v", ok, err)
	}
	// A record already pending: Wait returns at once.
	p.emit(t)
	if err := r.Wait(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Wait with a record pending = %v", err)
	}
}

func TestWaitDeadlineSeesUnsignalledRecords(t *testing.T) {
	const noWakeup = 1 // BPF_RB_NO_WAKEUP
	p := newProducer(t, noWakeup)
	r := newReader(t, p)
	var rec ringbuf.Record
	start := time.Now()
	if err := r.Wait(context.Background(), start.Add(50*time.Millisecond)); err != nil {
		t.Fatalf("Wait to the deadline = %v", err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Fatalf("Wait returned after %s, before its 50ms deadline", took)
	}
	p.emit(t)
	if err := r.Wait(context.Background(), time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if ok, err := r.Read(&rec); !ok || err != nil {
		t.Fatalf("a record written without a wakeup is read after the deadline: Read = %v, %v", ok, err)
	}
}

func TestWaitEnds(t *testing.T) {
	p := newProducer(t, 0)
	t.Run("context", func(t *testing.T) {
		r := newReader(t, p)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Wait(ctx, time.Time{}) }()
		time.Sleep(20 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait after cancel = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return when its context ended")
		}
	})
	t.Run("close", func(t *testing.T) {
		r := newReader(t, p)
		done := make(chan error, 1)
		go func() { done <- r.Wait(context.Background(), time.Time{}) }()
		time.Sleep(20 * time.Millisecond)
		if err := r.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrClosed) {
				t.Fatalf("Wait after Close = %v, want os.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return when the reader closed")
		}
		var rec ringbuf.Record
		if _, err := r.Read(&rec); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close = %v, want os.ErrClosed", err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	})
}
