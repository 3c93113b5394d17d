package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// payload is the data the tests store under seq: its decimal form, padded
// to size bytes when size is larger.
func payload(seq uint64, size int) []byte {
	b := strconv.AppendUint(nil, seq, 10)
	for len(b) < size {
		b = append(b, '.')
	}
	return b
}

func open(tb testing.TB, dir string, opts Options) *Spool {
	tb.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%s) error: %v", dir, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// appendN appends n records of size bytes in batches of batch.
func appendN(tb testing.TB, s *Spool, n, batch, size int) {
	tb.Helper()
	for n > 0 {
		k := min(n, batch)
		next := s.Stats().NextSeq
		data := make([][]byte, k)
		for i := range data {
			data[i] = payload(next+uint64(i), size)
		}
		first, last, err := s.Append(data...)
		if err != nil {
			tb.Fatalf("Append(%d records) error: %v", k, err)
		}
		if first != next || last != next+uint64(k)-1 {
			tb.Fatalf("Append(%d records) = %d, %d, want %d, %d", k, first, last, next, next+uint64(k)-1)
		}
		n -= k
	}
}

// readAll reads every record from seq from, a few at a time, and checks
// that each holds its payload.
func readAll(tb testing.TB, s *Spool, from uint64) []Record {
	tb.Helper()
	var all []Record
	for {
		recs, err := s.Read(from, 37, 0)
		if err != nil {
			tb.Fatalf("Read(%d) error: %v", from, err)
		}
		if len(recs) == 0 {
			return all
		}
		for _, r := range recs {
			if want := strconv.FormatUint(r.Seq, 10); !bytes.HasPrefix(r.Data, []byte(want)) ||
				(len(r.Data) > len(want) && r.Data[len(want)] != '.') {
				tb.Fatalf("record %d holds %.40q, want payload %q", r.Seq, r.Data, want)
			}
		}
		all = append(all, recs...)
		from = recs[len(recs)-1].Seq + 1
	}
}

func seqs(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}

func segFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

func dirBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestAppendReadAck(t *testing.T) {
	s := open(t, t.TempDir(), Options{NoSync: true, SegmentBytes: 1 << 10, MaxBytes: 1 << 20})
	if first, last, err := s.Append(); first != 0 || last != 0 || err != nil {
		t.Errorf("Append() = %d, %d, %v, want 0, 0, nil", first, last, err)
	}
	appendN(t, s, 100, 7, 20) // 36 bytes each: 28 to a segment, so four of them

	tests := []struct {
		name                 string
		from                 uint64
		maxRecords, maxBytes int
		want                 []uint64
	}{
		{"all", 0, 0, 0, seqRange(1, 100)},
		{"from 1", 1, 1000, 1 << 20, seqRange(1, 100)},
		{"max records", 1, 5, 0, seqRange(1, 5)},
		{"middle", 50, 3, 0, seqRange(50, 52)},
		{"across segments", 27, 4, 0, seqRange(27, 30)},
		{"max bytes", 10, 0, 60, seqRange(10, 12)},
		{"max bytes below one record", 10, 0, 1, []uint64{10}},
		{"tail", 99, 10, 0, []uint64{99, 100}},
		{"past the end", 101, 10, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := s.Read(tc.from, tc.maxRecords, tc.maxBytes)
			if err != nil {
				t.Fatalf("Read(%d, %d, %d) error: %v", tc.from, tc.maxRecords, tc.maxBytes, err)
			}
			if got := seqs(recs); !slices.Equal(got, tc.want) {
				t.Errorf("Read(%d, %d, %d) seqs = %v, want %v", tc.from, tc.maxRecords, tc.maxBytes, got, tc.want)
			}
			for _, r := range recs {
				if want := payload(r.Seq, 20); !bytes.Equal(r.Data, want) {
					t.Errorf("record %d = %q, want %q", r.Seq, r.Data, want)
				}
			}
		})
	}

	if got := s.Stats(); got.NextSeq != 101 || got.Depth != 100 || got.AckedSeq != 0 {
		t.Errorf("Stats() = %+v, want NextSeq 101, Depth 100, AckedSeq 0", got)
	}
	if n := len(segFiles(t, s.dir)); n != 4 {
		t.Errorf("%d segment files, want 4", n)
	}
	if err := s.Ack(101); !errors.Is(err, ErrAckAhead) {
		t.Errorf("Ack(101) = %v, want ErrAckAhead", err)
	}
	if err := s.Ack(60); err != nil {
		t.Fatalf("Ack(60) error: %v", err)
	}
	if err := s.Ack(10); err != nil {
		t.Errorf("Ack(10) after Ack(60) = %v, want nil", err)
	}
	if got := s.Stats(); got.AckedSeq != 60 || got.Depth != 40 {
		t.Errorf("Stats() after Ack(60) = %+v, want AckedSeq 60, Depth 40", got)
	}
	// Records 1-56 filled two segments.
	if got, want := segFiles(t, s.dir), []string{"00000000000000000057.seg", "00000000000000000085.seg"}; !slices.Equal(got, want) {
		t.Errorf("segments after Ack(60) = %v, want %v", got, want)
	}
	if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(57, 100)) {
		t.Errorf("Read(1) after Ack(60) = %v, want 57…100", got)
	}
	// The newest segment stays even when all of it is acknowledged.
	if err := s.Ack(100); err != nil {
		t.Fatalf("Ack(100) error: %v", err)
	}
	if got, want := segFiles(t, s.dir), []string{"00000000000000000085.seg"}; !slices.Equal(got, want) {
		t.Errorf("segments after Ack(100) = %v, want %v", got, want)
	}
	if got := s.Stats(); got.Depth != 0 {
		t.Errorf("Stats().Depth after Ack(100) = %d, want 0", got.Depth)
	}
	appendN(t, s, 1, 1, 20)
	if got := seqs(readAll(t, s, 101)); !slices.Equal(got, []uint64{101}) {
		t.Errorf("Read(101) = %v, want [101]", got)
	}
}

