package defender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cgroupDirEvents are the inotify events of a cgroup directory that matter:
// a child cgroup made or removed (cgroup2 has no rename across parents).
const cgroupDirEvents = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_ONLYDIR

// cgroupWatch tells when a cgroup is created or removed anywhere below a
// cgroup2 root, from an inotify watch on every cgroup directory (a new
// directory gets its own watch, and so do the ones made inside it before
// that). It waits in Go's netpoller: no timer, no thread, while nothing
// changes.
type cgroupWatch struct {
	f    *os.File
	fd   int
	dirs map[int32]string // watch descriptor → directory
}

// watchCgroups starts watching root; the returned channel gets a value
// (coalesced) after every change, until ctx ends. An error (no inotify, or
// the watch limit reached) leaves the caller to poll instead; so does the
// channel's close, when a new cgroup could not be watched.
func watchCgroups(ctx context.Context, root string, logger *slog.Logger) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &cgroupWatch{f: os.NewFile(uintptr(fd), "inotify cgroups"), fd: fd, dirs: map[int32]string{}} //nolint:gosec // G115: a file descriptor
	if err := w.addTree(root); err != nil {
		w.f.Close()
		return nil, err
	}
	changed := make(chan struct{}, 1)
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	go func() {
		defer stop()
		if err := w.run(changed); err != nil {
			logger.Warn("defense: cgroup watch ended", "error", err)
			close(changed)
		}
	}()
	return changed, nil
}

// addTree watches dir and every directory below it.
func (w *cgroupWatch) addTree(dir string) error {
	wd, err := unix.InotifyAddWatch(w.fd, dir, cgroupDirEvents)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // gone already: its removal is the news
		}
		return fmt.Errorf("watch %s: %w (fs.inotify.max_user_watches?)", dir, err)
	}
	w.dirs[int32(wd)] = dir //nolint:gosec // G115: watch descriptors are int32 in the event
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil //nolint:nilerr // removed meanwhile: its own event says so
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := w.addTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// run reads events until the file is closed (nil) or a cgroup cannot be
// watched.
func (w *cgroupWatch) run(changed chan<- struct{}) error {
	defer w.f.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		news := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off])) //nolint:gosec // G103: the kernel's inotify_event layout
			nameEnd := off + unix.SizeofInotifyEvent + int(ev.Len)
			if nameEnd > n {
				break
			}
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:nameEnd], "\x00"))
			off = nameEnd
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				// Events were dropped: watch whatever is there now.
				news = true
				for _, dir := range w.dirs {
					if err := w.addTree(dir); err != nil {
						return err
					}
				}
			case ev.Mask&unix.IN_IGNORED != 0:
				delete(w.dirs, ev.Wd)
			case ev.Mask&unix.IN_ISDIR != 0:
				news = true
				if ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
					if parent, ok := w.dirs[ev.Wd]; ok {
						if err := w.addTree(filepath.Join(parent, name)); err != nil {
							return err
						}
					}
				}
			}
		}
		if news {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}
