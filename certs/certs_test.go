package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weir-gateway/weir/certs"
	"github.com/weir-gateway/weir/certs/certstest"
)

func TestOpenPair_RefusesWhatWouldFailAHandshake(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	good := ca.Issue(t, certstest.Options{CommonName: "api", Names: []string{"api.example.com"}})
	other := ca.Issue(t, certstest.Options{CommonName: "other", Names: []string{"other.example.com"}})
	expired := ca.Issue(t, certstest.Options{CommonName: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	cases := []struct {
		desc      string
		cert, key []byte
		want      string // in the error; "" for success
	}{
		{"a matching pair loads", good.CertPEM, good.KeyPEM, ""},
		{"a key of another certificate", good.CertPEM, other.KeyPEM, "does not hold the certificate's private key"},
		{"an expired certificate", expired.CertPEM, expired.KeyPEM, "expired at"},
		{"files swapped", good.KeyPEM, good.CertPEM, "are cert_file and key_file swapped"},
		{"not PEM", []byte("hello"), good.KeyPEM, "certificate file holds no PEM data"},
		{"an empty key file", good.CertPEM, nil, "key file holds no PEM data"},
	}
	for i, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			cf, kf := filepath.Join(dir, "c"+string(rune('a'+i))), filepath.Join(dir, "k"+string(rune('a'+i)))
			must(t, os.WriteFile(cf, tc.cert, 0o600))
			must(t, os.WriteFile(kf, tc.key, 0o600))
			src, err := certs.OpenPair("p", cf, kf, time.Now())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				if v := src.Current(); v.Cert.Leaf.Subject.CommonName != "api" || v.Names[0] != "api.example.com" {
					t.Fatalf("loaded %+v", v)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
	if _, err := certs.OpenPair("p", filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem"), time.Now()); err == nil ||
		!strings.Contains(err.Error(), "cannot read") || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestSourceRefresh_KeepsServingThePreviousPairWhenTheNewOneIsBad(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	first := ca.Issue(t, certstest.Options{CommonName: "first", Names: []string{"a.test"}})
	cf, kf := first.Write(t, dir, "api")
	src, err := certs.OpenPair("api", cf, kf, time.Now())
	must(t, err)
	gen := src.Generation()

	if changed, err := src.Refresh(time.Now()); changed || err != nil {
		t.Fatalf("unchanged files: changed=%v err=%v", changed, err)
	}
	// A renewal that wrote the certificate but not yet its key.
	second := ca.Issue(t, certstest.Options{CommonName: "second", Names: []string{"b.test"}})
	must(t, os.WriteFile(cf, second.CertPEM, 0o600))
	changed, err := src.Refresh(time.Now())
	if changed || err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("mismatched pair: changed=%v err=%v", changed, err)
	}
	if src.Current().Cert.Leaf.Subject.CommonName != "first" || src.Generation() != gen {
		t.Fatal("the bad pair replaced the good one")
	}
	if st := src.Status(); st.Error == "" || st.Subject != "CN=first,O=weir tests" {
		t.Fatalf("status should report the refused version and the served one: %+v", st)
	}
	// The same bad content is reported once.
	if _, err := src.Refresh(time.Now()); err != nil {
		t.Fatalf("the same bad content reported again: %v", err)
	}
	must(t, os.WriteFile(kf, second.KeyPEM, 0o600))
	if changed, err := src.Refresh(time.Now()); !changed || err != nil {
		t.Fatalf("completed renewal: changed=%v err=%v", changed, err)
	}
	if src.Current().Cert.Leaf.Subject.CommonName != "second" || src.Generation() == gen || src.Status().Error != "" {
		t.Fatalf("renewal not taken: %+v", src.Status())
	}
}

func TestStore_PicksTheCertificateBySNI(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	open := func(name string, names ...string) *certs.Source {
		cf, kf := ca.Issue(t, certstest.Options{CommonName: name, Names: names}).Write(t, dir, name)
		src, err := certs.OpenPair(name, cf, kf, time.Now())
		must(t, err)
		return src
	}
	store := certs.NewStore([]*certs.Source{
		open("default", "api.example.com"),
		open("wild", "*.example.com", "shop.example.org"),
		open("exact", "www.example.com", "API.example.org"),
		open("late", "api.example.com", "*.example.org"),
	})
	cases := []struct{ desc, sni, want string }{
		{"no SNI gets the first certificate", "", "default"},
		{"an exact name", "www.example.com", "exact"},
		{"an exact name beats a wildcard that also covers it", "www.example.com", "exact"},
		{"a wildcard covers one label", "img.example.com", "wild"},
		{"a wildcard covers no deeper label", "a.b.example.com", "default"},
		{"a wildcard does not cover the apex", "example.com", "default"},
		{"names compare case-insensitively", "Api.Example.Org", "exact"},
		{"a trailing dot is ignored", "shop.example.org.", "wild"},
		{"the earlier certificate wins for a name both list", "api.example.com", "default"},
		{"a later certificate's wildcard still counts", "x.example.org", "late"},
		{"an unknown name gets the first certificate", "nothing.test", "default"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := store.GetCertificate(&tls.ClientHelloInfo{ServerName: tc.sni})
			must(t, err)
			if got := c.Leaf.Subject.CommonName; got != tc.want {
				t.Fatalf("SNI %q: got %s, want %s", tc.sni, got, tc.want)
			}
		})
	}
}

func TestStore_UsesARenewedCertificatesNewNames(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	cf, kf := ca.Issue(t, certstest.Options{CommonName: "one", Names: []string{"a.test"}}).Write(t, dir, "one")
	first, err := certs.OpenPair("one", cf, kf, time.Now())
	must(t, err)
	cf2, kf2 := ca.Issue(t, certstest.Options{CommonName: "two", Names: []string{"b.test"}}).Write(t, dir, "two")
	second, err := certs.OpenPair("two", cf2, kf2, time.Now())
	must(t, err)
	store := certs.NewStore([]*certs.Source{first, second})
	if c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "c.test"}); c.Leaf.Subject.CommonName != "one" {
		t.Fatal("c.test should fall to the first certificate before the renewal")
	}
	ca.Issue(t, certstest.Options{CommonName: "two-renewed", Names: []string{"b.test", "c.test"}}).Write(t, dir, "two")
	if changed, err := second.Refresh(time.Now()); !changed || err != nil {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	if c, _ := store.GetCertificate(&tls.ClientHelloInfo{ServerName: "c.test"}); c.Leaf.Subject.CommonName != "two-renewed" {
		t.Fatalf("c.test got %s after the renewal added it", c.Leaf.Subject.CommonName)
	}
}

func TestOpenCA(t *testing.T) {
	dir := t.TempDir()
	a, b := certstest.NewCA(t, "CA one"), certstest.NewCA(t, "CA two")
	file := filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(file, append(append([]byte{}, a.PEM...), b.PEM...), 0o600))
	src, err := certs.OpenCA("ca", file, time.Now())
	must(t, err)
	leaf := b.Issue(t, certstest.Options{CommonName: "x", Names: []string{"x.test"}})
	if _, err := leaf.Cert.Verify(x509VerifyOptions(src)); err != nil {
		t.Fatalf("the second CA of the bundle is not in the pool: %v", err)
	}
	must(t, os.WriteFile(file, []byte("not pem"), 0o600))
	if _, err := certs.OpenCA("ca", file, time.Now()); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("want no PEM certificate, got %v", err)
	}
}