func TestAppendErrors(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{NoSync: true})
	if _, _, err := s.Append([]byte("ok"), make([]byte, MaxRecordBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append(too large) = %v, want ErrTooLarge", err)
	}
	if first, _, err := s.Append(make([]byte, MaxRecordBytes), nil); err != nil || first != 1 {
		t.Errorf("Append(1 MiB, empty) = %d, %v, want 1, nil: a rejected batch takes no seqs", first, err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() error: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if _, _, err := s.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Read(1, 1, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack after Close = %v, want ErrClosed", err)
	}
	for _, opts := range []Options{{MaxBytes: 1 << 20, SegmentBytes: 1 << 20}, {MaxBytes: -1}} {
		if _, err := Open(t.TempDir(), opts); err == nil {
			t.Errorf("Open(%+v) succeeded, want an error", opts)
		}
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10, MaxBytes: 1 << 20}
	s := open(t, dir, opts)
	appendN(t, s, 100, 10, 20)
	if err := s.Ack(60); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What Ack(60) deleted stays deleted, and an acked segment that a crash
	// kept Ack from deleting goes at Open.
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, opts)
	if got := s.Stats(); got != before {
		t.Errorf("Stats() after reopen = %+v, want %+v", got, before)
	}
	if got := seqs(readAll(t, s, 61)); !slices.Equal(got, seqRange(61, 100)) {
		t.Errorf("Read(61) after reopen = %v, want 61…100", got)
	}
	if got, want := segFiles(t, dir), []string{"00000000000000000061.seg", "00000000000000000081.seg"}; !slices.Equal(got, want) {
		t.Errorf("segments after reopen = %v, want %v", got, want)
	}
	appendN(t, s, 5, 5, 20)
	if got := s.Stats().NextSeq; got != 106 {
		t.Errorf("NextSeq = %d, want 106", got)
	}

	// With every segment acknowledged and the last one gone too, seqs still
	// continue from the state file.
	if err := s.Ack(105); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range segFiles(t, dir) {
		os.Remove(filepath.Join(dir, f))
	}
	s = open(t, dir, opts)
	if got := s.Stats(); got.NextSeq != 106 || got.AckedSeq != 105 || got.Dropped != 0 {
		t.Errorf("Stats() without segments = %+v, want NextSeq 106, AckedSeq 105, Dropped 0", got)
	}
	appendN(t, s, 1, 1, 20)
}

func TestSkipTo(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10, MaxBytes: 1 << 20}
	s := open(t, dir, opts)
	appendN(t, s, 5, 5, 20)
	if err := s.SkipTo(3); err != nil {
		t.Fatalf("SkipTo(3) error: %v", err)
	}
	if got := s.Stats().NextSeq; got != 6 {
		t.Errorf("NextSeq after SkipTo(3) = %d, want 6", got)
	}
	if err := s.SkipTo(100); err != nil {
		t.Fatalf("SkipTo(100) error: %v", err)
	}
	appendN(t, s, 3, 3, 20) // payloads match seqs: 100…102
	want := append(seqRange(1, 5), seqRange(100, 102)...)
	if got := seqs(readAll(t, s, 0)); !slices.Equal(got, want) {
		t.Errorf("Read(0) after SkipTo(100) = %v, want %v", got, want)
	}
	for i := range 2 { // a crash before the Ack; and Open does not count the skip twice
		s.Close()
		s = open(t, dir, opts)
		if st := s.Stats(); st.NextSeq != 103 || st.Dropped != 0 || st.Depth != 8 {
			t.Errorf("reopen %d: Stats() = %+v, want NextSeq 103, Dropped 0, Depth 8", i, st)
		}
	}
	if err := s.Ack(101); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); !slices.Equal(got, []string{"00000000000000000100.seg"}) {
		t.Errorf("segments after Ack(101) = %v, want only the one from 100", got)
	}
}

