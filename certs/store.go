package certs

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// Store is a listener's certificates. GetCertificate picks one by the client's SNI: a certificate
// naming the host exactly, then one whose wildcard (*.example.com) covers it, then the first
// certificate for clients that send no SNI or a name none covers. Among certificates naming the same
// host, the earlier one wins.
type Store struct {
	sources []*Source
	index   atomic.Pointer[sniIndex]
	mu      sync.Mutex // serializes rebuilds
}

type sniIndex struct {
	gens  []uint64 // the sources' generations the index was built from
	exact map[string]*tls.Certificate
	wild  map[string]*tls.Certificate // by the suffix after "*."
	first *tls.Certificate
}

// NewStore selects among sources (pairs, at least one), in the order given.
func NewStore(sources []*Source) *Store {
	s := &Store{sources: sources}
	s.index.Store(s.build())
	return s
}

var errNoCertificates = errors.New("no certificate configured")

// GetCertificate is tls.Config.GetCertificate. A source that changed since the last handshake has its
// index rebuilt first, so a renewed certificate (with new names, say) is used from the next handshake.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	idx := s.current()
	if idx.first == nil {
		return nil, errNoCertificates
	}
	name := strings.TrimSuffix(hello.ServerName, ".")
	if name == "" {
		return idx.first, nil
	}
	name = strings.ToLower(name)
	if c, ok := idx.exact[name]; ok {
		return c, nil
	}
	if _, suffix, ok := strings.Cut(name, "."); ok {
		if c, ok := idx.wild[suffix]; ok {
			return c, nil
		}
	}
	return idx.first, nil
}

func (s *Store) current() *sniIndex {
	idx := s.index.Load()
	for i, src := range s.sources {
		if src.Generation() != idx.gens[i] {
			s.mu.Lock()
			defer s.mu.Unlock()
			idx = s.build()
			s.index.Store(idx)
			return idx
		}
	}
	return idx
}

func (s *Store) build() *sniIndex {
	idx := &sniIndex{gens: make([]uint64, len(s.sources)), exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for i, src := range s.sources {
		idx.gens[i] = src.Generation()
		v := src.Current()
		if idx.first == nil {
			idx.first = v.Cert
		}
		for _, n := range v.Names {
			m, key := idx.exact, n
			if suffix, ok := strings.CutPrefix(n, "*."); ok {
				m, key = idx.wild, suffix
			}
			if _, taken := m[key]; !taken {
				m[key] = v.Cert
			}
		}
	}
	return idx
}

// nextPEMCertificate returns the DER bytes of the next CERTIFICATE block in data, skipping others,
// and what follows it; nil when there is none.
func nextPEMCertificate(data []byte) (der, rest []byte) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, nil
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes, data
		}
	}
}
