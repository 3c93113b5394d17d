// Package spool is the Defender's on-disk event spool. The Defender appends
// every event here before sending it, the Console acknowledges a sequence
// number once it has committed everything up to it, and the Defender deletes
// only acknowledged data. After a crash or a reconnect the Defender resends
// from the first unacknowledged sequence number and the Console drops what it
// already has by (defender id, seq): events reach the store exactly once.
//
// # Guarantees
//
// Append returns once its records are written to the segment file, where a
// crash of the process cannot take them. Read returns only records that are
// also on disk (fsynced): a record that was sent can never be lost, and its
// sequence number can never be given to another record, by a crash of the
// process or of the host. Sequence numbers start at 1 and never go backwards,
// even when every segment has been deleted.
//
// With Options.SyncEvery zero every Append fsyncs (one write and one fsync per
// call, whatever the number of records) and its records are readable when it
// returns. With SyncEvery > 0 an Append fsyncs only when the last fsync is at
// least SyncEvery old; otherwise its records wait, written but not readable,
// for the fsync that a timer makes SyncEvery after the last one (or for the
// next Append past that time, or Close). A busy writer then costs the disk one
// fsync (a journal commit and a cache flush) per SyncEvery instead of one per
// Append, and its records reach the reader up to SyncEvery later; a host crash
// (power loss, kernel panic) takes up to SyncEvery of the newest records,
// which were never sent.
//
// The spool is bounded by Options.MaxBytes. When an Append would take it over
// the bound, the oldest segments are deleted first, acknowledged or not; the
// unacknowledged records among them are counted in Stats.Dropped, which is
// persisted and reported to the Console. Deletion is a segment at a time, so
// after dropping the spool may hold as little as MaxBytes-SegmentBytes. The
// bound is exceeded only by the active segment alone: one Append whose batch
// is larger than MaxBytes is still written whole.
//
// # On-disk format
//
// A spool is a directory holding:
//
//   - Segment files NNNNNNNNNNNNNNNNNNNN.seg, named by the sequence number of
//     their first record in 20-digit zero-padded decimal. Records are appended
//     to the newest (active) segment; a new segment is started when the next
//     batch would take the active one over Options.SegmentBytes. Within a
//     segment the sequence numbers are consecutive, starting at the name.
//   - Each record is framed as, little endian:
//     [u32 data length][u32 CRC-32C (Castagnoli) of seq||data][u64 seq][data].
//     The CRC covers the 8 seq bytes as stored, then the data. Data is at
//     most MaxRecordBytes (1 MiB).
//   - state, replaced atomically (write state.tmp, fsync, rename, fsync the
//     directory): the magic "bwspool1"; u64 next seq, acked seq, dropped
//     count and floor (segments wholly below it were deleted: one found at
//     Open is the remains of an interrupted deletion); u32 n and n pairs of
//     u64 [lo, hi), runs of seqs known to be missing and accounted for
//     (counted as dropped at an Open, or skipped by SkipTo); then a u32
//     CRC-32C of all the preceding bytes. Usually it is 48 bytes.
//   - LOCK: held with flock(2) while the spool is open, so two processes
//     cannot share a directory.
//
// On Open the segments are read in order and every record's CRC is checked.
// A torn or corrupt tail of the last segment (a crash during an Append) is
// truncated and reported in Stats.Recovered.TruncatedBytes; those records were
// never returned by Append. A corrupt record in an older segment ends that
// segment: the rest of it is discarded (Stats.Recovered.CorruptBytes) and the
// unacknowledged sequence numbers it held are added to Stats.Dropped, once.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits and defaults.
const (
	MaxRecordBytes      = 1 << 20   // largest Data a record may hold
	DefaultMaxBytes     = 256 << 20 // Options.MaxBytes when zero
	DefaultSegmentBytes = 8 << 20   // Options.SegmentBytes when zero (at most MaxBytes/4)
)

const (
	headerSize   = 16
	indexEvery   = 64 // one in-memory offset per this many records
	segSuffix    = ".seg"
	segNameLen   = 20
	stateName    = "state"
	stateTmpName = "state.tmp"
	lockName     = "LOCK"
)