// TestTornTail cuts or pads the last segment as a crash during an Append
// would leave it.
func TestTornTail(t *testing.T) {
	const size = 20 // 36-byte records
	tests := []struct {
		name      string
		tamper    func([]byte) []byte
		wantLast  uint64
		wantTrunc int64
	}{
		{"intact", func(b []byte) []byte { return b }, 10, 0},
		{"cut in data", func(b []byte) []byte { return b[:len(b)-5] }, 9, 31},
		{"cut in header", func(b []byte) []byte { return b[:len(b)-30] }, 9, 6},
		{"cut at a boundary", func(b []byte) []byte { return b[:len(b)-36] }, 9, 0},
		{"zeroes after", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, 10, 4096},
		{"bad checksum", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, 9, 36},
		{"all cut", func(b []byte) []byte { return b[:7] }, 0, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, Options{})
			appendN(t, s, 10, 3, size)
			s.Close()
			path := filepath.Join(dir, "00000000000000000001.seg")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.tamper(b), 0o600); err != nil {
				t.Fatal(err)
			}
			// The state file says nothing about the records (written at Open
			// and Close, NextSeq 11): what a crash leaves after Append is
			// modelled by starting the state over.
			if err := os.Remove(filepath.Join(dir, stateName)); err != nil {
				t.Fatal(err)
			}

			s = open(t, dir, Options{})
			st := s.Stats()
			if st.NextSeq != tc.wantLast+1 || st.Recovered.TruncatedBytes != tc.wantTrunc || st.Dropped != 0 {
				t.Errorf("Stats() = %+v, want NextSeq %d, TruncatedBytes %d, Dropped 0", st, tc.wantLast+1, tc.wantTrunc)
			}
			if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(1, tc.wantLast)) {
				t.Errorf("Read(1) = %v, want 1…%d", got, tc.wantLast)
			}
			appendN(t, s, 3, 3, size)
			if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(1, tc.wantLast+3)) {
				t.Errorf("Read(1) after Append = %v, want 1…%d", got, tc.wantLast+3)
			}
			s.Close()
			s = open(t, dir, Options{})
			if got := s.Stats(); got.NextSeq != tc.wantLast+4 || got.Recovered.TruncatedBytes != 0 {
				t.Errorf("Stats() after second reopen = %+v, want NextSeq %d and nothing truncated", got, tc.wantLast+4)
			}
		})
	}
}

func TestCorruptOlderSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 10, MaxBytes: 1 << 20, NoSync: true}
	s := open(t, dir, opts)
	appendN(t, s, 100, 1, 20) // segments of 28 records: 1, 29, 57, 85
	if err := s.Ack(3); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Flip a data byte of record 36 (the 8th of the second segment).
	path := filepath.Join(dir, "00000000000000000029.seg")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[7*36+headerSize+1] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	for i := range 2 { // the loss is counted once
		s = open(t, dir, opts)
		want := append(seqRange(1, 35), seqRange(57, 100)...)
		if got := seqs(readAll(t, s, 0)); !slices.Equal(got, want) {
			t.Errorf("open %d: Read(0) = %v, want %v", i, got, want)
		}
		st := s.Stats()
		if st.Dropped != 21 || st.Depth != uint64(len(want)-3) {
			t.Errorf("open %d: Stats() = %+v, want Dropped 21 (36…56), Depth %d", i, st, len(want)-3)
		}
		if wantCorrupt := int64(i-1) * -21 * 36; st.Recovered.CorruptBytes != wantCorrupt {
			t.Errorf("open %d: CorruptBytes = %d, want %d", i, st.Recovered.CorruptBytes, wantCorrupt)
		}
		s.Close()
	}

	// A segment whose first record is bad goes entirely.
	path = filepath.Join(dir, "00000000000000000057.seg")
	b, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, opts)
	if got := s.Stats().Dropped; got != 21+28 {
		t.Errorf("Dropped = %d, want %d", got, 21+28)
	}
	if got := segFiles(t, dir); slices.Contains(got, "00000000000000000057.seg") {
		t.Errorf("segments = %v, want the corrupt one gone", got)
	}
}

