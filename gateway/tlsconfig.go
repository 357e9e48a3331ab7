package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/certs"
	"github.com/weir-gateway/weir/upstream"
)

// expiryWarning is how far ahead weir validate (and every load) warns about a certificate's expiry.
const expiryWarning = 14 * 24 * time.Hour

// tlsListener is a snapshot's HTTPS settings, compiled from server.tls. The listener's tls.Config asks
// the serving snapshot for one of these on every handshake, so a reload changes certificates, client
// authentication and versions for the next handshake, and connections already open keep theirs.
type tlsListener struct {
	store    *certs.Store
	clientCA *certs.Source // nil when client_auth is none
	auth     tls.ClientAuthType
	min      uint16
	hsts     []byte // the Strict-Transport-Security value; nil when off
	tickets  bool   // session resumption by tickets

	mu     sync.Mutex
	cached atomic.Pointer[tlsGeneration]
}

// tlsGeneration is the tls.Config built for one version of the client CA bundle.
type tlsGeneration struct {
	caGen uint64
	cfg   *tls.Config
}

// config returns the tls.Config for a handshake, rebuilt when the client CA bundle has changed (a
// tls.Config's ClientCAs are fixed once it is in use). A session resumed from a ticket is verified
// again against the new bundle (crypto/tls in Go 1.26 does, in TLS 1.2 and 1.3), so replacing the bundle locks
// out a client at once.
func (l *tlsListener) config() *tls.Config {
	var caGen uint64
	if l.clientCA != nil {
		caGen = l.clientCA.Generation()
	}
	if g := l.cached.Load(); g != nil && g.caGen == caGen {
		return g.cfg
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if g := l.cached.Load(); g != nil && g.caGen == caGen {
		return g.cfg
	}
	cfg := &tls.Config{
		MinVersion:     l.min,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: l.store.GetCertificate,
		ClientAuth:     l.auth,
		// Tickets are sealed with the listener's own keys (see newTLSRoot), so a ticket survives this
		// config being replaced.
		SessionTicketsDisabled: !l.tickets,
	}
	if l.clientCA != nil {
		cfg.ClientCAs = l.clientCA.Current().Pool
	}
	l.cached.Store(&tlsGeneration{caGen: caGen, cfg: cfg})
	return cfg
}

// resolveFile makes a config path relative to the config file's directory.
func (c *compiler) resolveFile(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.cfg.File), p)
}