// Errors callers may test for with errors.Is.
var (
	ErrClosed   = errors.New("spool closed")
	ErrTooLarge = errors.New("record too large")
	// ErrAckAhead: the seq acknowledged was never appended. When it comes
	// from the Console, this spool has lost data the Console has seen.
	ErrAckAhead = errors.New("ack beyond last appended seq")
	ErrCorrupt  = errors.New("spool corrupt")
	ErrLocked   = errors.New("spool directory in use by another process")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configures a spool. The zero value is the production default.
type Options struct {
	// MaxBytes bounds the segments' total size (default 256 MiB). When an
	// Append would exceed it, the oldest segments are deleted, acknowledged or
	// not, and their unacknowledged records counted in Stats.Dropped.
	MaxBytes int64
	// SegmentBytes is the segment size at which a new one is started
	// (default 8 MiB, but at most MaxBytes/4); it must be less than MaxBytes.
	SegmentBytes int64
	// SyncEvery bounds how often Append fsyncs: zero, every call; otherwise
	// at most once per SyncEvery, records written in between becoming
	// readable at the next fsync (see Guarantees).
	SyncEvery time.Duration
	// NoSync skips every fsync. For tests and benchmarks only: a crash then
	// loses records that Append has returned.
	NoSync bool
}

// Record is one spooled event.
type Record struct {
	Seq  uint64
	Data []byte
}

// Stats describes a spool.
type Stats struct {
	NextSeq  uint64 // seq the next appended record will get
	Unsynced uint64 // appended, not yet fsynced and so not yet readable (Options.SyncEvery)
	AckedSeq uint64 // every seq up to this one is acknowledged
	Depth    uint64 // unacknowledged records, Unsynced included
	Bytes    int64  // total size of the segments
	// Dropped counts unacknowledged records ever lost to the size bound or
	// to corruption; it survives restarts.
	Dropped   uint64
	Recovered Recovery // what the last Open repaired
}

// Recovery is what Open cut from the segments to make them valid again.
type Recovery struct {
	// TruncatedBytes were a torn tail of the newest segment: an Append that a
	// crash interrupted, whose records were never returned or sent.
	TruncatedBytes int64
	// CorruptBytes were discarded from older segments after a bad record;
	// the records lost with them are counted in Stats.Dropped.
	CorruptBytes int64
}

// Spool is an open spool directory. It is safe for concurrent use; the
// intended use is one goroutine appending and another reading and acking.
type Spool struct {
	dir    string
	opts   Options
	lock   *os.File
	notify chan struct{}

	// Lock order: appendMu, then stateMu, then mu.

	// appendMu serializes Append and guards w.
	appendMu sync.Mutex
	w        struct {
		f    *os.File
		seg  *segment // nil: the next Append starts a segment
		size int64    // bytes written to seg, the pending ones included
		// pending are records written to seg and not yet fsynced, and so
		// not yet in it for readers.
		pending pending
		synced  time.Time   // when the last pending records were fsynced
		timer   *time.Timer // publishes the pending records SyncEvery after synced
		// published: seg is in Spool.segs. A new segment is added once its
		// first records are durable.
		published bool
		buf       []byte
		err       error // a failed fsync: the file's state is unknown
	}

	// stateMu serializes writing the state file and deleting segments, so
	// that the state on disk always covers the files that are gone.
	stateMu sync.Mutex
	// ackWritten is when Ack last wrote the state file (under stateMu).
	ackWritten time.Time

	// mu guards what follows. Read holds it while reading the files, so a
	// segment is never deleted under a reader.
	mu     sync.Mutex
	closed bool
	segs   []*segment // oldest first; each holds at least one record
	st     state      // st.next: the first seq not yet readable
	// written is the seq of the next record Append writes: st.next plus the
	// records pending in w. It changes under appendMu and mu both.
	written   uint64
	recovered Recovery
}

// segment is one segment file's valid records.
type segment struct {
	path  string
	first uint64  // seq in the name and of the first record
	n     uint64  // records
	size  int64   // bytes of the valid records
	index []int64 // index[i] is the offset of record first+i*indexEvery
	rf    *os.File
}

// pending are records the active segment holds but does not publish yet:
// the seqs from st.next to written.
type pending struct {
	size  int64
	index []int64 // offsets to add to segment.index
}

// end is the seq after the segment's last record.
func (g *segment) end() uint64 { return g.first + g.n }

// unackedAfter counts the segment's records with seq > acked.
func (g *segment) unackedAfter(acked uint64) uint64 {
	return overlap(g.first, g.end(), acked+1, ^uint64(0))
}

// overlap is the size of [a0, a1) ∩ [b0, b1).
func overlap(a0, a1, b0, b1 uint64) uint64 {
	lo, hi := max(a0, b0), min(a1, b1)
	if hi <= lo {
		return 0
	}
	return hi - lo
}

// Open opens the spool in dir, creating it if needed, and repairs what a
// crash left behind.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes < 0 || opts.SegmentBytes < 0 {
		return nil, fmt.Errorf("open spool %s: negative MaxBytes or SegmentBytes", dir)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = min(DefaultSegmentBytes, opts.MaxBytes/4)
	}
	if opts.SegmentBytes >= opts.MaxBytes || opts.SegmentBytes < headerSize {
		return nil, fmt.Errorf("open spool %s: SegmentBytes %d must be at least %d and less than MaxBytes %d",
			dir, opts.SegmentBytes, headerSize, opts.MaxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil { //nolint:gosec // the Defender's configuration chooses dir
		return nil, fmt.Errorf("open spool: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, lock: lock, notify: make(chan struct{}, 1)}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return s, nil
}

// recover loads the state, checks every segment and repairs them, and
// persists the result.
func (s *Spool) recover() error {
	if err := os.Remove(filepath.Join(s.dir, stateTmpName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	st, err := readState(filepath.Join(s.dir, stateName))
	if err != nil {
		return err
	}
	names, err := s.listSegments()
	if err != nil {
		return err
	}
	for k, first := range names {
		path := s.segPath(first)
		last := k == len(names)-1
		limit := ^uint64(0) // records must be below the next segment's name
		if !last {
			limit = names[k+1]
			// Wholly acknowledged, or dropped by the bound before a crash
			// interrupted the deletion: its records are accounted for.
			if limit-1 <= st.acked || limit <= st.floor {
				if err := os.Remove(path); err != nil {
					return err
				}
				continue
			}
		}
		g, fileSize, err := scanSegment(path, first, limit)
		if err != nil {
			return err
		}
		if cut := fileSize - g.size; cut > 0 {
			if last {
				s.recovered.TruncatedBytes += cut
			} else {
				s.recovered.CorruptBytes += cut
			}
			if g.n > 0 {
				if err := truncate(path, g.size, !s.opts.NoSync); err != nil {
					return err
				}
			}
		}
		if g.n == 0 {
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		s.segs = append(s.segs, g)
	}

	next := max(st.next, st.acked+1, st.floor, 1)
	if n := len(s.segs); n > 0 {
		next = max(next, s.segs[n-1].end())
	}
	// Every unacknowledged seq below next that is on disk nowhere, and was
	// not missing already at the last Open, was lost since: to corruption
	// or, with NoSync, to a crash.
	gaps := missing(s.segs, max(st.acked+1, st.floor), next)
	st.dropped += runsLen(gaps) - intersectLen(gaps, st.gaps)
	st.next, st.gaps = next, gaps
	s.st = st

	s.written = next
	// Keep appending to the last segment unless its records do not run up
	// to next (then the next Append starts a segment named next).
	if n := len(s.segs); n > 0 {
		g := s.segs[n-1]
		if g.end() == next && g.size < s.opts.SegmentBytes {
			f, err := os.OpenFile(g.path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			s.w.f, s.w.seg, s.w.size, s.w.published = f, g, g.size, true
		}
	}
	return writeState(s.dir, s.st, !s.opts.NoSync)
}

func (s *Spool) segPath(first uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", first, segSuffix))
}

// listSegments returns the segments' first seqs in order.
func (s *Spool) listSegments() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var names []uint64
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || len(base) != segNameLen || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil || first == 0 {
			continue
		}
		names = append(names, first)
	}
	slices.Sort(names)
	return names, nil
}

// scanSegment reads the valid records of a segment file: consecutive seqs
// from first, each below limit, with a good CRC. It stops at the first record
// that is not; an error is an I/O failure, never bad content.
func scanSegment(path string, first, limit uint64) (*segment, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	fileSize := fi.Size()
	g := &segment{path: path, first: first}
	br := bufio.NewReaderSize(f, 256<<10)
	var (
		hdr  [headerSize]byte
		data []byte
		off  int64
	)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			return nil, 0, err
		}
		n, sum, seq := parseHeader(hdr[:])
		if n > MaxRecordBytes || int64(n) > fileSize-off-headerSize || seq != g.end() || seq >= limit {
			break
		}
		if cap(data) < int(n) {
			data = make([]byte, n)
		}
		data = data[:n]
		if _, err := io.ReadFull(br, data); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			return nil, 0, err
		}
		if checksum(hdr[8:16], data) != sum {
			break
		}
		if (seq-first)%indexEvery == 0 {
			g.index = append(g.index, off)
		}
		g.n++
		off += headerSize + int64(n)
	}
	g.size = off
	return g, fileSize, nil
}

func parseHeader(h []byte) (n, sum uint32, seq uint64) {
	return binary.LittleEndian.Uint32(h[0:4]), binary.LittleEndian.Uint32(h[4:8]), binary.LittleEndian.Uint64(h[8:16])
}

// checksum is the CRC-32C of the stored seq bytes followed by data.
func checksum(seq []byte, data []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, seq), castagnoli, data)
}

