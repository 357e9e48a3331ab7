package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/certs"
	"github.com/weir-gateway/weir/certs/certstest"
)

// End-to-end specifications of HTTPS: real handshakes over loopback against certificates made by the
// test, clients from crypto/tls and net/http.

// tlsFiles is a CA and a directory to write certificates into.
type tlsFiles struct {
	ca        *certstest.CA
	dir       string
	cert, key string // set by oneCertGateway
}

func newTLSFiles(t testing.TB) *tlsFiles {
	return &tlsFiles{ca: certstest.NewCA(t, "weir test CA"), dir: t.TempDir()}
}

// issue writes a server certificate named name for names and returns its cert and key paths.
func (f *tlsFiles) issue(t testing.TB, name string, names ...string) (string, string) {
	return f.ca.Issue(t, certstest.Options{CommonName: name, Names: names}).Write(t, f.dir, name)
}

// clientConfig trusts the test CA and sends sni.
func (f *tlsFiles) clientConfig(sni string) *tls.Config {
	return &tls.Config{RootCAs: f.ca.Pool(), ServerName: sni}
}

// serveBoth serves snap on a plain and an HTTPS listener until the test ends.
func serveBoth(t testing.TB, snap *Snapshot) (plain, secure string, srv *Server) {
	t.Helper()
	srv = NewServer(snap, zerolog.New(testLogWriter{t}), io.Discard)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(pl) }()
	go func() { _ = srv.ServeTLS(sl) }()
	t.Cleanup(func() { _ = srv.fast.Shutdown() })
	return pl.Addr().String(), sl.Addr().String(), srv
}

// compileTLS compiles a config that must be valid.
func compileTLS(t *testing.T, config string) *Snapshot {
	t.Helper()
	snap, err := CompileWith(filepath.Join(t.TempDir(), "config.yaml"), []byte(config), Options{Log: zerolog.Nop(), Metrics: NewMetrics()})
	if err != nil {
		t.Fatalf("config does not compile:\n%v\n--- config:\n%s", err, config)
	}
	return snap
}

// tlsServerBlock is a server section with an HTTPS listener; certs are "cert|key" pairs, extra is
// added to the tls block (indented 4 spaces).
func tlsServerBlock(extra string, pairs ...[2]string) string {
	var b strings.Builder
	b.WriteString("server:\n  listen: \"127.0.0.1:0\"\n  tls:\n    listen: \"127.0.0.1:0\"\n    certificates:\n")
	for _, p := range pairs {
		fmt.Fprintf(&b, "      - {cert_file: %q, key_file: %q}\n", p[0], p[1])
	}
	b.WriteString(extra)
	return b.String()
}

// httpsGet sends GET path with Host host over a new TLS connection made with cfg and returns the
// response (body read) and the connection state.
func httpsGet(t *testing.T, addr string, cfg *tls.Config, host, path string, header ...string) (*http.Response, string) {
	t.Helper()
	resp, body, err := tryHTTPSGet(addr, cfg, host, path, header...)
	if err != nil {
		t.Fatalf("GET https://%s%s: %v", addr, path, err)
	}
	return resp, body
}

func tryHTTPSGet(addr string, cfg *tls.Config, host, path string, header ...string) (*http.Response, string, error) {
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
	req.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

func leafCN(resp *http.Response) string { return resp.TLS.PeerCertificates[0].Subject.CommonName }

func TestTLS_CertificateChosenBySNIAndBothListenersServeTheSameRoutes(t *testing.T) {
	f := newTLSFiles(t)
	apiCert, apiKey := f.issue(t, "api", "api.example.com")
	otherCert, otherKey := f.issue(t, "other", "*.other.test")
	b := startRecordingBackend(t, "b", nil)
	snap := compileTLS(t, tlsServerBlock("", [2]string{apiCert, apiKey}, [2]string{otherCert, otherKey})+oneRouteConfig("", b.Addr))
	plain, secure, _ := serveBoth(t, snap)

	for _, tc := range []struct{ desc, sni, want string }{
		{"the exact name", "api.example.com", "api"},
		{"a name the second certificate's wildcard covers", "shop.other.test", "other"},
		{"a name no certificate covers gets the first", "unknown.test", "api"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := f.clientConfig(tc.sni)
			cfg.InsecureSkipVerify = tc.want == "api" && tc.sni == "unknown.test" // the name is not in it
			resp, body := httpsGet(t, secure, cfg, tc.sni, "/x")
			if resp.StatusCode != 200 || body != "b" || leafCN(resp) != tc.want {
				t.Fatalf("got %d %q from certificate %s, want 200 from %s", resp.StatusCode, body, leafCN(resp), tc.want)
			}
			if got := b.take(t).Header.Get("X-Forwarded-Proto"); got != "https" {
				t.Fatalf("X-Forwarded-Proto upstream: %q", got)
			}
		})
	}
	t.Run("a client without SNI gets the first certificate", func(t *testing.T) {
		conn, err := tls.Dial("tcp", secure, &tls.Config{InsecureSkipVerify: true}) // IP address: no SNI sent
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "api" {
			t.Fatalf("got certificate %s", cn)
		}
	})
	t.Run("the plain listener serves the same route", func(t *testing.T) {
		if resp := get(t, plain, "/x"); resp.StatusCode() != 200 || string(resp.Body()) != "b" {
			t.Fatalf("plain: %d %q", resp.StatusCode(), resp.Body())
		}
		if got := b.take(t).Header.Get("X-Forwarded-Proto"); got != "http" {
			t.Fatalf("X-Forwarded-Proto upstream: %q", got)
		}
	})
}