func TestBound(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxBytes: 64 << 10, SegmentBytes: 8 << 10}
	s := open(t, dir, opts)
	const size = 200
	var written int
	for written < 1<<20 {
		n := 1 + rand.IntN(20)
		appendN(t, s, n, n, size)
		written += n * (headerSize + size)
		if got := dirBytes(t, dir); got > opts.MaxBytes+opts.SegmentBytes {
			t.Fatalf("after %d bytes appended the spool holds %d bytes, want at most %d", written, got, opts.MaxBytes+opts.SegmentBytes)
		}
	}
	check := func(s *Spool) {
		t.Helper()
		recs := readAll(t, s, 1)
		st := s.Stats()
		if st.Dropped == 0 || st.Dropped != st.NextSeq-1-uint64(len(recs)) {
			t.Errorf("Dropped = %d, want %d (appended %d, readable %d)", st.Dropped, st.NextSeq-1-uint64(len(recs)), st.NextSeq-1, len(recs))
		}
		if got := seqs(recs); !slices.Equal(got, seqRange(got[0], st.NextSeq-1)) {
			t.Errorf("readable seqs are not the newest ones in a run: %v", got)
		}
		if st.Depth != uint64(len(recs)) || st.Bytes > opts.MaxBytes {
			t.Errorf("Stats() = %+v, want Depth %d and Bytes at most %d", st, len(recs), opts.MaxBytes)
		}
	}
	check(s)
	dropped := s.Stats().Dropped
	s.Close()
	s = open(t, dir, opts)
	if got := s.Stats().Dropped; got != dropped {
		t.Errorf("Dropped after reopen = %d, want %d", got, dropped)
	}
	check(s)

	// Acknowledged records that the bound removes are not dropped.
	if err := s.Ack(s.Stats().NextSeq - 1); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 2000, 10, size)
	if got := s.Stats().Dropped; got != dropped+2000-s.Stats().Depth {
		t.Errorf("Dropped = %d, want %d", got, dropped+2000-s.Stats().Depth)
	}
}

// TestConcurrent has one goroutine append while another reads and acks, as
// the Defender does.
func TestConcurrent(t *testing.T) {
	for _, noSync := range []bool{true, false} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			testConcurrent(t, Options{NoSync: noSync, SegmentBytes: 16 << 10, MaxBytes: 64 << 20})
		})
	}
	t.Run("SyncEvery=2ms", func(t *testing.T) {
		testConcurrent(t, Options{SyncEvery: 2 * time.Millisecond, SegmentBytes: 16 << 10, MaxBytes: 64 << 20})
	})
}

