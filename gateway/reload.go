package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/certs"
)

// Reloader applies config file changes to a running Server: it reads the file, compiles a whole new
// snapshot (the same code path as `weir validate`) against the one serving, and swaps it in only if
// the file is valid. Anything wrong keeps the serving snapshot and is reported. One reload runs at a
// time, whatever triggered it.
type Reloader struct {
	path  string
	srv   *Server
	opts  Options
	grace time.Duration // how long removed targets may finish their in-flight requests

	mu     sync.Mutex // serializes reloads
	closed bool       // set by Close: no more swaps
	// swapped, if set, is called after each new snapshot goes live (under mu).
	swapped func()

	statusMu sync.Mutex
	status   Status
}

// Status is what GET /config reports.
type Status struct {
	File     string    `json:"file"`
	Hash     string    `json:"hash"` // sha256 of the active config file's content
	LoadedAt time.Time `json:"loaded_at"`
	Routes   int       `json:"routes"`
	// RestartRequired lists settings of the file that differ from what the process runs with and only
	// apply at start.
	RestartRequired []string `json:"restart_required"`
	LastAttempt     *Attempt `json:"last_attempt"`
	// Certificates are the TLS certificates and CA bundles in use, with any refused renewal.
	Certificates []certs.Status `json:"certificates"`
}

// Attempt is the outcome of one reload.
type Attempt struct {
	At      time.Time `json:"at"`
	Trigger string    `json:"trigger"` // file change, interval, SIGHUP, admin
	// Result is applied, unchanged (same content as the active config), rejected (the file is
	// invalid; Problems says why), unreadable, or shutting down.
	Result   string   `json:"result"`
	Problems []string `json:"problems,omitempty"`
}

// Attempt results.
const (
	Applied      = "applied"
	Unchanged    = "unchanged"
	Rejected     = "rejected"
	Unreadable   = "unreadable"
	ShuttingDown = "shutting down"
)

// NewReloader manages reloads of path into srv, whose current snapshot was loaded from data.
func NewReloader(path string, data []byte, srv *Server, opts Options) *Reloader {
	snap := srv.Snapshot()
	return &Reloader{
		path:  path,
		srv:   srv,
		opts:  opts,
		grace: drainGrace(snap),
		status: Status{
			File: path, Hash: contentHash(data), LoadedAt: time.Now(), Routes: len(snap.Routes),
			RestartRequired: []string{},
		},
	}
}

func contentHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// drainGrace is how long a removed upstream's in-flight requests may take: the longest attempt timeout
// any pool allows.
func drainGrace(s *Snapshot) time.Duration {
	grace := time.Second
	for _, p := range s.pools {
		grace = max(grace, p.Timeout())
	}
	return grace
}

// Status returns a copy of the current status.
func (r *Reloader) Status() Status {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	st := r.status
	st.RestartRequired = append([]string{}, st.RestartRequired...)
	st.Certificates = r.srv.Snapshot().certificateStatus()
	return st
}

// Reload reads the config file and applies it if it changed and is valid.
func (r *Reloader) Reload(trigger string) Attempt { return r.reload(trigger, 0, false) }