// oneCertGateway serves a one-route gateway on both listeners, the HTTPS one with a certificate for
// api.example.com (its files in f.cert and f.key).
func oneCertGateway(t *testing.T) (f *tlsFiles, b *recordingBackend, snap *Snapshot, secure string) {
	t.Helper()
	f = newTLSFiles(t)
	f.cert, f.key = f.issue(t, "api", "api.example.com")
	b = startRecordingBackend(t, "b", nil)
	snap = compileTLS(t, tlsServerBlock("", [2]string{f.cert, f.key})+oneRouteConfig("", b.Addr))
	_, secure, _ = serveBoth(t, snap)
	return f, b, snap, secure
}

func TestTLS_OldVersionsRefusedALPNIsHTTP11AndSessionsResume(t *testing.T) {
	f, b, snap, secure := oneCertGateway(t)
	cert, key := f.cert, f.key

	old := f.clientConfig("api.example.com")
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.Dial("tcp", secure, old); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client completed a handshake")
	}

	h2 := f.clientConfig("api.example.com")
	h2.NextProtos = []string{"h2", "http/1.1"}
	c, err := tls.Dial("tcp", secure, h2)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Fatalf("ALPN chose %q; weir has no HTTP/2", p)
	}
	c.Close()

	cfg := f.clientConfig("api.example.com")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := 0; i < 2; i++ {
		resp, _ := httpsGet(t, secure, cfg, "api.example.com", "/x")
		if resumed := resp.TLS.DidResume; resumed != (i == 1) {
			t.Fatalf("connection %d: resumed=%v", i+1, resumed)
		}
	}
	if snap.metrics != nil {
		if got := counterValue(t, snap.metrics.tlsHandshakeFailures.WithLabelValues("protocol_version")); got != 1 {
			t.Fatalf("protocol_version failures counted: %v", got)
		}
	}

	noTickets := compileTLS(t, tlsServerBlock("    session_tickets: false\n", [2]string{cert, key})+oneRouteConfig("", b.Addr))
	_, secureNoTickets, _ := serveBoth(t, noTickets)
	for i := 0; i < 2; i++ {
		if resp, _ := httpsGet(t, secureNoTickets, cfg, "api.example.com", "/x"); resp.TLS.DidResume {
			t.Fatalf("session_tickets false: connection %d resumed", i+1)
		}
	}

	tls13 := compileTLS(t, tlsServerBlock("    min_version: \"1.3\"\n", [2]string{cert, key})+oneRouteConfig("", b.Addr))
	_, secure13, _ := serveBoth(t, tls13)
	v12 := f.clientConfig("api.example.com")
	v12.MaxVersion = tls.VersionTLS12
	if _, _, err := tryHTTPSGet(secure13, v12, "api.example.com", "/x"); err == nil {
		t.Fatal("min_version 1.3 let a TLS 1.2 client in")
	}
	if resp, _ := httpsGet(t, secure13, f.clientConfig("api.example.com"), "api.example.com", "/x"); resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("version %x", resp.TLS.Version)
	}
}

func TestTLS_PlainHTTPToTheHTTPSPortGets400(t *testing.T) {
	_, b, snap, secure := oneCertGateway(t)
	got := rawExchange(t, secure, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") || !strings.Contains(got, "https://") {
		t.Fatalf("plain HTTP on the TLS port got %q", got)
	}
	b.expectNone(t)
	if n := counterValue(t, snap.metrics.tlsHandshakeFailures.WithLabelValues("plain_http")); n != 1 {
		t.Fatalf("plain_http failures: %v", n)
	}
}

func TestTLS_RedirectToHTTPSAndHSTS(t *testing.T) {
	f := newTLSFiles(t)
	cert, key := f.issue(t, "api", "api.example.com")
	b := startRecordingBackend(t, "b", nil)
	config := strings.Replace(tlsServerBlock("    hsts_max_age: 8760h\n", [2]string{cert, key}), "server:\n",
		"server:\n  redirect_https: true\n  redirect_https_port: 443\n", 1) + oneRouteConfig("", b.Addr)
	snap := compileTLS(t, config)
	plain, secure, _ := serveBoth(t, snap)

	resp, _ := exchange(t, plain, rawRequest("POST /a/b%20c?x=1&y=2 HTTP/1.1", "Host: API.example.com:8080", "Content-Length: 2")+"hi")
	if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://api.example.com/a/b%20c?x=1&y=2" {
		t.Fatalf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get(headerHSTS) != "" {
		t.Fatal("HSTS sent over plain HTTP")
	}
	resp, _ = exchange(t, plain, rawRequest("GET / HTTP/1.1", "Host: evil.test\"><script>"))
	if resp.StatusCode != 400 {
		t.Fatalf("a host unfit for a Location got %d", resp.StatusCode)
	}
	b.expectNone(t)

	ok, _ := httpsGet(t, secure, f.clientConfig("api.example.com"), "api.example.com", "/x")
	if ok.StatusCode != 200 || ok.Header.Get(headerHSTS) != "max-age=31536000" {
		t.Fatalf("HTTPS: %d, HSTS %q", ok.StatusCode, ok.Header.Get(headerHSTS))
	}
	b.take(t)
	// weir's own answers carry it too.
	snap404 := compileTLS(t, config+"  - name: only\n    match: {path: /only}\n    upstream: backend\n")
	_, secure404, _ := serveBoth(t, snap404)
	nf, _ := httpsGet(t, secure404, f.clientConfig("api.example.com"), "api.example.com", "/nothing/here")
	_ = nf
	if nf.Header.Get(headerHSTS) != "max-age=31536000" {
		t.Fatalf("a gateway error over HTTPS lacks HSTS: %v", nf.Header)
	}

	// Without redirect_https_port, the TLS listener's own port is named.
	snapPort := compileTLS(t, strings.Replace(tlsServerBlock("", [2]string{cert, key}), "listen: \"127.0.0.1:0\"\n    certificates",
		"listen: \"127.0.0.1:8443\"\n    certificates", 1)+"  redirect_https: true\n"+oneRouteConfig("", b.Addr))
	plainPort, _ := serveSnapshot(t, snapPort)
	resp, _ = exchange(t, plainPort, rawRequest("GET /p HTTP/1.1", "Host: api.example.com"))
	if loc := resp.Header.Get("Location"); loc != "https://api.example.com:8443/p" {
		t.Fatalf("Location %q", loc)
	}
}