func truncate(path string, size int64, sync bool) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if sync {
		return f.Sync()
	}
	return nil
}

// Append adds records with consecutive seqs and returns the first and last.
// It returns once they are written, and, unless Options.SyncEvery lets it
// leave that to later, on disk and readable: one write and one fsync for the
// whole call (starting a segment costs one more fsync, of the directory).
// With no data it does nothing and returns 0, 0. An error means none of the
// records were appended; after a failed fsync (here or by the timer) every
// later Append fails, and the records not yet readable stay unread until the
// spool is opened again.
func (s *Spool) Append(data ...[]byte) (first, last uint64, err error) {
	if len(data) == 0 {
		return 0, 0, nil
	}
	var batch int64
	for i, d := range data {
		if len(d) > MaxRecordBytes {
			return 0, 0, fmt.Errorf("append record %d of %d bytes (limit %d): %w", i, len(d), MaxRecordBytes, ErrTooLarge)
		}
		batch += headerSize + int64(len(d))
	}

	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, 0, ErrClosed
	}
	if s.w.err != nil {
		return 0, 0, s.w.err
	}
	first = s.written // only Append and SkipTo move it, under appendMu
	if err := s.makeRoom(batch + s.w.pending.size); err != nil {
		return 0, 0, fmt.Errorf("append: %w", err)
	}
	g := s.w.seg
	if g == nil || (s.w.size > 0 && s.w.size+batch > s.opts.SegmentBytes) {
		// The records pending in the old segment are published first:
		// they are the ones in the file the writer is about to close.
		if err := s.publish(); err != nil {
			return 0, 0, err
		}
		if g, err = s.startSegment(first); err != nil {
			return 0, 0, fmt.Errorf("append: %w", err)
		}
	}

	buf := slices.Grow(s.w.buf[:0], int(batch))
	var index []int64
	for i, d := range data {
		seq := first + uint64(i)
		if (seq-g.first)%indexEvery == 0 {
			index = append(index, s.w.size+int64(len(buf)))
		}
		at := len(buf)
		buf = append(buf, make([]byte, headerSize)...)
		h := buf[at : at+headerSize]
		binary.LittleEndian.PutUint32(h[0:4], uint32(len(d))) //nolint:gosec // at most MaxRecordBytes, checked above
		binary.LittleEndian.PutUint64(h[8:16], seq)
		binary.LittleEndian.PutUint32(h[4:8], checksum(h[8:16], d))
		buf = append(buf, d...)
	}
	if cap(buf) <= 4<<20 {
		s.w.buf = buf
	}
	// A failed write leaves garbage past s.w.size that the next Append
	// overwrites, or Open truncates.
	if _, err := s.w.f.WriteAt(buf, s.w.size); err != nil {
		return 0, 0, fmt.Errorf("append: %w", err)
	}
	s.w.size += batch
	s.mu.Lock()
	s.written = first + uint64(len(data))
	s.mu.Unlock()
	p := &s.w.pending
	p.size += batch
	p.index = append(p.index, index...)
	switch {
	case s.opts.SyncEvery <= 0 || time.Since(s.w.synced) >= s.opts.SyncEvery:
		if err := s.publish(); err != nil {
			return 0, 0, err
		}
	case s.w.timer == nil:
		s.w.timer = time.AfterFunc(time.Until(s.w.synced.Add(s.opts.SyncEvery)), s.publishLater)
	}
	return first, first + uint64(len(data)) - 1, nil
}

