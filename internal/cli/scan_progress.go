package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// progressMinFiles is the number of files from which a scan shows progress.
const progressMinFiles = 20

// progress draws "scanning 120/900 files [====      ]" on one terminal
// line until finished. A nil *progress draws nothing.
type progress struct {
	w     io.Writer
	total int
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startProgress shows progress on stderr when it is a terminal and there
// are enough files to wait for; never on a pipe or a file.
func (a *app) startProgress(total int) *progress {
	f, ok := a.stderr.(*os.File)
	if !ok || total < progressMinFiles || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return newProgress(f, total, 100*time.Millisecond)
}

func newProgress(w io.Writer, total int, every time.Duration) *progress {
	p := &progress{w: w, total: total, stop: make(chan struct{})}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stop:
				return
			}
		}
	})
	return p
}

func (p *progress) add(n int) {
	if p != nil {
		p.done.Add(int64(n))
	}
}

// finish stops drawing and clears the line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	fmt.Fprint(p.w, "\r\033[K")
}

func (p *progress) draw() {
	const width = 30
	done := int(p.done.Load())
	filled := width * done / max(p.total, 1)
	fmt.Fprintf(p.w, "\r\033[Kscanning %d/%d files [%s%s] %3d%%", done, p.total,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*done/max(p.total, 1))
}
