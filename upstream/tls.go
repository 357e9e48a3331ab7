package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/weir-gateway/weir/certs"
)

// ClientTLS is how a pool dials its https:// targets. Its files are certs.Sources that the gateway
// keeps current, and every handshake reads them afresh, so a rotated CA bundle or client certificate
// takes effect without rebuilding the target (and dropping its warm connections).
type ClientTLS struct {
	// ServerName is sent as SNI and is the name the target's certificate must hold; "" means the
	// target URL's host.
	ServerName string
	// Roots verify the target's certificate; nil means the system's roots.
	Roots *certs.Source
	// Cert is presented when the target asks for a client certificate (upstream mTLS); nil for none.
	Cert *certs.Source
	// InsecureSkipVerify accepts any certificate: for tests and migrations only.
	InsecureSkipVerify bool
}

// identity names the settings, for the target key: a target dialled differently is another target.
func (c *ClientTLS) identity() string {
	if c == nil {
		return "default"
	}
	files := func(s *certs.Source) []string {
		if s == nil {
			return nil
		}
		return s.Files()
	}
	return fmt.Sprintf("sni=%q roots=%q cert=%q insecure=%t", c.ServerName, files(c.Roots), files(c.Cert), c.InsecureSkipVerify)
}

// config is the tls.Config for dialling addr (host:port).
func (c *ClientTLS) config(addr string) *tls.Config {
	if c == nil {
		c = &ClientTLS{}
	}
	name := c.ServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(addr)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: name,
		// crypto/tls's own check reads a fixed RootCAs; VerifyConnection below does the same check
		// against the bundle's current version.
		InsecureSkipVerify: true,
	}
	if c.Cert == nil {
		// Resumed sessions skip a full handshake on each new connection to the target. Not with a
		// client certificate: a resumed session carries the certificate of the handshake that made
		// it, and a TLS 1.3 ticket arrives after its handshake, so no cache keyed at store time can
		// tell a session made with the old certificate from one made with the renewed one.
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if !c.InsecureSkipVerify {
		cfg.VerifyConnection = verifyServer(c.Roots, name)
	}
	if c.Cert != nil {
		cert := c.Cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert.Current().Cert, nil
		}
	}
	return cfg
}

// TLSVerifyError is a target certificate that failed verification.
type TLSVerifyError struct{ Err error }

func (e *TLSVerifyError) Error() string { return "upstream certificate not trusted: " + e.Err.Error() }
func (e *TLSVerifyError) Unwrap() error { return e.Err }

// verifyServer checks the chain a target presents as crypto/tls would (chain to a root, name, validity
// dates), against roots' current bundle.
func verifyServer(roots *certs.Source, name string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &TLSVerifyError{errors.New("no certificate presented")}
		}
		opts := x509.VerifyOptions{DNSName: name, Intermediates: x509.NewCertPool()}
		if roots != nil {
			opts.Roots = roots.Current().Pool
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return &TLSVerifyError{err}
		}
		return nil
	}
}

// isTLSFailure reports whether err comes from a failed TLS handshake with a target: its certificate
// not trusted, an alert it sent (it wanted a client certificate, say), or an answer that was not TLS.
func isTLSFailure(err error) bool {
	var verify *TLSVerifyError
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var opErr *net.OpError
	return errors.As(err, &verify) || errors.As(err, &cve) || errors.As(err, &rhe) ||
		errors.As(err, &opErr) && opErr.Op == "remote error"
}