// reload is Reload with two refinements for reloads nobody asked for by hand. With settle > 0 the file
// is read twice, settle apart, and left alone unless both reads agree: a writer still at work (an
// in-place save that has written half the file, which may well parse) is waited for; its next write
// brings another event. With quiet, a file with the active content records no attempt.
func (r *Reloader) reload(trigger string, settle time.Duration, quiet bool) Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := Attempt{At: time.Now(), Trigger: trigger}
	if r.closed {
		a.Result = ShuttingDown
		return a
	}
	log := r.opts.Log.With().Str("trigger", trigger).Str("file", r.path).Logger()

	data, err := os.ReadFile(r.path)
	if err == nil && settle > 0 {
		time.Sleep(settle)
		again, err2 := os.ReadFile(r.path)
		if err2 != nil || !bytes.Equal(data, again) {
			log.Debug().Msg("config file still changing; waiting for the writer to finish")
			return a
		}
	}
	hash := contentHash(data)
	if quiet && err == nil && hash == r.Status().Hash {
		return a
	}
	switch {
	case err != nil:
		a.Result, a.Problems = Unreadable, []string{err.Error()}
		log.Error().Err(err).Msg("config reload failed: cannot read the file; the running config stays")
	case hash == r.Status().Hash:
		a.Result = Unchanged
		log.Debug().Msg("config file unchanged; nothing to reload")
	default:
		prev := r.srv.Snapshot()
		opts := r.opts
		opts.Previous = prev
		next, err := CompileWith(r.path, data, opts)
		if err != nil {
			a.Result = Rejected
			var ps Problems
			if errors.As(err, &ps) {
				for _, p := range ps {
					a.Problems = append(a.Problems, p.String())
				}
			} else {
				a.Problems = []string{err.Error()}
			}
			log.Error().Strs("problems", a.Problems).Msg("config reload rejected; the running config stays")
			break
		}
		next.activate()
		r.srv.current.Store(next)
		prev.retire(next, r.grace)
		if r.swapped != nil {
			r.swapped()
		}
		logWarnings(log, next.Warnings)
		r.grace = drainGrace(next)
		zerolog.SetGlobalLevel(next.LogLevel)
		if m := r.opts.Metrics; m != nil {
			m.configLoaded(hash)
		}
		a.Result = Applied
		restart := restartRequired(r.srv.started, next)
		log.Info().Str("hash", hash).Int("routes", len(next.Routes)).Msg("config reloaded")
		for _, key := range restart {
			log.Warn().Str("setting", key).Msg("config setting changed; it applies only after a restart")
		}
		r.statusMu.Lock()
		r.status.Hash, r.status.LoadedAt, r.status.Routes, r.status.RestartRequired = hash, a.At, len(next.Routes), restart
		r.statusMu.Unlock()
	}
	if m := r.opts.Metrics; m != nil {
		m.reloads.WithLabelValues(a.Result).Inc()
		// A rejected compile resolved series too; after an applied one, the old config's remain.
		m.prune(r.srv.Snapshot())
	}
	// Published last, so whoever sees the attempt in GET /config also sees its metrics settled.
	r.statusMu.Lock()
	r.status.LastAttempt = &a
	r.statusMu.Unlock()
	return a
}

// Close stops the reloader: a reload running now finishes, and none swaps a snapshot afterwards. Run
// calls it before shutting the server down, so the snapshot it closes is the last one.
func (r *Reloader) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// restartRequired lists the settings in next that differ from those the process started with and are
// only read at start: the listeners, their limits and timeouts, and reload itself.
func restartRequired(started, next *Snapshot) []string {
	var keys []string
	diff := func(key string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			keys = append(keys, key)
		}
	}
	a, b := started.Server, next.Server
	diff("server.listen", a.Listen, b.Listen)
	diff("server.tls.listen", tlsListenOf(a), tlsListenOf(b))
	diff("server.read_timeout", a.ReadTimeout, b.ReadTimeout)
	diff("server.write_timeout", a.WriteTimeout, b.WriteTimeout)
	diff("server.idle_timeout", a.IdleTimeout, b.IdleTimeout)
	diff("server.max_header_bytes", a.MaxHeaderBytes, b.MaxHeaderBytes)
	diff("server.max_body_bytes", a.MaxBodyBytes, b.MaxBodyBytes)
	diff("server.write_buffer_bytes", a.WriteBufferBytes, b.WriteBufferBytes)
	diff("server.reduce_memory_usage", a.ReduceMemoryUsage, b.ReduceMemoryUsage)
	diff("admin.listen", started.Admin.Listen, next.Admin.Listen)
	diff("reload", started.Reload, next.Reload)
	if keys == nil {
		keys = []string{}
	}
	return keys
}