// source returns the certs.Source for key: one this snapshot already opened, the previous snapshot's
// (re-read now, so a reload also picks up changed files), or a new one from open. A new source that
// fails to load is a problem at path; a carried-over one keeps serving what it has, and its refusal
// of the new content is a warning.
func (c *compiler) source(path, key string, open func() (*certs.Source, error)) *certs.Source {
	if src, ok := c.snap.sources[key]; ok {
		return src
	}
	src := c.opts.Previous.sourceFor(key)
	if src != nil {
		if _, err := src.Refresh(c.opts.Now()); err != nil {
			c.sink.warnf(path, "%v; the version loaded at %s keeps serving", err, src.Status().LoadedAt.UTC().Format(time.RFC3339))
		}
	} else {
		var err error
		if src, err = open(); err != nil {
			c.problem(path, "%v", err)
			return nil
		}
	}
	c.snap.sources[key] = src
	if v := src.Current(); v.Cert != nil {
		if left := v.NotAfter.Sub(c.opts.Now()); left < expiryWarning {
			c.sink.warnf(path, "the certificate expires in %s, at %s", left.Round(time.Hour), v.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return src
}

func (s *Snapshot) sourceFor(key string) *certs.Source {
	if s == nil {
		return nil
	}
	return s.sources[key]
}

// pair opens a certificate/key pair named in the config at path (certPath and keyPath are its keys).
func (c *compiler) pair(name, certPath, certFile, keyPath, keyFile string) *certs.Source {
	switch {
	case certFile == "":
		c.problem(certPath, "a certificate needs cert_file (a PEM file, leaf first) with key_file")
		return nil
	case keyFile == "":
		c.problem(keyPath, "key_file is needed with cert_file: the PEM private key of the certificate")
		return nil
	}
	cf, kf := c.resolveFile(certFile), c.resolveFile(keyFile)
	return c.source(certPath, "pair\x00"+cf+"\x00"+kf, func() (*certs.Source, error) {
		return certs.OpenPair(name, cf, kf, c.opts.Now())
	})
}

// caBundle opens a CA bundle named in the config at path.
func (c *compiler) caBundle(name, path, file string) *certs.Source {
	f := c.resolveFile(file)
	return c.source(path, "ca\x00"+f, func() (*certs.Source, error) { return certs.OpenCA(name, f, c.opts.Now()) })
}

func (c *compiler) tlsListener(s *Snapshot) {
	tc := c.cfg.Server.TLS
	if tc == nil {
		if c.cfg.Server.RedirectHTTPS {
			c.problem("server.redirect_https", "redirecting to HTTPS needs server.tls (an HTTPS listener to redirect to)")
		}
		return
	}
	if _, port, err := net.SplitHostPort(tc.Listen); err != nil {
		c.problem("server.tls.listen", "invalid listen address %q; write it like \":8443\" or \"0.0.0.0:443\"", tc.Listen)
	} else if s.Server.Listen != "" && sameListenAddr(s.Server.Listen, tc.Listen) {
		c.problem("server.tls.listen", "the HTTPS listener cannot share server.listen's address %q", tc.Listen)
	} else if c.cfg.Server.RedirectHTTPS {
		if p := c.cfg.Server.RedirectHTTPSPort; p != 0 {
			port = strconv.Itoa(p)
		}
		if port != "443" {
			s.redirectPort = ":" + port
		}
	}
	if p := c.cfg.Server.RedirectHTTPSPort; p < 0 || p > 65535 {
		c.problem("server.redirect_https_port", "must be a port (1-65535), or 0 for tls.listen's port")
	}
	l := &tlsListener{tickets: tc.SessionTickets}
	switch tc.MinVersion {
	case "1.2":
		l.min = tls.VersionTLS12
	case "1.3":
		l.min = tls.VersionTLS13
	default:
		c.problem("server.tls.min_version", "unknown TLS version %q; use \"1.2\" or \"1.3\" (1.0 and 1.1 are not offered)", tc.MinVersion)
	}
	switch tc.ClientAuth {
	case "none":
		l.auth = tls.NoClientCert
		if tc.ClientCAFile != "" {
			c.problem("server.tls.client_ca_file", "client_ca_file is only read when client_auth is request or require")
		}
	case "request", "require":
		l.auth = tls.VerifyClientCertIfGiven
		if tc.ClientAuth == "require" {
			l.auth = tls.RequireAndVerifyClientCert
		}
		if tc.ClientCAFile == "" {
			c.problem("server.tls.client_ca_file", "client_auth %s needs client_ca_file: the PEM CAs client certificates must chain to", tc.ClientAuth)
		} else {
			l.clientCA = c.caBundle("server.tls.client_ca_file", "server.tls.client_ca_file", tc.ClientCAFile)
		}
	default:
		c.problem("server.tls.client_auth", "unknown client_auth %q; use none, request or require", tc.ClientAuth)
	}
	if tc.HSTSMaxAge < 0 {
		c.problem("server.tls.hsts_max_age", "must be 0s (off) or more")
	} else if tc.HSTSMaxAge > 0 {
		l.hsts = strconv.AppendInt([]byte("max-age="), int64(tc.HSTSMaxAge/time.Second), 10)
		if tc.HSTSIncludeSubdomains {
			l.hsts = append(l.hsts, "; includeSubDomains"...)
		}
	}
	if len(tc.Certificates) == 0 {
		c.problem("server.tls.certificates", "the HTTPS listener needs at least one certificate, like - {cert_file: tls/api.pem, key_file: tls/api-key.pem}")
	}
	var pairs []*certs.Source
	names := map[string]int{}
	for i, cc := range tc.Certificates {
		path := fmt.Sprintf("server.tls.certificates[%d]", i)
		name := cc.Name
		if name == "" {
			name = cc.CertFile
		}
		if j, dup := names[name]; dup {
			c.problem(path, "certificate %q is already listed as certificates[%d]; give one of them another name", name, j)
			continue
		}
		names[name] = i
		if src := c.pair(name, path+".cert_file", cc.CertFile, path+".key_file", cc.KeyFile); src != nil {
			pairs = append(pairs, src)
		}
	}
	if len(pairs) == len(tc.Certificates) && len(pairs) > 0 {
		l.store = certs.NewStore(pairs)
		s.tls = l
	}
}

// sameListenAddr reports whether two listen addresses name the same port on overlapping interfaces
// (port 0, any free port, never clashes).
func sameListenAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	return errA == nil && errB == nil && pa == pb && pa != "0" && (ha == hb || ha == "" || hb == "" || ha == "0.0.0.0" || hb == "0.0.0.0")
}

// upstreamTLS compiles upstreams.NAME.tls. It returns nil (the defaults) when nothing is set.
func (c *compiler) upstreamTLS(path string, uc *UpstreamConfig) *upstream.ClientTLS {
	tc := uc.TLS
	if tc == (UpstreamTLSConfig{}) {
		return nil
	}
	path += ".tls"
	anyTLS := false
	for _, t := range uc.Targets {
		if spec, err := upstream.ParseTarget(t.URL); err == nil && spec.TLS {
			anyTLS = true
		}
	}
	if !anyTLS {
		c.problem(path, "tls settings apply to https:// targets, and this upstream has none")
	}
	ct := &upstream.ClientTLS{ServerName: tc.ServerName, InsecureSkipVerify: tc.InsecureSkipVerify}
	if tc.InsecureSkipVerify {
		c.sink.warnf(path+".insecure_skip_verify", "the targets' certificates are not verified: anyone on the path can impersonate them")
		if tc.CAFile != "" {
			c.problem(path+".ca_file", "ca_file is not read with insecure_skip_verify; remove one of them")
		}
	}
	if tc.CAFile != "" && !tc.InsecureSkipVerify {
		ct.Roots = c.caBundle(path+".ca_file", path+".ca_file", tc.CAFile)
	}
	if tc.CertFile != "" || tc.KeyFile != "" {
		ct.Cert = c.pair(path, path+".cert_file", tc.CertFile, path+".key_file", tc.KeyFile)
	}
	return ct
}

func tlsListenOf(sc ServerConfig) string {
	if sc.TLS == nil {
		return ""
	}
	return sc.TLS.Listen
}

// certificateStatus lists the snapshot's certificate and CA sources, by name.
func (s *Snapshot) certificateStatus() []certs.Status {
	out := make([]certs.Status, 0, len(s.sources))
	for _, src := range s.sources {
		out = append(out, src.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sourceFiles are the files behind the snapshot's sources, for the watcher.
func (s *Snapshot) sourceFiles() []string {
	var files []string
	for _, src := range s.sources {
		files = append(files, src.Files()...)
	}
	return files
}

// Certificate files are re-read this long after their directory was last touched (a renewal writes
// two files, often in several steps), and every certPoll whatever happened, as a backstop for
// filesystems without change events.
const (
	certDebounce = 200 * time.Millisecond
	certPoll     = time.Minute
)

// watchCertificates keeps the serving snapshot's certificate, key and CA files current until ctx
// ends: a change in their directories re-reads them, and a version that loads replaces the one in use
// for the next handshake. done is closed when the watch has stopped.
func (s *Server) watchCertificates(ctx context.Context, r *Reloader) (done <-chan struct{}) {
	finished := make(chan struct{})
	w, err := certs.NewWatcher()
	if err != nil {
		s.log.Error().Err(err).Msg("certificate files will not be watched; renewed certificates apply on a config reload")
		close(finished)
		return finished
	}
	track := func() {
		for dir, err := range w.Track(s.Snapshot().sourceFiles()) {
			s.log.Warn().Str("dir", dir).Err(err).Msg("cannot watch a certificate directory; changes there apply within a minute")
		}
	}
	track()
	r.swapped = track
	go func() {
		defer close(finished)
		w.Run(ctx, certDebounce, certPoll, func() {
			s.refreshCertificates()
			track() // a symlink swap may have moved what the files resolve to
		})
	}()
	return finished
}

// refreshCertificates re-reads every source of the serving snapshot, logging what changed and what
// was refused.
func (s *Server) refreshCertificates() {
	now := time.Now()
	for _, src := range s.Snapshot().sources {
		changed, err := src.Refresh(now)
		switch {
		case err != nil:
			s.log.Error().Str("name", src.Name()).Strs("files", src.Files()).Str("problem", err.Error()).
				Msg("certificate files refused; the version in use keeps serving")
		case changed:
			v := src.Current()
			ev := s.log.Info()
			if v.NotAfter.Sub(now) < expiryWarning {
				ev = s.log.Warn()
			}
			ev.Str("name", src.Name()).Strs("files", src.Files()).Str("subject", v.Subject).Time("not_after", v.NotAfter).
				Msg("certificate files reloaded")
		}
	}
}

// logWarnings logs a config's warnings, one line each.
func logWarnings(log zerolog.Logger, ws Problems) {
	for _, w := range ws {
		log.Warn().Str("warning", w.String()).Msg("config warning")
	}
}