func TestTLS_ClientCertificates(t *testing.T) {
	f := newTLSFiles(t)
	cert, key := f.issue(t, "api", "api.example.com")
	caFile := f.ca.WriteCA(t, filepath.Join(f.dir, "clients.pem"))
	client := f.ca.Issue(t, certstest.Options{CommonName: "billing-service", Client: true})
	stranger := certstest.NewCA(t, "another CA").Issue(t, certstest.Options{CommonName: "mallory", Client: true})
	b := startRecordingBackend(t, "b", nil)
	withCert := func(l *certstest.Leaf) *tls.Config {
		cfg := f.clientConfig("api.example.com")
		if l != nil {
			// Sent whatever CAs the server names (crypto/tls would send none it does not name).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &l.TLS, nil }
		}
		return cfg
	}
	spoof := []string{headerClientCertSubject, "CN=admin", headerClientCertFingerprint, "00"}

	t.Run("require", func(t *testing.T) {
		snap := compileTLS(t, tlsServerBlock(fmt.Sprintf("    client_auth: require\n    client_ca_file: %q\n", caFile), [2]string{cert, key})+oneRouteConfig("", b.Addr))
		_, secure, _ := serveBoth(t, snap)
		for _, tc := range []struct {
			desc   string
			leaf   *certstest.Leaf
			reason string
		}{{"no certificate", nil, "no_client_certificate"}, {"a certificate from another CA", stranger, "bad_client_certificate"}} {
			if _, _, err := tryHTTPSGet(secure, withCert(tc.leaf), "api.example.com", "/x"); err == nil {
				t.Fatalf("%s: the request went through", tc.desc)
			}
			waitFor(t, tc.reason+" counted", func() bool {
				return counterValue(t, snap.metrics.tlsHandshakeFailures.WithLabelValues(tc.reason)) == 1
			})
		}
		b.expectNone(t)
		resp, _ := httpsGet(t, secure, withCert(client), "api.example.com", "/x", spoof...)
		if resp.StatusCode != 200 {
			t.Fatalf("a verified client got %d", resp.StatusCode)
		}
		got := b.take(t).Header
		if s := got.Values(headerClientCertSubject); len(s) != 1 || s[0] != "CN=billing-service,O=weir tests" {
			t.Fatalf("subject upstream: %q", s)
		}
		if fp := got.Values(headerClientCertFingerprint); len(fp) != 1 || fp[0] != client.Fingerprint() {
			t.Fatalf("fingerprint upstream: %q, want %s", fp, client.Fingerprint())
		}
	})
	t.Run("request", func(t *testing.T) {
		snap := compileTLS(t, tlsServerBlock(fmt.Sprintf("    client_auth: request\n    client_ca_file: %q\n", caFile), [2]string{cert, key})+oneRouteConfig("", b.Addr))
		_, secure, _ := serveBoth(t, snap)
		resp, _ := httpsGet(t, secure, withCert(nil), "api.example.com", "/x", spoof...)
		if resp.StatusCode != 200 {
			t.Fatalf("an anonymous client got %d", resp.StatusCode)
		}
		if h := b.take(t).Header; h.Get(headerClientCertSubject) != "" || h.Get(headerClientCertFingerprint) != "" {
			t.Fatalf("spoofed identity reached the upstream: %v", h)
		}
		if _, _, err := tryHTTPSGet(secure, withCert(stranger), "api.example.com", "/x"); err == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
		httpsGet(t, secure, withCert(client), "api.example.com", "/x")
		if got := b.take(t).Header.Get(headerClientCertSubject); got != "CN=billing-service,O=weir tests" {
			t.Fatalf("subject upstream: %q", got)
		}
	})
	t.Run("none: client headers of those names never pass", func(t *testing.T) {
		snap := compileTLS(t, tlsServerBlock("", [2]string{cert, key})+
			"  trusted_proxies: [127.0.0.1]\n"+oneRouteConfig("", b.Addr))
		plain, secure, _ := serveBoth(t, snap)
		httpsGet(t, secure, withCert(client), "api.example.com", "/x", spoof...)
		resp, _ := exchange(t, plain, rawRequest("GET /x HTTP/1.1", "Host: h", "X-Client-Cert-Subject: CN=admin", "X_client_cert_fingerprint: 00"))
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		for _, r := range b.requests() {
			for name := range r.Header {
				if strings.Contains(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "client-cert") {
					t.Fatalf("%s reached the upstream from a trusted peer", name)
				}
			}
		}
	})
}

