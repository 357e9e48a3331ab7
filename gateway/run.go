package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/rs/zerolog"
)

// Run serves snap on its server.listen address until ctx ends, then shuts down gracefully: it stops
// accepting, gives in-flight requests server.shutdown_timeout to finish, and returns. ready, if not nil,
// is called with the bound address once the listener is open.
func Run(ctx context.Context, snap *Snapshot, log zerolog.Logger, accessOut io.Writer, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", snap.Server.Listen)
	if err != nil {
		return fmt.Errorf("opening server.listen %s: %w", snap.Server.Listen, err)
	}
	srv := NewServer(snap, log, accessOut)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info().Str("listen", ln.Addr().String()).Int("routes", len(snap.Routes)).Msg("weir is serving")
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case err := <-served:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	log.Info().Dur("timeout", snap.Server.ShutdownTimeout).Msg("shutting down: no new connections, waiting for in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), snap.Server.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			log.Warn().Msg("shutdown_timeout reached with connections still open; exiting anyway")
			return nil
		}
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("shutdown complete")
	return nil
}