func testConcurrent(t *testing.T, opts Options) {
	s := open(t, t.TempDir(), opts)
	const total = 10000
	errc := make(chan error, 1)
	go func() {
		var seq uint64 = 1
		for seq <= total {
			n := min(1+rand.IntN(50), total-int(seq)+1)
			data := make([][]byte, n)
			for i := range data {
				data[i] = payload(seq+uint64(i), 50)
			}
			if _, _, err := s.Append(data...); err != nil {
				errc <- err
				return
			}
			seq += uint64(n)
		}
		errc <- nil
	}()

	next := uint64(1)
	timeout := time.After(30 * time.Second)
	for next <= total {
		recs, err := s.Read(next, 1+rand.IntN(200), 0)
		if err != nil {
			t.Fatalf("Read(%d) error: %v", next, err)
		}
		for _, r := range recs {
			if r.Seq != next || !bytes.Equal(r.Data, payload(next, 50)) {
				t.Fatalf("got record %d %q, want %d %q", r.Seq, r.Data, next, payload(next, 50))
			}
			next++
		}
		if len(recs) > 0 {
			if err := s.Ack(next - 1); err != nil {
				t.Fatalf("Ack(%d) error: %v", next-1, err)
			}
			continue
		}
		select {
		case <-s.Notify():
		case <-timeout:
			t.Fatalf("timed out waiting for record %d", next)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("Append error: %v", err)
	}
	if st := s.Stats(); st.Depth != 0 || st.NextSeq != total+1 || st.Dropped != 0 {
		t.Errorf("Stats() = %+v, want Depth 0, NextSeq %d, Dropped 0", st, total+1)
	}
}

const crashEnv = "BULWARK_SPOOL_CRASH_DIR"

// TestCrashHelper is the child of TestCrash: it appends until killed and
// prints the last seq of each Append once it has returned.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	every, _ := time.ParseDuration(os.Getenv(crashEnv + "_SYNC_EVERY"))
	s, err := Open(dir, Options{SegmentBytes: 16 << 10, MaxBytes: 1 << 30, SyncEvery: every})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	next := s.Stats().NextSeq
	for {
		data := make([][]byte, 1+rand.IntN(10))
		for i := range data {
			data[i] = payload(next+uint64(i), 0)
		}
		_, last, err := s.Append(data...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		next = last + 1
		fmt.Fprintln(os.Stdout, last) // one write(2), unbuffered
	}
}

// TestCrash kills a process that is appending and checks that everything
// Append returned survived: fsynced or, with SyncEvery, only written (a
// process's death does not take the page cache).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, every := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run("SyncEvery="+every.String(), func(t *testing.T) { testCrash(t, every) })
	}
}

func testCrash(t *testing.T, every time.Duration) {
	dir := t.TempDir()
	for round := range 3 { // each round continues the previous one's spool
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashEnv+"_SYNC_EVERY="+every.String())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var printed []uint64
		done := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				seq, err := strconv.ParseUint(sc.Text(), 10, 64)
				if err != nil {
					continue // a line cut by the kill
				}
				printed = append(printed, seq)
			}
			done <- sc.Err()
		}()
		time.Sleep(200 * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill child %d: %v", cmd.Process.Pid, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("child exited with %v, want killed; stderr:\n%s", err, stderr.String())
		}
		if len(printed) == 0 {
			t.Fatalf("round %d: child printed nothing; stderr:\n%s", round, stderr.String())
		}

		s, err := Open(dir, Options{SegmentBytes: 16 << 10, MaxBytes: 1 << 30})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		recs := readAll(t, s, 0) // checks payloads
		got := seqs(recs)
		if len(got) == 0 || got[0] != 1 || !slices.Equal(got, seqRange(1, got[len(got)-1])) {
			t.Fatalf("round %d: seqs after kill are not 1…n without gaps or duplicates: %v", round, got)
		}
		lastPrinted := printed[len(printed)-1]
		if lastSeq := got[len(got)-1]; lastSeq < lastPrinted {
			t.Fatalf("round %d: child printed %d but only 1…%d survived", round, lastPrinted, lastSeq)
		}
		st := s.Stats()
		if st.NextSeq != got[len(got)-1]+1 || st.Dropped != 0 {
			t.Errorf("round %d: Stats() = %+v, want NextSeq %d, Dropped 0", round, st, got[len(got)-1]+1)
		}
		if first, _, err := s.Append([]byte(strconv.FormatUint(st.NextSeq, 10))); err != nil || first != st.NextSeq {
			t.Errorf("round %d: Append after kill = %d, %v, want %d", round, first, err, st.NextSeq)
		}
		t.Logf("round %d: %d appends printed, last %d; %d records; truncated %d bytes",
			round, len(printed), lastPrinted, len(got), st.Recovered.TruncatedBytes)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzOpen opens a spool whose first segment holds the fuzzed bytes, with or
