// Package certs loads TLS certificates, keys and CA bundles from files and keeps them current: a Source
// re-reads its files when told to (the gateway's watcher tells it after a change in their directories),
// takes a new version only if it parses and checks out, and otherwise keeps serving the previous one
// and reports why. Store picks a listener's certificate by SNI over a set of Sources.
package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Value is one loaded version of a Source: a certificate with its key, or a CA bundle.
type Value struct {
	// Cert is the certificate chain and key of a pair, with Leaf set; nil for a CA bundle.
	Cert *tls.Certificate
	// Pool holds a CA bundle's certificates; nil for a pair.
	Pool *x509.CertPool
	// Names are the DNS names and IP addresses the leaf certificate covers, lower-case; a pair only.
	Names []string
	// Subject is the leaf's subject (a pair) or the first CA's (a bundle), for status and logs.
	Subject string
	// NotAfter is when the leaf expires, or for a bundle when its first certificate does.
	NotAfter time.Time
}

// Status is what operators see of a Source (GET /config): never key material.
type Status struct {
	Name     string    `json:"name"`
	Files    []string  `json:"files"`
	Subject  string    `json:"subject"`
	Names    []string  `json:"names,omitempty"`
	NotAfter time.Time `json:"not_after"`
	LoadedAt time.Time `json:"loaded_at"`
	// Error says why the files' current content was refused; the version loaded at LoadedAt serves
	// meanwhile. Empty when the files hold what is served.
	Error   string     `json:"error,omitempty"`
	ErrorAt *time.Time `json:"error_at,omitempty"`
}

// Source is a certificate/key pair or a CA bundle read from files. The value in use changes only to a
// version that parsed and passed its checks, so a half-written or mismatched renewal never reaches a
// handshake.
type Source struct {
	name  string
	files []string
	parse func(data [][]byte, now time.Time) (*Value, error)

	cur atomic.Pointer[Value]
	gen atomic.Uint64 // bumped on every change of cur

	mu       sync.Mutex // serializes Refresh
	loaded   [32]byte   // hash of the files behind cur
	tried    [32]byte   // hash of the files last refused, so a bad version is reported once
	loadedAt time.Time
	err      error
	errAt    time.Time
}

// OpenPair loads a certificate chain (PEM, leaf first) and its private key. It fails unless the key
// matches the leaf and the leaf has not expired at now. name labels the pair in status and metrics.
func OpenPair(name, certFile, keyFile string, now time.Time) (*Source, error) {
	return open(name, []string{certFile, keyFile}, parsePair, now)
}

// OpenCA loads a bundle of PEM CA certificates; it fails unless it holds at least one certificate.
func OpenCA(name, file string, now time.Time) (*Source, error) {
	return open(name, []string{file}, parseCA, now)
}

// Static is a Source for a certificate held in memory (weir demo's self-signed one); Refresh keeps it.
func Static(name string, cert tls.Certificate) (*Source, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	cert.Leaf = leaf
	s := &Source{name: name, loadedAt: time.Now()}
	s.cur.Store(&Value{Cert: &cert, Names: leafNames(leaf), Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter})
	return s, nil
}

func open(name string, files []string, parse func([][]byte, time.Time) (*Value, error), now time.Time) (*Source, error) {
	s := &Source{name: name, files: files, parse: parse}
	data, hash, err := s.read()
	if err != nil {
		return nil, err
	}
	v, err := parse(data, now)
	if err != nil {
		return nil, err
	}
	s.cur.Store(v)
	s.loaded, s.loadedAt = hash, now
	return s, nil
}

// Current is the value in use.
func (s *Source) Current() *Value { return s.cur.Load() }

// Generation changes whenever Current does.
func (s *Source) Generation() uint64 { return s.gen.Load() }

// Name is the label given at open.
func (s *Source) Name() string { return s.name }

// Files are the paths read, certificate first for a pair.
func (s *Source) Files() []string { return s.files }

// Refresh re-reads the files. If their content changed and checks out it becomes Current and changed
// is true. If it changed and does not, Current stays and err says why, once per distinct bad content
// (later calls with the same content return nil); Status keeps reporting it until good content is
// loaded.
func (s *Source) Refresh(now time.Time) (changed bool, err error) {
	if s.parse == nil {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, hash, err := s.read()
	switch {
	case err == nil && hash == s.loaded:
		s.err = nil
		return false, nil
	case err == nil:
		var v *Value
		if v, err = s.parse(data, now); err == nil {
			s.cur.Store(v)
			s.gen.Add(1)
			s.loaded, s.loadedAt, s.err = hash, now, nil
			return true, nil
		}
	}
	// Unreadable files are reported each time they are seen so; a bad version once.
	if hash != [32]byte{} && hash == s.tried && s.err != nil {
		return false, nil
	}
	s.tried, s.err, s.errAt = hash, err, now
	return false, err
}

// Status describes the source for operators.
func (s *Source) Status() Status {
	v := s.Current()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Name: s.name, Files: s.files, Subject: v.Subject, Names: v.Names, NotAfter: v.NotAfter, LoadedAt: s.loadedAt}
	if s.err != nil {
		at := s.errAt
		st.Error, st.ErrorAt = s.err.Error(), &at
	}
	return st
}

// read returns the files' contents and a hash over all of them.
func (s *Source) read() ([][]byte, [32]byte, error) {
	h := sha256.New()
	data := make([][]byte, len(s.files))
	for i, f := range s.files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, [32]byte{}, fmt.Errorf("cannot read %s: %w", f, errors.Unwrap(err))
		}
		data[i] = b
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return data, sum, nil
}

func parsePair(data [][]byte, now time.Time) (*Value, error) {
	cert, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		return nil, pairError(err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("the certificate does not parse: %v", err)
		}
		cert.Leaf = leaf
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &Value{Cert: &cert, Names: leafNames(leaf), Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter}, nil
}

// pairError restates crypto/tls's errors in the operator's terms.
func pairError(err error) error {
	msg := err.Error()
	switch msg {
	case "tls: private key does not match public key":
		return errors.New("the key file does not hold the certificate's private key")
	case "tls: failed to find any PEM data in certificate input":
		return errors.New("the certificate file holds no PEM data")
	case "tls: failed to find any PEM data in key input":
		return errors.New("the key file holds no PEM data")
	case "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched":
		return errors.New("the certificate file holds a private key: are cert_file and key_file swapped?")
	}
	return fmt.Errorf("the certificate and key do not load: %v", err)
}

func parseCA(data [][]byte, now time.Time) (*Value, error) {
	pool := x509.NewCertPool()
	var first *x509.Certificate
	rest := data[0]
	for len(rest) > 0 {
		var block []byte
		block, rest = nextPEMCertificate(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block)
		if err != nil {
			return nil, fmt.Errorf("a CA certificate does not parse: %v", err)
		}
		if first == nil {
			first = c
		}
		pool.AddCert(c)
	}
	if first == nil {
		return nil, errors.New("the CA file holds no PEM certificate")
	}
	return &Value{Pool: pool, Subject: first.Subject.String(), NotAfter: first.NotAfter}, nil
}

func leafNames(leaf *x509.Certificate) []string {
	names := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	for _, n := range leaf.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}