// Watch reloads after the config file's directory changes, and every interval if that is positive,
// until ctx ends. It watches the directory, not the file: an editor's rename-on-save replaces the file
// (a watch on it dies with it), and a Kubernetes ConfigMap update swaps the ..data symlink without
// an event naming the file at all. When the file is a symlink, the directory it resolves to is
// watched too (and followed when a swap moves it), so writes to the real file are seen.
//
// Only events naming the file, its resolved target or ..data count, so a busy directory does not
// postpone reloads; a burst is debounced, but never for more than four debounce periods.
//
// The watch is in place when Watch returns, and a change made before then (while weir was starting)
// has been applied. The loop runs in the background until ctx ends; done is closed when it has.
func (r *Reloader) Watch(ctx context.Context, watch bool, debounce, interval time.Duration) (done <-chan struct{}, err error) {
	// changed is raised (without blocking) for every relevant event. fsnotify's channels are drained
	// by a goroutine of their own: Add and Remove (in follow) can wait for fsnotify's reader, which may
	// be waiting to deliver an event to whoever calls them.
	changed := make(chan struct{}, 1)
	var w *fsnotify.Watcher
	var resolvedDir string
	var resolvedFile atomic.Value // string: the path the config file resolves to
	resolvedFile.Store("")
	// follow watches the directory the file resolves to, and reports whether that moved.
	follow := func() bool {
		real, err := filepath.EvalSymlinks(r.path)
		if err != nil {
			return false
		}
		resolvedFile.Store(real)
		dir := filepath.Dir(real)
		if dir == resolvedDir || dir == filepath.Dir(r.path) {
			return false
		}
		if resolvedDir != "" {
			_ = w.Remove(resolvedDir)
		}
		resolvedDir = dir
		if err := w.Add(resolvedDir); err != nil {
			r.opts.Log.Warn().Err(err).Str("dir", resolvedDir).Msg("cannot watch the directory the config file resolves to")
			resolvedDir = ""
		}
		return true
	}
	if watch {
		if w, err = fsnotify.NewWatcher(); err != nil {
			return nil, fmt.Errorf("watching the config directory: %w", err)
		}
		if err := w.Add(filepath.Dir(r.path)); err != nil {
			w.Close()
			return nil, fmt.Errorf("watching the config directory %s: %w", filepath.Dir(r.path), err)
		}
		follow()
		base := filepath.Base(r.path)
		go func() {
			for {
				select {
				case ev, ok := <-w.Events:
					if !ok {
						return
					}
					name := filepath.Base(ev.Name)
					if name != base && name != "..data" && ev.Name != resolvedFile.Load().(string) {
						continue
					}
					select {
					case changed <- struct{}{}:
					default:
					}
				case err, ok := <-w.Errors:
					if !ok {
						return
					}
					r.opts.Log.Warn().Err(err).Msg("config directory watch error")
				}
			}
		}()
	}
	// A save between Run's first read and the watch being armed brought no event.
	r.reload("start", 0, true)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		r.watchLoop(ctx, w, changed, follow, debounce, interval)
	}()
	return finished, nil
}

func (r *Reloader) watchLoop(ctx context.Context, w *fsnotify.Watcher, changed <-chan struct{}, follow func() bool,
	debounce, interval time.Duration) {
	if w != nil {
		defer w.Close()
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	debounced := time.NewTimer(time.Hour)
	debounced.Stop()
	defer debounced.Stop()
	var burst time.Time // first event of the burst being debounced
	fileChanged := func() {
		burst = time.Time{}
		// Follow first: a write to a newly resolved directory after this is seen as an event.
		follow()
		r.reload("file change", debounce, false)
		if follow() {
			r.reload("file change", 0, true)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			if burst.IsZero() {
				burst = time.Now()
			}
			if time.Since(burst) >= 4*debounce {
				debounced.Stop()
				fileChanged()
			} else {
				debounced.Reset(debounce)
			}
		case <-debounced.C:
			fileChanged()
		case <-tick:
			r.reload("interval", debounce, true)
		}
	}
}