// without a valid segment after it.
func FuzzOpen(f *testing.F) {
	seed := func(n int, tamper func([]byte) []byte) []byte {
		dir := f.TempDir()
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			f.Fatal(err)
		}
		appendN(f, s, n, 3, 5)
		s.Close()
		b, err := os.ReadFile(filepath.Join(dir, "00000000000000000001.seg"))
		if err != nil {
			f.Fatal(err)
		}
		return tamper(b)
	}
	same := func(b []byte) []byte { return b }
	f.Add(seed(5, same), false)
	f.Add(seed(5, same), true)
	f.Add(seed(5, func(b []byte) []byte { return b[:len(b)-3] }), false)
	f.Add(seed(5, func(b []byte) []byte { b[30] ^= 1; return b }), true)
	f.Add([]byte{}, true)

	const nextName = 1 << 20 // the following segment's first seq
	f.Fuzz(func(t *testing.T, seg []byte, more bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		if more {
			var b []byte
			for i := range uint64(3) {
				b = appendFrame(b, nextName+i, []byte("more"))
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", uint64(nextName))), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(dir, Options{NoSync: true})
		if err != nil {
			t.Fatalf("Open error: %v", err)
		}
		defer s.Close()
		recs, err := s.Read(0, 0, 0)
		if err != nil {
			t.Fatalf("Read error: %v", err)
		}

		// The records are the valid frames at the start of the fuzzed bytes,
		// then the following segment's.
		want := validPrefix(seg)
		if more {
			want = slices.DeleteFunc(want, func(r Record) bool { return r.Seq >= nextName })
			for i := range uint64(3) {
				want = append(want, Record{Seq: nextName + i, Data: []byte("more")})
			}
		}
		if len(recs) != len(want) {
			t.Fatalf("Read returned %d records, want %d", len(recs), len(want))
		}
		for i := range recs {
			if recs[i].Seq != want[i].Seq || !bytes.Equal(recs[i].Data, want[i].Data) {
				t.Fatalf("record %d = %d %q, want %d %q", i, recs[i].Seq, recs[i].Data, want[i].Seq, want[i].Data)
			}
		}
		st := s.Stats()
		if st.Dropped != st.NextSeq-1-uint64(len(recs)) || st.Depth != uint64(len(recs)) {
			t.Fatalf("Stats() = %+v with %d records readable", st, len(recs))
		}
		if first, _, err := s.Append([]byte("x")); err != nil || first != st.NextSeq {
			t.Fatalf("Append after Open = %d, %v, want %d", first, err, st.NextSeq)
		}
	})
}

// appendFrame frames a record as the format says.
func appendFrame(b []byte, seq uint64, data []byte) []byte {
	var h [headerSize]byte
	le := func(i int, v uint64, n int) {
		for j := range n {
			h[i+j] = byte(v >> (8 * j))
		}
	}
	le(0, uint64(len(data)), 4)
	le(8, seq, 8)
	le(4, uint64(checksum(h[8:16], data)), 4)
	return append(append(b, h[:]...), data...)
}

// validPrefix decodes b from the start as long as the frames are whole, have
// consecutive seqs from 1 and the right CRC: the records Open must keep.
func validPrefix(b []byte) []Record {
	var out []Record
	for seq := uint64(1); len(b) >= headerSize; seq++ {
		n, sum, got := parseHeader(b)
		if got != seq || n > MaxRecordBytes || uint64(len(b)-headerSize) < uint64(n) {
			break
		}
		data := b[headerSize : headerSize+int(n)]
		if checksum(b[8:16], data) != sum {
			break
		}
		out = append(out, Record{Seq: seq, Data: data})
		b = b[headerSize+int(n):]
	}
	return out
}

func BenchmarkAppend(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoSync=%v", noSync), func(b *testing.B) {
			s := open(b, b.TempDir(), Options{NoSync: noSync})
			batch := make([][]byte, 100)
			for i := range batch {
				batch[i] = bytes.Repeat([]byte{'e'}, 200)
			}
			b.SetBytes(100 * 200)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Append(batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/record")
		})
	}
}

func BenchmarkRead(b *testing.B) {
	s := open(b, b.TempDir(), Options{NoSync: true})
	const n = 100000
	appendN(b, s, n, 1000, 200)
	b.SetBytes(1000 * 200)
	b.ReportAllocs()
	from := uint64(1)
	for b.Loop() {
		recs, err := s.Read(from, 1000, 0)
		if err != nil || len(recs) != 1000 {
			b.Fatalf("Read(%d) = %d records, %v", from, len(recs), err)
		}
		from += 1000
		if from > n {
			from = 1
		}
	}
}