// publish fsyncs the records written since the last publish and makes them
// readable. The caller holds appendMu.
func (s *Spool) publish() error {
	if s.w.timer != nil {
		s.w.timer.Stop()
		s.w.timer = nil
	}
	// written and st.next move only under appendMu, which the caller holds.
	n := s.written - s.st.next
	if n == 0 {
		return nil
	}
	p := s.w.pending
	g := s.w.seg
	if !s.opts.NoSync {
		if err := s.w.f.Sync(); err != nil {
			// After a failed fsync the kernel may have dropped the dirty pages
			// and cleared the error; nothing written since can be trusted.
			s.w.err = fmt.Errorf("append: sync %s (reopen the spool): %w", g.path, err)
			return s.w.err
		}
	}
	s.w.synced = time.Now()
	s.mu.Lock()
	if !s.w.published {
		s.segs = append(s.segs, g)
		s.w.published = true
	}
	g.n += n
	g.size += p.size
	g.index = append(g.index, p.index...)
	s.st.next = s.written
	s.mu.Unlock()
	s.w.pending = pending{index: p.index[:0]}

	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// publishLater is the timer's publish. A failure stays in w.err, for the
// next Append to return.
func (s *Spool) publishLater() {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed && s.w.err == nil {
		_ = s.publish()
	}
}

// startSegment creates the segment whose first record will be first and makes
// it the one Append writes. It is published when its first records are.
func (s *Spool) startSegment(first uint64) (*segment, error) {
	path := s.segPath(first)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // a segment name in the spool directory
	if err != nil {
		return nil, err
	}
	if !s.opts.NoSync {
		if err := syncDir(s.dir); err != nil {
			f.Close()
			_ = os.Remove(path) //nolint:gosec // the segment just created
			return nil, err
		}
	}
	if s.w.f != nil {
		s.w.f.Close()
	}
	g := &segment{path: path, first: first}
	s.w.f, s.w.seg, s.w.size, s.w.published = f, g, 0, false
	return g, nil
}

// makeRoom deletes the oldest segments, never the newest, until batch more
// bytes fit under MaxBytes. The unacknowledged records in them are counted
// as dropped, and the count persisted, before any file is deleted.
func (s *Spool) makeRoom(batch int64) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	total := s.bytesLocked() + batch
	st, k := s.st, 0
	for ; total > s.opts.MaxBytes && k < len(s.segs)-1; k++ {
		total -= s.segs[k].size
		st.dropped += s.segs[k].unackedAfter(st.acked)
	}
	if k == 0 {
		s.mu.Unlock()
		return nil
	}
	st.floor = s.segs[k].first
	s.mu.Unlock()
	if err := writeState(s.dir, st, !s.opts.NoSync); err != nil {
		return err
	}
	return s.deleteOldest(k, func() { s.st.dropped, s.st.floor = st.dropped, st.floor })
}