// startTLSBackend serves h over TLS with leaf; with clientCAs set it requires client certificates.
func startTLSBackend(t *testing.T, leaf *certstest.Leaf, clientCAs *x509.CertPool, h fasthttp.RequestHandler) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Refused handshakes are what some tests are about; fasthttp would log each to stderr.
	srv := &fasthttp.Server{Handler: h, NoDefaultServerHeader: true, Logger: fasthttpLogger{zerolog.Nop()}}
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

const tlsFailed = "upstream TLS handshake failed"

func TestTLS_HTTPSUpstreams(t *testing.T) {
	f := newTLSFiles(t)
	caFile := f.ca.WriteCA(t, filepath.Join(f.dir, "upstream-ca.pem"))
	serverLeaf := f.ca.Issue(t, certstest.Options{CommonName: "backend", Names: []string{"backend.internal", "127.0.0.1"}})
	echoPeer := func(ctx *fasthttp.RequestCtx) {
		who := "anonymous"
		if st := ctx.TLSConnectionState(); st != nil && len(st.PeerCertificates) > 0 {
			who = st.PeerCertificates[0].Subject.CommonName
		}
		ctx.WriteString("hello " + who)
	}
	plainBackend := startTLSBackend(t, serverLeaf, nil, echoPeer)
	mtlsBackend := startTLSBackend(t, serverLeaf, f.ca.Pool(), echoPeer)
	clientCert, clientKey := f.ca.Issue(t, certstest.Options{CommonName: "weir", Client: true}).Write(t, f.dir, "weir-client")
	otherCA := certstest.NewCA(t, "other").WriteCA(t, filepath.Join(f.dir, "other-ca.pem"))

	cfg := func(target, tlsBlock string) string {
		return fmt.Sprintf("upstreams:\n  backend:\n    targets: [{url: \"https://%s\"}]\n    tls: %s\nroutes:\n  - name: all\n    match: {path: \"/{rest:*}\"}\n    upstream: backend\n", target, tlsBlock)
	}
	for _, tc := range []struct {
		desc, target, tls string
		status            int
		body              string // for 200: the body; for 502: the reason
	}{
		{"a private CA", plainBackend, fmt.Sprintf("{ca_file: %q}", caFile), 200, "hello anonymous"},
		{"a private CA and a server name", plainBackend, fmt.Sprintf("{ca_file: %q, server_name: backend.internal}", caFile), 200, "hello anonymous"},
		{"the wrong CA", plainBackend, fmt.Sprintf("{ca_file: %q}", otherCA), 502, tlsFailed},
		{"a name the certificate lacks", plainBackend, fmt.Sprintf("{ca_file: %q, server_name: other.internal}", caFile), 502, tlsFailed},
		{"the system roots do not know a private CA", plainBackend, "{}", 502, tlsFailed},
		{"insecure_skip_verify", plainBackend, "{insecure_skip_verify: true}", 200, "hello anonymous"},
		{"upstream mTLS with a client certificate", mtlsBackend, fmt.Sprintf("{ca_file: %q, cert_file: %q, key_file: %q}", caFile, clientCert, clientKey), 200, "hello weir"},
		// In TLS 1.3 the client's side of the handshake ends before the server checks its certificate:
		// the refusal arrives as the answer to the request.
		{"upstream mTLS without one", mtlsBackend, fmt.Sprintf("{ca_file: %q}", caFile), 502, "upstream closed the connection"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			gw, _ := startGateway(t, cfg(tc.target, tc.tls))
			start := time.Now()
			resp := get(t, gw, "/x")
			if resp.StatusCode() != tc.status {
				t.Fatalf("got %d %q, want %d", resp.StatusCode(), resp.Body(), tc.status)
			}
			if tc.status == 200 && string(resp.Body()) != tc.body {
				t.Fatalf("body %q, want %q", resp.Body(), tc.body)
			}
			if tc.status == 502 {
				if !strings.Contains(string(resp.Body()), `"error":"`+tc.body+`"`) {
					t.Fatalf("502 body %q", resp.Body())
				}
				if time.Since(start) > 3*time.Second {
					t.Fatalf("the failure took %s", time.Since(start))
				}
			}
		})
	}
}

// writeRenamed replaces file's content the way editors and certbot do: a new file renamed over it.
func writeRenamed(t *testing.T, file string, data []byte) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// secretDir lays out certificate files as a Kubernetes Secret volume does: tls.crt and tls.key are
// symlinks into ..data, itself a symlink to a versioned directory that each update replaces.
type secretDir struct {
	dir string
	n   int
}

