package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

const (
	headerClientCertSubject     = "X-Client-Cert-Subject"
	headerClientCertFingerprint = "X-Client-Cert-Fingerprint"
	headerHSTS                  = "Strict-Transport-Security"
)

// newTLSRoot is the HTTPS listener's tls.Config: it only hands each handshake the serving snapshot's
// config. It lives as long as the listener, and so do the session ticket keys crypto/tls generates and
// rotates in it, which seal tickets for every snapshot's config (crypto/tls uses the root config's
// keys when GetConfigForClient's answer has none of its own).
func (s *Server) newTLSRoot() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			l := s.current.Load().tls
			if l == nil {
				l = s.fallbackTLS
			}
			if l == nil {
				return nil, errTLSOff
			}
			return l.config(), nil
		},
	}
}

var errTLSOff = errors.New("server.tls was removed from the config; restart weir to close the HTTPS listener")

// tlsNetListener turns accepted connections into TLS server connections that count their failed
// handshakes (fasthttp would swallow the errors) and remember the client's verified certificate.
type tlsNetListener struct {
	net.Listener
	cfg *tls.Config
	srv *Server
}

func (l *tlsNetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: tls.Server(c, l.cfg), raw: c, srv: l.srv}, nil
}

// tlsConn is a TLS server connection that reports its handshake's outcome at its first Read. fasthttp
// runs the handshake itself first, under server.read_timeout and write_timeout, so a client that
// stalls mid-handshake is cut off like one that stalls mid-request, and ignores its error; the first
// Read then gets that error from crypto/tls. It embeds *tls.Conn, which is how fasthttp's ctx.IsTLS
// and TLSConnectionState recognize it. Only the connection's serving goroutine reads it.
type tlsConn struct {
	*tls.Conn
	raw    net.Conn
	srv    *Server
	shaken bool
	// subject and fingerprint describe the verified client certificate, worked out once per
	// connection for the X-Client-Cert-* headers; nil without one.
	subject, fingerprint []byte
}

func (c *tlsConn) Read(p []byte) (int, error) {
	if !c.shaken {
		c.shaken = true
		if err := c.Conn.Handshake(); err != nil {
			c.handshakeFailed(err)
			return 0, handshakeError{err}
		}
		c.identify()
	}
	return c.Conn.Read(p)
}

func (c *tlsConn) identify() {
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 {
		return
	}
	leaf := st.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	c.fingerprint = hex.AppendEncode(nil, sum[:])
	c.subject = headerSafe(leaf.Subject.String())
}

// handshakeError is a failed handshake, already counted and logged: fasthttpLogger drops fasthttp's
// own line about it, since anyone can fail handshakes as often as they like.
type handshakeError struct{ err error }

func (e handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e handshakeError) Unwrap() error { return e.err }

// headerSafe keeps a value fit for a header line: control characters (which a subject may hold in
// escaped or raw form) become '?'.
func headerSafe(s string) []byte {
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch == 0x7f {
			b[i] = '?'
		}
	}
	return b
}

// plainHTTPAnswer is sent to a client that spoke plain HTTP to the HTTPS listener.
const plainHTTPAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 80\r\n\r\n" +
	`{"error":"this port speaks HTTPS: send the request to an https:// URL","status":400}`

func (c *tlsConn) handshakeFailed(err error) {
	reason := handshakeReason(err)
	if reason == "plain_http" {
		_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c.raw, plainHTTPAnswer)
	}
	snap := c.srv.current.Load()
	if snap.metrics != nil {
		snap.metrics.tlsHandshakeFailures.WithLabelValues(reason).Inc()
	}
	// Debug only: anyone can make handshakes fail, as often as they like.
	c.srv.log.Debug().Str("client", c.raw.RemoteAddr().String()).Str("reason", reason).Err(err).Msg("TLS handshake failed")
}

// handshakeReason sorts a failed server handshake into a small fixed set, for the metric's label.
// crypto/tls has no error types for most of these, so its messages are matched.
func handshakeReason(err error) string {
	var rhe tls.RecordHeaderError
	var netErr net.Error
	var cve *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case errors.As(err, &rhe):
		if rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:]) {
			return "plain_http"
		}
		return "not_tls"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "client_closed"
	case errors.As(err, &cve), strings.Contains(msg, "failed to verify certificate"), strings.Contains(msg, "client certificate"):
		return "bad_client_certificate"
	case strings.Contains(msg, "didn't provide a certificate"):
		return "no_client_certificate"
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version"):
		return "protocol_version"
	case strings.Contains(msg, "no cipher suite"), strings.Contains(msg, "no mutually supported"):
		return "no_shared_cipher"
	case strings.Contains(msg, "remote error"):
		return "client_alert"
	case errors.Is(err, errTLSOff), strings.Contains(msg, "no certificate"):
		return "no_certificate"
	}
	return "other"
}

func looksLikeHTTP(head []byte) bool {
	for _, m := range []string{"GET ", "POST ", "PUT ", "HEAD ", "DELET", "PATCH", "OPTIO", "CONNE", "TRACE"} {
		if strings.HasPrefix(string(head), m[:min(len(m), len(head))]) {
			return true
		}
	}
	return false
}

// redirectToHTTPS answers a plain-HTTP request with a 308 to the same host, path and query on
// https:// (308 rather than 301: the method and body are kept). The host comes from the request, so
// it must be a plain host name or address; anything else gets 400 rather than a Location that some
// client would read differently.
func redirectToHTTPS(ctx *fasthttp.RequestCtx, x *filters.Exchange, port string) {
	var buf [512]byte
	host := filters.AppendHostKey(buf[len("https://"):len("https://")], ctx.Request.Header.Host())
	if len(host) == 0 || !redirectableHost(host) {
		x.Reject(fasthttp.StatusBadRequest, "request has no valid Host to redirect to")
		return
	}
	loc := append(append(buf[:0], "https://"...), host...)
	loc = append(loc, port...)
	loc = append(loc, ctx.URI().PathOriginal()...)
	if q := ctx.URI().QueryString(); len(q) > 0 {
		loc = append(append(loc, '?'), q...)
	}
	ctx.Response.SetStatusCode(fasthttp.StatusPermanentRedirect)
	ctx.Response.Header.SetBytesV(fasthttp.HeaderLocation, loc)
}

// redirectableHost accepts lower-case host names, IPv4 and bracketed IPv6 literals.
func redirectableHost(h []byte) bool {
	for _, c := range h {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':') {
			return false
		}
	}
	return true
}