// deleteOldest removes the k oldest segments, applying update to s.st at the
// same time. The caller holds stateMu and has persisted the state that
// accounts for them; k cannot have changed since, as only holders of stateMu
// remove segments.
func (s *Spool) deleteOldest(k int, update func()) error {
	s.mu.Lock()
	update()
	gone := slices.Clone(s.segs[:k])
	s.segs = slices.Delete(s.segs, 0, k)
	for _, g := range gone {
		if g.rf != nil {
			g.rf.Close()
			g.rf = nil
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, g := range gone {
		// A file left behind is deleted by the next Open: the state says it
		// is below the floor or acknowledged.
		if err := os.Remove(g.path); err != nil && !errors.Is(err, fs.ErrNotExist) { //nolint:gosec // a segment found or made in dir
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Read returns records with Seq >= from, in order, at most maxRecords of
// them and, after the first, at most maxBytes of data in all (zero or less:
// no limit). If from was dropped it starts at the oldest record on disk; the
// caller sees the gap in the seqs. It returns no records and no error when
// there is nothing at or after from.
func (s *Spool) Read(from uint64, maxRecords int, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if maxRecords <= 0 {
		maxRecords = int(^uint(0) >> 1)
	}
	if maxBytes <= 0 {
		maxBytes = int(^uint(0) >> 1)
	}
	var (
		out   []Record
		bytes int
	)
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].end() > from })
	for ; i < len(s.segs) && len(out) < maxRecords; i++ {
		var full bool
		var err error
		out, bytes, full, err = s.readSegment(s.segs[i], max(from, s.segs[i].first), out, bytes, maxRecords, maxBytes)
		if err != nil {
			return nil, fmt.Errorf("read spool from %d: %w", from, err)
		}
		if full {
			break
		}
	}
	return out, nil
}

// readSegment appends g's records from seq start to out within the limits,
// and reports whether a limit stopped it. The caller holds mu.
func (s *Spool) readSegment(g *segment, start uint64, out []Record, bytes, maxRecords, maxBytes int) ([]Record, int, bool, error) {
	if g.rf == nil {
		f, err := os.Open(g.path)
		if err != nil {
			return out, bytes, false, err
		}
		g.rf = f
	}
	k := (start - g.first) / indexEvery
	seq, off := g.first+k*indexEvery, g.index[k]
	br := bufio.NewReaderSize(io.NewSectionReader(g.rf, off, g.size-off), int(min(64<<10, max(g.size-off, 16))))
	var (
		hdr  [headerSize]byte
		slab []byte // records' data is carved from it: one allocation for many
	)
	for ; seq < g.end(); seq++ {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return out, bytes, false, fmt.Errorf("%s: record %d: %w", g.path, seq, err)
		}
		n, sum, got := parseHeader(hdr[:])
		if got != seq || n > MaxRecordBytes {
			return out, bytes, false, fmt.Errorf("%s: record %d: bad header: %w", g.path, seq, ErrCorrupt)
		}
		if seq < start {
			if _, err := br.Discard(int(n)); err != nil {
				return out, bytes, false, fmt.Errorf("%s: record %d: %w", g.path, seq, err)
			}
			continue
		}
		if len(out) >= maxRecords || (len(out) > 0 && bytes+int(n) > maxBytes) {
			return out, bytes, true, nil
		}
		if int(n) > len(slab) {
			slab = make([]byte, max(int(n), 32<<10))
		}
		data := slab[:n:n]
		slab = slab[n:]
		if _, err := io.ReadFull(br, data); err != nil {
			return out, bytes, false, fmt.Errorf("%s: record %d: %w", g.path, seq, err)
		}
		if checksum(hdr[8:16], data) != sum {
			return out, bytes, false, fmt.Errorf("%s: record %d: checksum mismatch: %w", g.path, seq, ErrCorrupt)
		}
		out = append(out, Record{Seq: seq, Data: data})
		bytes += int(n)
	}
	return out, bytes, len(out) >= maxRecords, nil
}

// ackWriteEvery bounds how often Ack writes the state file when no segment
// is deleted. A mark that a crash lost only makes the reader send acked
// records again, which the Console recognises by their seqs; an fsync per
// ack, one per batch the Console stores, was a tenth of a busy Defender's
// CPU.
const ackWriteEvery = time.Second

// Ack acknowledges every seq up to and including seq and deletes the
// segments whose records are all acknowledged, except the newest. The mark is
// persisted before any segment is deleted, and otherwise at most every
// ackWriteEvery (and by Close): after a crash, Open may find records acked
// again that were acked before. Acking below the current mark does nothing;
// acking a seq that was never appended is ErrAckAhead.
func (s *Spool) Ack(seq uint64) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if seq >= s.st.next {
		next := s.st.next
		s.mu.Unlock()
		return fmt.Errorf("ack %d, last appended %d: %w", seq, next-1, ErrAckAhead)
	}
	if seq <= s.st.acked {
		s.mu.Unlock()
		return nil
	}
	st, k := s.st, 0
	st.acked = seq
	for k < len(s.segs)-1 && s.segs[k].end()-1 <= seq {
		k++
	}
	if k > 0 {
		st.floor = max(st.floor, s.segs[k].first)
	}
	if k == 0 && time.Since(s.ackWritten) < ackWriteEvery {
		s.st.acked = st.acked // persisted by a later Ack or by Close
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if err := writeState(s.dir, st, !s.opts.NoSync); err != nil {
		return fmt.Errorf("ack %d: %w", seq, err)
	}
	s.ackWritten = time.Now()
	if err := s.deleteOldest(k, func() { s.st.acked, s.st.floor = st.acked, st.floor }); err != nil {
		return fmt.Errorf("ack %d: %w", seq, err)
	}
	return nil
}

// SkipTo makes next the seq of the next appended record, if it is above
// NextSeq; the seqs skipped are never used and are not counted as dropped.
// The Defender calls it when the Console has stored seqs this spool never
// issued (its directory was lost or restored from an old copy): new events
// must not reuse them, or the Console would discard them as duplicates.
func (s *Spool) SkipTo(next uint64) error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	if s.w.err == nil {
		if err := s.publish(); err != nil {
			return fmt.Errorf("skip to seq %d: %w", next, err)
		}
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if next <= s.st.next {
		s.mu.Unlock()
		return nil
	}
	// Recorded as a known gap, so that Open does not count it as lost.
	st := s.st
	st.gaps = append(slices.Clone(st.gaps), run{st.next, next})
	st.next = next
	s.mu.Unlock()
	if err := writeState(s.dir, st, !s.opts.NoSync); err != nil {
		return fmt.Errorf("skip to seq %d: %w", next, err)
	}
	s.mu.Lock()
	s.st.next, s.st.gaps, s.written = st.next, st.gaps, st.next
	s.mu.Unlock()
	// Seqs are consecutive within a segment: the next Append starts one.
	if s.w.f != nil {
		s.w.f.Close()
		s.w.f = nil
	}
	s.w.seg = nil
	return nil
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{NextSeq: s.written, Unsynced: s.written - s.st.next, AckedSeq: s.st.acked, Dropped: s.st.dropped,
		Bytes: s.bytesLocked(), Recovered: s.recovered}
	st.Depth = st.Unsynced
	for _, g := range s.segs {
		st.Depth += g.unackedAfter(s.st.acked)
	}
	return st
}

func (s *Spool) bytesLocked() int64 {
	var n int64
	for _, g := range s.segs {
		n += g.size
	}
	return n
}

// Notify returns a channel that receives when appended records become
// readable. Sends do not block and coalesce: after a receive, Read until
// nothing is left.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Close persists the state and releases the directory. Further calls fail
// with ErrClosed; closing again does nothing.
func (s *Spool) Close() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	var perr error
	if s.w.err == nil {
		perr = s.publish() // what is written becomes durable, for the next Open
	}
	if s.w.timer != nil {
		s.w.timer.Stop()
		s.w.timer = nil
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	err := errors.Join(perr, writeState(s.dir, s.st, !s.opts.NoSync))
	s.closeFiles()
	if err != nil {
		return fmt.Errorf("close spool %s: %w", s.dir, err)
	}
	return nil
}

func (s *Spool) closeFiles() {
	if s.w.f != nil {
		s.w.f.Close()
		s.w.f = nil
	}
	for _, g := range s.segs {
		if g.rf != nil {
			g.rf.Close()
			g.rf = nil
		}
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
}

// state is what the state file holds.
type state struct {
	next    uint64 // seq of the next record
	acked   uint64 // every seq <= acked is acknowledged
	dropped uint64 // unacknowledged records lost, ever
	floor   uint64 // segments wholly below floor have been deleted
	// gaps are runs of seqs known to be missing and accounted for: found
	// missing by Open (and counted in dropped) or skipped by SkipTo. The
	// next Open counts only seqs missing outside them.
	gaps []run
}

// run is the seqs [lo, hi).
type run struct{ lo, hi uint64 }

// missing returns the runs of seqs in [lo, hi) that no segment holds.
func missing(segs []*segment, lo, hi uint64) []run {
	var out []run
	for _, g := range segs {
		if lo >= hi {
			break
		}
		if g.first > lo {
			out = append(out, run{lo, min(g.first, hi)})
		}
		lo = max(lo, g.end())
	}
	if lo < hi {
		out = append(out, run{lo, hi})
	}
	return out
}

func runsLen(rs []run) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.hi - r.lo
	}
	return n
}

