package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/certs"
)

// RunConfig is what Run needs from its caller.
type RunConfig struct {
	// Path is the config file, read at start and on every reload.
	Path string
	// Log receives gateway events; the config's log.level is applied to it.
	Log zerolog.Logger
	// AccessOut receives the access log.
	AccessOut io.Writer
	// Reload triggers a reload each time it receives (cmd/weir sends on SIGHUP). May be nil.
	Reload <-chan struct{}
	// Ready, if not nil, is called once the listeners are open, with their addresses (each nil when
	// its listener is off).
	Ready func(l Listeners)
	// FallbackTLS, if not nil, serves HTTPS on FallbackTLSListen with this certificate when the config
	// has no server.tls (weir demo's self-signed certificate).
	FallbackTLS       *tls.Certificate
	FallbackTLSListen string
}

// Listeners are the addresses weir serves on; nil for a listener that is off.
type Listeners struct {
	HTTP, HTTPS, Admin net.Addr
}

// Run loads the config and serves it until ctx ends, reloading it on file changes, on rc.Reload and
// on POST /reload; then it shuts down gracefully: it stops accepting, gives in-flight requests
// server.shutdown_timeout to finish, and returns. An invalid config at start is returned as Problems.
func Run(ctx context.Context, rc RunConfig) error {
	data, err := os.ReadFile(rc.Path)
	if err != nil {
		return Problems{{File: rc.Path, Msg: fmt.Sprintf("cannot read config: %v", err)}}
	}
	metrics := NewMetrics()
	snap, err := CompileWith(rc.Path, data, Options{Log: rc.Log, Metrics: metrics})
	if err != nil {
		return err
	}
	// log.level is global, so a reload can change it for every logger at once.
	zerolog.SetGlobalLevel(snap.LogLevel)
	log := rc.Log

	logWarnings(log, snap.Warnings)

	srv := NewServer(snap, log, rc.AccessOut)
	var addrs Listeners
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	listen := func(key, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("opening %s %s: %w", key, addr, err)
		}
		lns = append(lns, ln)
		return ln, nil
	}
	var plain, secure net.Listener
	if snap.Server.Listen != "" {
		if plain, err = listen("server.listen", snap.Server.Listen); err != nil {
			return err
		}
		addrs.HTTP = plain.Addr()
	}
	tlsListen := ""
	switch {
	case snap.Server.TLS != nil:
		tlsListen = snap.Server.TLS.Listen
	case rc.FallbackTLS != nil:
		src, err := certs.Static("demo", *rc.FallbackTLS)
		if err != nil {
			return fmt.Errorf("the demo certificate: %w", err)
		}
		srv.fallbackTLS = &tlsListener{store: certs.NewStore([]*certs.Source{src}), min: tls.VersionTLS12, tickets: true}
		tlsListen = rc.FallbackTLSListen
	}
	if tlsListen != "" {
		if secure, err = listen("server.tls.listen", tlsListen); err != nil {
			return err
		}
		addrs.HTTPS = secure.Addr()
	}
	reloader := NewReloader(rc.Path, data, srv, Options{Log: log, Metrics: metrics})
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	certsDone := srv.watchCertificates(watchCtx, reloader)
	metrics.serve(srv.Snapshot)
	metrics.configLoaded(contentHash(data))
	served := make(chan error, 3)
	if plain != nil {
		go func() { served <- srv.Serve(plain) }()
	}
	if secure != nil {
		go func() { served <- srv.ServeTLS(secure) }()
	}

	var admin *Admin
	if snap.Admin.Listen != "" {
		aln, err := net.Listen("tcp", snap.Admin.Listen)
		if err != nil {
			_ = srv.fast.Shutdown()
			return fmt.Errorf("opening admin.listen %s: %w", snap.Admin.Listen, err)
		}
		admin, addrs.Admin = NewAdmin(srv, reloader, metrics), aln.Addr()
		go func() { served <- admin.fast.Serve(aln) }()
	}

	var watchDone <-chan struct{}
	if snap.Reload.Watch || snap.Reload.Interval > 0 {
		if watchDone, err = reloader.Watch(watchCtx, snap.Reload.Watch, snap.Reload.Debounce, snap.Reload.Interval); err != nil {
			log.Error().Err(err).Msg("config changes will not be noticed; reload with SIGHUP or POST /reload")
		}
	}

	srv.ready.Store(true)
	ev := log.Info().Int("routes", len(snap.Routes))
	for _, a := range []struct {
		key  string
		addr net.Addr
	}{{"listen", addrs.HTTP}, {"tls_listen", addrs.HTTPS}, {"admin", addrs.Admin}} {
		if a.addr != nil {
			ev = ev.Str(a.key, a.addr.String())
		}
	}
	ev.Msg("weir is serving")
	if rc.Ready != nil {
		rc.Ready(addrs)
	}

	var runErr error
loop:
	for {
		select {
		case err := <-served:
			runErr = fmt.Errorf("a listener stopped: %w", err)
			break loop
		case <-rc.Reload:
			reloader.Reload("SIGHUP")
		case <-ctx.Done():
			break loop
		}
	}
	srv.ready.Store(false)
	// No reload may swap in a snapshot after this: the one Shutdown closes must be the last.
	stopWatch()
	if watchDone != nil {
		<-watchDone
	}
	<-certsDone
	reloader.Close()
	timeout := srv.Snapshot().Server.ShutdownTimeout
	log.Info().Dur("timeout", timeout).Msg("shutting down: no new connections, waiting for in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// The admin listener stays up through the drain: /readyz says 503, /healthz 200.
	defer func() {
		if admin != nil {
			_ = admin.fast.Shutdown()
		}
	}()
	if err := srv.Shutdown(sctx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return errors.Join(runErr, fmt.Errorf("shutdown: %w", err))
		}
		log.Warn().Msg("shutdown_timeout reached with connections still open; exiting anyway")
	} else {
		log.Info().Msg("shutdown complete")
	}
	return runErr
}
