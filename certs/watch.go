package certs

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher tells when files may have changed. It watches their directories, not the files: an
// editor's rename-on-save or certbot's new symlink replaces the file (a watch on it dies with it), and
// a Kubernetes Secret volume swaps a ..data symlink without any event naming the file. When a file is
// a symlink, the directory it resolves to is watched too, so in-place writes to the real file count.
// Every event in a watched directory counts: the Sources compare content hashes, so a spurious
// refresh costs a few file reads.
type Watcher struct {
	w       *fsnotify.Watcher
	changed chan struct{}
	mu      sync.Mutex
	dirs    []string
}

// NewWatcher starts watching nothing; Track says what.
func NewWatcher() (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	cw := &Watcher{w: w, changed: make(chan struct{}, 1)}
	go cw.drain()
	return cw, nil
}

// drain turns fsnotify's events into one pending signal. It runs in its own goroutine because Add and
// Remove can wait for fsnotify's reader, which may itself be waiting to deliver an event.
func (cw *Watcher) drain() {
	for {
		select {
		case _, ok := <-cw.w.Events:
			if !ok {
				return
			}
			cw.signal()
		case _, ok := <-cw.w.Errors:
			if !ok {
				return
			}
			// An overflowed event queue may have hidden a change.
			cw.signal()
		}
	}
}

func (cw *Watcher) signal() {
	select {
	case cw.changed <- struct{}{}:
	default:
	}
}

// Track makes the watched directories those of files (and of what they resolve to), and returns the
// directories it could not watch with their errors.
func (cw *Watcher) Track(files []string) map[string]error {
	var want []string
	for _, f := range files {
		want = append(want, filepath.Dir(f))
		if real, err := filepath.EvalSymlinks(f); err == nil {
			want = append(want, filepath.Dir(real))
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	cw.mu.Lock()
	defer cw.mu.Unlock()
	failed := map[string]error{}
	var now []string
	for _, d := range want {
		if slices.Contains(cw.dirs, d) {
			now = append(now, d)
			continue
		}
		if err := cw.w.Add(d); err != nil {
			failed[d] = err
			continue
		}
		now = append(now, d)
	}
	for _, d := range cw.dirs {
		if !slices.Contains(now, d) {
			_ = cw.w.Remove(d)
		}
	}
	cw.dirs = now
	return failed
}

// Run calls refresh once the watched directories have been quiet for debounce after a change (a
// renewal writes two files, often in several steps), and every poll as a backstop for filesystems
// without change events (0: never). It returns when ctx ends, and closes the watch.
func (cw *Watcher) Run(ctx context.Context, debounce, poll time.Duration, refresh func()) {
	defer cw.w.Close()
	var tick <-chan time.Time
	if poll > 0 {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-cw.changed:
			quiet.Reset(debounce)
		case <-quiet.C:
			refresh()
		case <-tick:
			refresh()
		}
	}
}