// intersectLen is how many seqs both sets of runs hold; each set's runs are
// disjoint.
func intersectLen(a, b []run) uint64 {
	var n uint64
	for _, x := range a {
		for _, y := range b {
			n += overlap(x.lo, x.hi, y.lo, y.hi)
		}
	}
	return n
}

const (
	stateMagic   = "bwspool1"
	stateMinSize = len(stateMagic) + 4*8 + 4 + 4
	maxGaps      = 1 << 16
)

// marshal encodes the state: magic, next, acked, dropped, floor, u32 number
// of gaps, each gap's lo and hi, then the CRC-32C of all that.
func (st state) marshal() []byte {
	b := make([]byte, 0, stateMinSize+16*len(st.gaps))
	b = append(b, stateMagic...)
	for _, v := range []uint64{st.next, st.acked, st.dropped, st.floor} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(st.gaps))) //nolint:gosec // at most one gap per segment
	for _, r := range st.gaps {
		b = binary.LittleEndian.AppendUint64(b, r.lo)
		b = binary.LittleEndian.AppendUint64(b, r.hi)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// readState reads the state file; a missing one is a new spool's state.
func readState(path string) (state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, nil
	}
	if err != nil {
		return state{}, err
	}
	bad := fmt.Errorf("%s: %w", path, ErrCorrupt)
	if len(b) < stateMinSize || string(b[:len(stateMagic)]) != stateMagic ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return state{}, bad
	}
	v := func(i int) uint64 { return binary.LittleEndian.Uint64(b[len(stateMagic)+8*i:]) }
	st := state{next: v(0), acked: v(1), dropped: v(2), floor: v(3)}
	ngaps := binary.LittleEndian.Uint32(b[len(stateMagic)+32:])
	if ngaps > maxGaps || len(b) != stateMinSize+16*int(ngaps) {
		return state{}, bad
	}
	for i := range int(ngaps) {
		g := b[len(stateMagic)+36+16*i:]
		st.gaps = append(st.gaps, run{binary.LittleEndian.Uint64(g), binary.LittleEndian.Uint64(g[8:])})
	}
	return st, nil
}

// writeState replaces the state file atomically.
func writeState(dir string, st state, sync bool) error {
	tmp := filepath.Join(dir, stateTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = f.Write(st.marshal())
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateName))
	}
	if err == nil && sync {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// syncDir makes the directory's entries (created, renamed files) durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; NTFS journals renames
	}
	d, err := os.Open(dir) //nolint:gosec // the spool directory
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