// TestAckWrites: an Ack that deletes no segment writes the state file at
// most every ackWriteEvery, one that deletes a segment always writes it
// first, and Close writes the last mark.
func TestAckWrites(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 1 << 10, MaxBytes: 1 << 20})
	appendN(t, s, 100, 10, 20) // 20 records per segment
	onDisk := func() uint64 {
		t.Helper()
		st, err := readState(filepath.Join(dir, stateName))
		if err != nil {
			t.Fatal(err)
		}
		return st.acked
	}
	ack := func(seq uint64) {
		t.Helper()
		if err := s.Ack(seq); err != nil {
			t.Fatalf("Ack(%d): %v", seq, err)
		}
		if got := s.Stats().AckedSeq; got != seq {
			t.Fatalf("Stats().AckedSeq after Ack(%d) = %d", seq, got)
		}
	}
	ack(5)
	if got := onDisk(); got != 5 {
		t.Errorf("acked on disk after the first Ack(5) = %d, want 5", got)
	}
	ack(8) // within ackWriteEvery, no segment deleted
	if got := onDisk(); got != 5 {
		t.Errorf("acked on disk after Ack(8) right after = %d, want 5 (not written yet)", got)
	}
	ack(30) // deletes the first segment: the mark must be on disk first
	if got := onDisk(); got != 30 {
		t.Errorf("acked on disk after Ack(30), which deleted a segment = %d, want 30", got)
	}
	if got := segFiles(t, dir); slices.Contains(got, "00000000000000000001.seg") {
		t.Errorf("segments after Ack(30) = %v, want the first one deleted", got)
	}
	ack(33)
	s.ackWritten = time.Now().Add(-ackWriteEvery) // as if a second had passed
	ack(35)
	if got := onDisk(); got != 35 {
		t.Errorf("acked on disk after Ack(35) a second later = %d, want 35", got)
	}
	ack(36)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); got != 36 {
		t.Errorf("acked on disk after Close = %d, want 36", got)
	}
}

// TestSyncEvery: with SyncEvery, an Append soon after an fsync leaves its
// records written but unread until the timer's fsync; SkipTo and Close
// publish what is pending first; a reopened spool has it all.
func TestSyncEvery(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SyncEvery: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	app := func(want uint64, n int) {
		t.Helper()
		data := make([][]byte, n)
		for i := range data {
			data[i] = payload(want+uint64(i), 10)
		}
		if first, last, err := s.Append(data...); err != nil || first != want || last != want+uint64(n)-1 {
			t.Fatalf("Append(%d records) = %d, %d, %v; want %d, %d", n, first, last, err, want, want+uint64(n)-1)
		}
	}
	app(1, 3) // the first fsync is due at once
	if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(1, 3)) {
		t.Fatalf("after the first Append, Read = %v, want 1…3", got)
	}
	<-s.Notify()
	app(4, 2) // within SyncEvery of that fsync: written, not yet readable
	app(6, 1)
	if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(1, 3)) {
		t.Errorf("before the timer's fsync, Read = %v, want 1…3 only", got)
	}
	if st := s.Stats(); st.NextSeq != 7 || st.Unsynced != 3 || st.Depth != 6 {
		t.Errorf("before the timer's fsync, Stats() = %+v, want NextSeq 7, Unsynced 3, Depth 6", st)
	}
	select {
	case <-s.Notify():
	case <-time.After(10 * time.Second):
		t.Fatal("no Notify after SyncEvery")
	}
	if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(1, 6)) {
		t.Fatalf("after the timer's fsync, Read = %v, want 1…6", got)
	}
	if st := s.Stats(); st.NextSeq != 7 || st.Unsynced != 0 {
		t.Errorf("after the timer's fsync, Stats() = %+v, want NextSeq 7, Unsynced 0", st)
	}

	app(7, 2) // pending again; SkipTo publishes it before skipping
	if err := s.SkipTo(100); err != nil {
		t.Fatal(err)
	}
	if got := seqs(readAll(t, s, 1)); !slices.Equal(got, seqRange(1, 8)) {
		t.Errorf("after SkipTo, Read = %v, want 1…8", got)
	}
	app(100, 1)
	app(101, 1) // pending at Close
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	if got, want := seqs(readAll(t, s, 1)), append(seqRange(1, 8), 100, 101); !slices.Equal(got, want) {
		t.Errorf("reopened: Read = %v, want %v", got, want)
	}
	if st := s.Stats(); st.NextSeq != 102 || st.Dropped != 0 {
		t.Errorf("reopened: Stats() = %+v, want NextSeq 102, Dropped 0", st)
	}
}