func (s *secretDir) update(t *testing.T, l *certstest.Leaf) {
	t.Helper()
	s.n++
	version := fmt.Sprintf("..2026_12_02_%d", s.n)
	must(t, os.Mkdir(filepath.Join(s.dir, version), 0o755))
	must(t, os.WriteFile(filepath.Join(s.dir, version, "tls.crt"), l.CertPEM, 0o600))
	must(t, os.WriteFile(filepath.Join(s.dir, version, "tls.key"), l.KeyPEM, 0o600))
	must(t, os.Symlink(version, filepath.Join(s.dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(s.dir, "..data_tmp"), filepath.Join(s.dir, "..data")))
	if s.n == 1 {
		must(t, os.Symlink("..data/tls.crt", filepath.Join(s.dir, "tls.crt")))
		must(t, os.Symlink("..data/tls.key", filepath.Join(s.dir, "tls.key")))
	} else {
		must(t, os.RemoveAll(filepath.Join(s.dir, fmt.Sprintf("..2026_12_02_%d", s.n-1))))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTLS_CertificatesRotateWithoutARestart(t *testing.T) {
	f := newTLSFiles(t)
	b := startRecordingBackend(t, "b", nil)
	issue := func(cn string) *certstest.Leaf {
		return f.ca.Issue(t, certstest.Options{CommonName: cn, Names: []string{"api.example.com"}})
	}
	inPlace, renamed := filepath.Join(f.dir, "inplace"), filepath.Join(f.dir, "renamed")
	secrets := &secretDir{dir: filepath.Join(f.dir, "secret")}
	must(t, os.Mkdir(inPlace, 0o755))
	must(t, os.Mkdir(renamed, 0o755))
	must(t, os.Mkdir(secrets.dir, 0o755))
	ipCert, ipKey := issue("inplace-1").Write(t, inPlace, "api")
	rnCert, rnKey := issue("renamed-1").Write(t, renamed, "api")
	secrets.update(t, issue("secret-1"))

	for _, tc := range []struct {
		desc      string
		cert, key string
		rotate    func(l *certstest.Leaf)
	}{
		{"written in place", ipCert, ipKey, func(l *certstest.Leaf) {
			must(t, os.WriteFile(ipCert, l.CertPEM, 0o600))
			must(t, os.WriteFile(ipKey, l.KeyPEM, 0o600))
		}},
		{"renamed over", rnCert, rnKey, func(l *certstest.Leaf) {
			writeRenamed(t, rnCert, l.CertPEM)
			writeRenamed(t, rnKey, l.KeyPEM)
		}},
		{"a Secret volume's ..data swap", filepath.Join(secrets.dir, "tls.crt"), filepath.Join(secrets.dir, "tls.key"), func(l *certstest.Leaf) {
			secrets.update(t, l)
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			path := writeConfigFile(t, tlsServerBlock("", [2]string{tc.cert, tc.key})+"admin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\n"+oneRouteConfig("", b.Addr))
			g := startRun(t, path)
			cfg := f.clientConfig("api.example.com")
			first, _ := httpsGet(t, g.https, cfg, "api.example.com", "/x")
			before := leafCN(first)

			// A keep-alive client that stays connected through the rotation.
			tr := &http.Transport{TLSClientConfig: cfg, MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			kept := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			keptGet := func() *http.Response {
				t.Helper()
				resp, err := kept.Get("https://" + g.https + "/x")
				if err != nil {
					t.Fatalf("keep-alive client: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			keptFirst := keptGet()

			next := strings.TrimSuffix(before, "-1") + "-2"
			tc.rotate(issue(next))
			waitForLong(t, "new handshakes to get the renewed certificate", func() bool {
				resp, _ := httpsGet(t, g.https, cfg, "api.example.com", "/x")
				return leafCN(resp) == next
			})
			keptAfter := keptGet()
			if leafCN(keptAfter) != leafCN(keptFirst) || keptAfter.TLS.DidResume {
				t.Fatalf("the open connection changed: %s -> %s", leafCN(keptFirst), leafCN(keptAfter))
			}
			b.reset()
		})
	}
}

// waitForLong is waitFor for events that pass through the filesystem watch (debounced 200 ms).
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, what, cond)
}

func TestTLS_BadRenewalRefusedAndThePreviousCertificateKept(t *testing.T) {
	f := newTLSFiles(t)
	b := startRecordingBackend(t, "b", nil)
	cert, key := f.issue(t, "good", "api.example.com")
	path := writeConfigFile(t, tlsServerBlock("", [2]string{cert, key})+"admin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\n"+oneRouteConfig("", b.Addr))
	g := startRun(t, path)
	cfg := f.clientConfig("api.example.com")

	// A key that belongs to another certificate.
	other := f.ca.Issue(t, certstest.Options{CommonName: "other", Names: []string{"api.example.com"}})
	must(t, os.WriteFile(cert, other.CertPEM, 0o600))
	waitForLong(t, "GET /config to report the refused pair", func() bool {
		for _, c := range g.status(t).Certificates {
			if strings.Contains(c.Error, "does not hold the certificate's private key") && c.Subject == "CN=good,O=weir tests" {
				return true
			}
		}
		return false
	})
	if resp, _ := httpsGet(t, g.https, cfg, "api.example.com", "/x"); leafCN(resp) != "good" || resp.StatusCode != 200 {
		t.Fatalf("after a bad renewal: %d from %s", resp.StatusCode, leafCN(resp))
	}
	metrics := g.scrape(t)
	if !hasSample(metrics, fmt.Sprintf("weir_tls_certificate_refused{name=%q} 1", cert)) {
		t.Fatalf("refused gauge missing:\n%s", grepLines(metrics, "weir_tls"))
	}
	if !strings.Contains(metrics, fmt.Sprintf("weir_tls_certificate_expiry_timestamp_seconds{name=%q}", cert)) {
		t.Fatalf("expiry gauge missing:\n%s", grepLines(metrics, "weir_tls"))
	}
	for _, c := range g.status(t).Certificates {
		if strings.Contains(fmt.Sprint(c), "PRIVATE KEY") {
			t.Fatal("GET /config shows key material")
		}
	}

	// Completing the renewal heals it.
	must(t, os.WriteFile(key, other.KeyPEM, 0o600))
	waitForLong(t, "the completed renewal", func() bool {
		resp, _ := httpsGet(t, g.https, cfg, "api.example.com", "/x")
		return leafCN(resp) == "other"
	})
	if st := g.status(t).Certificates; len(st) != 1 || st[0].Error != "" {
		t.Fatalf("status after healing: %+v", st)
	}
}

func TestTLS_ReloadAddsACertificate(t *testing.T) {
	f := newTLSFiles(t)
	b := startRecordingBackend(t, "b", nil)
	apiCert, apiKey := f.issue(t, "api", "api.example.com")
	newCert, newKey := f.issue(t, "shop", "shop.example.com")
	rest := "admin: {listen: \"127.0.0.1:0\"}\nreload: {debounce: 20ms}\nlog: {access: false}\n" + oneRouteConfig("", b.Addr)
	path := writeConfigFile(t, tlsServerBlock("", [2]string{apiCert, apiKey})+rest)
	g := startRun(t, path)
	if resp, _ := httpsGet(t, g.https, f.clientConfig("api.example.com"), "shop.example.com", "/x"); leafCN(resp) != "api" {
		t.Fatal("unexpected certificate before the reload")
	}
	updated := tlsServerBlock("", [2]string{apiCert, apiKey}, [2]string{newCert, newKey}) + rest
	must(t, os.WriteFile(path, []byte(updated), 0o644))
	g.waitApplied(t, updated)
	if resp, _ := httpsGet(t, g.https, f.clientConfig("shop.example.com"), "shop.example.com", "/x"); leafCN(resp) != "shop" {
		t.Fatalf("after the reload shop.example.com got %s", leafCN(resp))
	}
	// A reload naming a missing file is refused; the listener keeps serving.
	broken := tlsServerBlock("", [2]string{apiCert, apiKey}, [2]string{filepath.Join(f.dir, "missing.pem"), newKey}) + rest
	must(t, os.WriteFile(path, []byte(broken), 0o644))
	waitForLong(t, "the broken reload to be rejected", func() bool {
		a := g.status(t).LastAttempt
		return a != nil && a.Result == Rejected && strings.Contains(strings.Join(a.Problems, "\n"), "server.tls.certificates[1].cert_file: cannot read")
	})
	if resp, _ := httpsGet(t, g.https, f.clientConfig("shop.example.com"), "shop.example.com", "/x"); leafCN(resp) != "shop" {
		t.Fatal("the rejected reload changed the certificates")
	}
}

func TestTLS_HandshakeStalledMidwayCutOffByReadTimeout(t *testing.T) {
	f := newTLSFiles(t)
	cert, key := f.issue(t, "api", "api.example.com")
	b := startRecordingBackend(t, "b", nil)
	snap := compileTLS(t, strings.Replace(tlsServerBlock("", [2]string{cert, key}), "server:\n", "server:\n  read_timeout: 300ms\n", 1)+oneRouteConfig("", b.Addr))
	_, secure, _ := serveBoth(t, snap)
	conn, err := net.Dial("tcp", secure)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a ClientHello record header, then nothing.
	if _, err := conn.Write([]byte{0x16, 0x03}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(conn).ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("the stalled handshake was not cut off: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	must(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func TestCompile_TLSProblemsAndWarnings(t *testing.T) {
	f := newTLSFiles(t)
	cert, key := f.issue(t, "api", "api.example.com")
	_, otherKey := f.issue(t, "other", "other.example.com")
	soonCert, soonKey := f.ca.Issue(t, certstest.Options{CommonName: "soon", NotAfter: time.Now().Add(72 * time.Hour)}).Write(t, f.dir, "soon")
	oldCert, oldKey := f.ca.Issue(t, certstest.Options{CommonName: "old", NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}).Write(t, f.dir, "old")
	caFile := f.ca.WriteCA(t, filepath.Join(f.dir, "ca.pem"))
	routes := "upstreams:\n  api:\n    targets: [{url: \"http://127.0.0.1:9001\"}]\nroutes:\n  - {name: r, match: {path: /}, upstream: api}\n"
	httpsRoutes := "upstreams:\n  api:\n    targets: [{url: \"https://127.0.0.1:9001\"}]\n    tls: %s\nroutes:\n  - {name: r, match: {path: /}, upstream: api}\n"
	server := func(tlsBody string) string { return "server:\n  tls:\n" + tlsBody }
	pair := func(c, k string) string {
		return fmt.Sprintf("    certificates: [{cert_file: %q, key_file: %q}]\n", c, k)
	}
	cases := []struct {
		desc, yaml string
		problems   []string // substrings, one per problem, in order
		warnings   []string
	}{
		{desc: "a valid listener", yaml: server(pair(cert, key)) + routes},
		{desc: "only TLS", yaml: "server:\n  listen: \"\"\n  tls:\n" + pair(cert, key) + routes},
		{desc: "no listener at all", yaml: "server:\n  listen: \"\"\n" + routes,
			problems: []string{`test.yaml:2: server.listen: no listener: set server.listen`}},
		{desc: "no certificates", yaml: server("    listen: \":8443\"\n") + routes,
			problems: []string{`test.yaml:2: server.tls.certificates: the HTTPS listener needs at least one certificate`}},
		{desc: "a key of another certificate", yaml: server(pair(cert, otherKey)) + routes,
			problems: []string{`test.yaml:3: server.tls.certificates[0].cert_file: the key file does not hold the certificate's private key`}},
		{desc: "a missing file", yaml: server(pair(filepath.Join(f.dir, "nope.pem"), key)) + routes,
			problems: []string{`test.yaml:3: server.tls.certificates[0].cert_file: cannot read ` + filepath.Join(f.dir, "nope.pem")}},
		{desc: "key_file missing", yaml: server(fmt.Sprintf("    certificates: [{cert_file: %q}]\n", cert)) + routes,
			problems: []string{`test.yaml:3: server.tls.certificates[0].key_file: key_file is needed with cert_file`}},
		{desc: "an expired certificate", yaml: server(pair(oldCert, oldKey)) + routes,
			problems: []string{`server.tls.certificates[0].cert_file: the certificate expired at`}},
		{desc: "a certificate expiring within 14 days", yaml: server(pair(soonCert, soonKey)) + routes,
			warnings: []string{`test.yaml:3: server.tls.certificates[0].cert_file: warning: the certificate expires in 72h`}},
		{desc: "bad version, client_auth, HSTS", yaml: server(pair(cert, key)+"    min_version: \"1.1\"\n    client_auth: maybe\n    hsts_max_age: -1s\n") + routes,
			problems: []string{`test.yaml:4: server.tls.min_version: unknown TLS version "1.1"; use "1.2" or "1.3"`,
				`test.yaml:5: server.tls.client_auth: unknown client_auth "maybe"`, `test.yaml:6: server.tls.hsts_max_age: must be 0s (off) or more`}},
		{desc: "require without a CA", yaml: server(pair(cert, key)+"    client_auth: require\n") + routes,
			problems: []string{`server.tls.client_ca_file: client_auth require needs client_ca_file`}},
		{desc: "a CA without client_auth", yaml: server(pair(cert, key)+fmt.Sprintf("    client_ca_file: %q\n", caFile)) + routes,
			problems: []string{`test.yaml:4: server.tls.client_ca_file: client_ca_file is only read when client_auth is request or require`}},
		{desc: "a CA file that is not PEM", yaml: server(pair(cert, key)+fmt.Sprintf("    client_auth: request\n    client_ca_file: %q\n", key)) + routes,
			problems: []string{`test.yaml:5: server.tls.client_ca_file: the CA file holds no PEM certificate`}},
		{desc: "the same certificate twice", yaml: server(fmt.Sprintf("    certificates: [{cert_file: %q, key_file: %q}, {cert_file: %q, key_file: %q}]\n", cert, key, cert, key)) + routes,
			problems: []string{`server.tls.certificates[1]: certificate "` + cert + `" is already listed as certificates[0]`}},
		{desc: "redirect without TLS", yaml: "server:\n  redirect_https: true\n" + routes,
			problems: []string{`test.yaml:2: server.redirect_https: redirecting to HTTPS needs server.tls`}},
		{desc: "the TLS listener on the plain port", yaml: "server:\n  listen: \":8080\"\n  tls:\n    listen: \"0.0.0.0:8080\"\n" + pair(cert, key) + routes,
			problems: []string{`test.yaml:4: server.tls.listen: the HTTPS listener cannot share server.listen's address`}},
		{desc: "upstream TLS settings on plain targets", yaml: strings.Replace(fmt.Sprintf(httpsRoutes, fmt.Sprintf("{ca_file: %q}", caFile)), "https://", "http://", 1),
			problems: []string{`test.yaml:4: upstreams.api.tls: tls settings apply to https:// targets, and this upstream has none`}},
		{desc: "upstream client certificate without its key", yaml: fmt.Sprintf(httpsRoutes, fmt.Sprintf("{cert_file: %q}", cert)),
			problems: []string{`test.yaml:4: upstreams.api.tls.key_file: key_file is needed with cert_file`}},
		{desc: "insecure_skip_verify is a warning", yaml: fmt.Sprintf(httpsRoutes, "{insecure_skip_verify: true}"),
			warnings: []string{`test.yaml:4: upstreams.api.tls.insecure_skip_verify: warning: the targets' certificates are not verified`}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			snap, err := Compile("test.yaml", []byte(tc.yaml))
			var got []string
			if err != nil {
				for _, p := range err.(Problems) {
					got = append(got, p.String())
				}
			}
			check := func(kind string, got, want []string) {
				t.Helper()
				ok := len(got) == len(want)
				for i := 0; ok && i < len(want); i++ {
					ok = strings.Contains(got[i], want[i])
				}
				if !ok {
					t.Errorf("%s differ\n--- got:\n%s\n--- want (substrings):\n%s\n--- config:\n%s", kind, strings.Join(got, "\n"), strings.Join(want, "\n"), tc.yaml)
				}
			}
			check("problems", got, tc.problems)
			if err == nil {
				var warnings []string
				for _, w := range snap.Warnings {
					warnings = append(warnings, w.String())
				}
				check("warnings", warnings, tc.warnings)
			}
		})
	}
}

func TestCompile_TLSPathsAreRelativeToTheConfigFile(t *testing.T) {
	f := newTLSFiles(t)
	must(t, os.Mkdir(filepath.Join(f.dir, "tls"), 0o755))
	f.ca.Issue(t, certstest.Options{CommonName: "api", Names: []string{"api.example.com"}}).Write(t, filepath.Join(f.dir, "tls"), "api")
	path := filepath.Join(f.dir, "config.yaml")
	must(t, os.WriteFile(path, []byte("server:\n  tls:\n    certificates: [{cert_file: tls/api.pem, key_file: tls/api-key.pem}]\n"+
		"upstreams:\n  api:\n    targets: [{url: \"http://127.0.0.1:9001\"}]\nroutes:\n  - {name: r, match: {path: /}, upstream: api}\n"), 0o644))
	snap, err := LoadFile(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.certificateStatus(); len(st) != 1 || st[0].Files[0] != filepath.Join(f.dir, "tls", "api.pem") || st[0].Name != "tls/api.pem" {
		t.Fatalf("status %+v", st)
	}
}

func TestTLS_UpstreamCABundleAndClientCertificateRotate(t *testing.T) {
	f := newTLSFiles(t)
	serverLeaf := f.ca.Issue(t, certstest.Options{CommonName: "backend", Names: []string{"127.0.0.1"}})
	backend := startTLSBackend(t, serverLeaf, f.ca.Pool(), func(ctx *fasthttp.RequestCtx) {
		ctx.WriteString("hello " + ctx.TLSConnectionState().PeerCertificates[0].Subject.CommonName)
	})
	caFile := certstest.NewCA(t, "not the backend's").WriteCA(t, filepath.Join(f.dir, "upstream-ca.pem"))
	clientCert, clientKey := f.ca.Issue(t, certstest.Options{CommonName: "weir-1", Client: true}).Write(t, f.dir, "client")
	path := writeConfigFile(t, fmt.Sprintf("server: {listen: \"127.0.0.1:0\"}\nadmin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\n"+
		"upstreams:\n  backend:\n    targets: [{url: \"https://%s\"}]\n    retries: {attempts: 1}\n    passive_health: {consecutive_failures: 0}\n    idle_conn_timeout: 10ms\n"+
		"    tls: {ca_file: %q, cert_file: %q, key_file: %q}\nroutes:\n  - {name: all, match: {path: \"/{rest:*}\"}, upstream: backend}\n",
		backend, caFile, clientCert, clientKey))
	g := startRun(t, path)
	if code := statusAt(t, g.public, "/x"); code != 502 {
		t.Fatalf("with a CA that did not sign the backend: %d", code)
	}
	writeRenamed(t, caFile, f.ca.PEM)
	body := func() string {
		_, b, err := fasthttp.GetTimeout(nil, "http://"+g.public+"/x", 5*time.Second)
		must(t, err)
		return string(b)
	}
	waitForLong(t, "the rotated CA bundle to be used", func() bool { return body() == "hello weir-1" })

	renewed := f.ca.Issue(t, certstest.Options{CommonName: "weir-2", Client: true})
	writeRenamed(t, clientKey, renewed.KeyPEM)
	writeRenamed(t, clientCert, renewed.CertPEM)
	// Pooled connections keep the certificate they were made with (idle_conn_timeout is short here);
	// new ones present the renewed one.
	waitForLong(t, "the renewed client certificate on a new connection", func() bool {
		time.Sleep(50 * time.Millisecond) // idle long enough for the pooled connection to be closed
		return body() == "hello weir-2"
	})
}

func TestTLS_FallbackCertificateServesHTTPSWhenTheConfigHasNone(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	cert, err := certs.SelfSigned("localhost", "127.0.0.1")
	must(t, err)
	path := writeConfigFile(t, "server: {listen: \"127.0.0.1:0\"}\nadmin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\n"+oneRouteConfig("", b.Addr))
	g := startRunWith(t, path, RunConfig{FallbackTLS: &cert, FallbackTLSListen: "127.0.0.1:0"})
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	resp, body := httpsGet(t, g.https, &tls.Config{RootCAs: pool}, "localhost", "/x")
	if resp.StatusCode != 200 || body != "b" {
		t.Fatalf("demo HTTPS: %d %q", resp.StatusCode, body)
	}
	// A config that adds server.tls later needs a restart for its listener.
	f := newTLSFiles(t)
	c, k := f.issue(t, "api", "api.example.com")
	updated := "admin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\n" + strings.Replace(tlsServerBlock("", [2]string{c, k}), "127.0.0.1:0\"\n    certificates", "127.0.0.1:0\"\n    certificates", 1) + oneRouteConfig("", b.Addr)
	must(t, os.WriteFile(path, []byte(updated), 0o644))
	g.sighup <- struct{}{}
	waitForLong(t, "the reload", func() bool { return g.status(t).Hash == contentHash([]byte(updated)) })
	if rr := g.status(t).RestartRequired; !slices.Contains(rr, "server.tls.listen") {
		t.Fatalf("restart_required %v", rr)
	}
	// Meanwhile the open HTTPS listener serves the config's certificate.
	resp, _ = httpsGet(t, g.https, f.clientConfig("api.example.com"), "api.example.com", "/x")
	if leafCN(resp) != "api" {
		t.Fatalf("got %s", leafCN(resp))
	}
}

func TestTLS_ClientCARotationEndsSessionsVerifiedUnderTheOldBundle(t *testing.T) {
	f := newTLSFiles(t)
	b := startRecordingBackend(t, "b", nil)
	cert, key := f.issue(t, "api", "api.example.com")
	caFile := f.ca.WriteCA(t, filepath.Join(f.dir, "clients.pem"))
	client := f.ca.Issue(t, certstest.Options{CommonName: "client", Client: true})
	path := writeConfigFile(t, tlsServerBlock(fmt.Sprintf("    client_auth: require\n    client_ca_file: %q\n", caFile), [2]string{cert, key})+
		"admin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\n"+oneRouteConfig("", b.Addr))
	g := startRun(t, path)
	cfg := f.clientConfig("api.example.com")
	cfg.Certificates = []tls.Certificate{client.TLS}
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := 0; i < 2; i++ {
		if resp, _ := httpsGet(t, g.https, cfg, "api.example.com", "/x"); resp.TLS.DidResume != (i == 1) {
			t.Fatalf("connection %d: resumed=%v", i+1, resp.TLS.DidResume)
		}
	}
	// The client's CA is dropped from the bundle.
	writeRenamed(t, caFile, certstest.NewCA(t, "the only trusted one now").PEM)
	waitForLong(t, "the client to be refused", func() bool {
		_, _, err := tryHTTPSGet(g.https, cfg, "api.example.com", "/x")
		return err != nil
	})
}
