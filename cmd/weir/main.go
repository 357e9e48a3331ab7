// Command weir is the weir API gateway.
//
//	weir [-config FILE]            serve (default config.yaml); SIGHUP reloads the config
//	weir validate [-config FILE]   check a config: problems on stderr, exit 1; or warnings on stderr, exit 0
//	weir demo [-config FILE]       serve, plus echo upstreams on the config's loopback targets, and
//	                               HTTPS on :8443 with a self-signed certificate if the config has no TLS
//	weir version                   print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/certs"
	"github.com/weir-gateway/weir/gateway"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module version is used.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("weir "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "config.yaml", "path of the config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "weir %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}

	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "weir", versionString())
		return 0
	case "schema":
		// The JSON Schema of config.yaml, for editors (yaml-language-server) and CI linters.
		_, _ = stdout.Write(gateway.SchemaJSON)
		return 0
	case "validate":
		snap, err := gateway.LoadFile(*configPath, gateway.Options{})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		snap.Close()
		for _, w := range snap.Warnings {
			fmt.Fprintln(stderr, w)
		}
		fmt.Fprintf(stdout, "%s: ok (%d routes)\n", *configPath, len(snap.Routes))
		return 0
	case "serve", "demo":
		log := newLogger(stderr)
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer cancel()
		rc := gateway.RunConfig{Path: *configPath, Log: log, AccessOut: stdout, Reload: sighup(ctx)}
		if cmd == "demo" {
			snap, err := gateway.LoadFile(*configPath, gateway.Options{})
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			stop, err := startDemoUpstreams(snap, log)
			if err != nil {
				fmt.Fprintf(stderr, "weir demo: %v\n", err)
				return 1
			}
			defer stop()
			if snap.Server.TLS == nil {
				cert, err := certs.SelfSigned("localhost", "127.0.0.1", "::1")
				if err != nil {
					fmt.Fprintf(stderr, "weir demo: making a self-signed certificate: %v\n", err)
					return 1
				}
				rc.FallbackTLS, rc.FallbackTLSListen = &cert, demoTLSListen
			}
			rc.Ready = func(l gateway.Listeners) { printDemoHelp(stderr, snap, l) }
		}
		if err := gateway.Run(ctx, rc); err != nil {
			var problems gateway.Problems
			if errors.As(err, &problems) {
				fmt.Fprintln(stderr, err)
			} else {
				log.Error().Err(err).Msg("weir stopped")
			}
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "weir: unknown command %q; use serve (the default), validate, demo, schema or version\n", cmd)
	return 2
}

// demoTLSListen is where weir demo serves HTTPS when the config has no server.tls of its own.
const demoTLSListen = ":8443"

// sighup delivers one value per SIGHUP (reload the config) until ctx ends.
func sighup(ctx context.Context) <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	out := make(chan struct{})
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-sig:
				select {
				case out <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func newLogger(w io.Writer) zerolog.Logger {
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	return zerolog.New(w).With().Timestamp().Logger()
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