func TestWatcher_SignalsRenameAndDataSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	// A Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..v1.
	must(t, os.Mkdir(filepath.Join(dir, "..v1"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "..v1", "tls.crt"), []byte("v1"), 0o600))
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/tls.crt", filepath.Join(dir, "tls.crt")))
	plain := filepath.Join(dir, "plain.pem")
	must(t, os.WriteFile(plain, []byte("p1"), 0o600))

	w, err := certs.NewWatcher()
	must(t, err)
	if failed := w.Track([]string{filepath.Join(dir, "tls.crt"), plain}); len(failed) > 0 {
		t.Fatal(failed)
	}
	refreshed := make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, 50*time.Millisecond, 0, func() { refreshed <- struct{}{} })
	waitRefresh := func(what string) {
		t.Helper()
		select {
		case <-refreshed:
		case <-time.After(5 * time.Second):
			t.Fatalf("no refresh after %s", what)
		}
	}

	tmp := filepath.Join(dir, "plain.pem.tmp")
	must(t, os.WriteFile(tmp, []byte("p2"), 0o600))
	must(t, os.Rename(tmp, plain))
	waitRefresh("a rename over the file")

	must(t, os.Mkdir(filepath.Join(dir, "..v2"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "..v2", "tls.crt"), []byte("v2"), 0o600))
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(t, os.RemoveAll(filepath.Join(dir, "..v1")))
	waitRefresh("a ..data symlink swap")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func x509VerifyOptions(ca *certs.Source) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.Current().Pool, DNSName: "x.test"}
}
