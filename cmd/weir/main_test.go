package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/certs/certstest"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate_ExitCodesAndProblemOutput(t *testing.T) {
	good := writeConfig(t, "upstreams:\n  u:\n    targets: [{url: \"http://127.0.0.1:9\"}]\nroutes:\n  - {name: r, match: {path: /x}, upstream: u}\n")
	ca := certstest.NewCA(t, "CA")
	dir := t.TempDir()
	soonCert, soonKey := ca.Issue(t, certstest.Options{CommonName: "soon", NotAfter: time.Now().Add(5 * 24 * time.Hour)}).Write(t, dir, "soon")
	oldCert, oldKey := ca.Issue(t, certstest.Options{CommonName: "old", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}).Write(t, dir, "old")
	withCert := func(cert, key string) string {
		return writeConfig(t, fmt.Sprintf("server:\n  tls:\n    certificates:\n      - {cert_file: %q, key_file: %q}\n", cert, key)+
			"upstreams:\n  u:\n    targets: [{url: \"http://127.0.0.1:9\"}]\nroutes:\n  - {name: r, match: {path: /x}, upstream: u}\n")
	}
	soon, expired := withCert(soonCert, soonKey), withCert(oldCert, oldKey)
	bad := writeConfig(t, "upstreams:\n  u:\n    targets: [{url: \"http://127.0.0.1:9\"}]\nroutes:\n  - {name: r, match: {path: /x}, upstream: user}\n")
	cases := []struct {
		desc       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"valid config", []string{"validate", "-config", good}, 0, "ok (1 routes)", ""},
		{"schema", []string{"schema"}, 0, `"$schema": "https://json-schema.org/draft/2020-12/schema"`, ""},
		{"unknown upstream", []string{"validate", "-config", bad}, 1, "",
			bad + `:5: routes[0].upstream: unknown upstream "user"; known upstreams: u`},
		{"missing file", []string{"validate", "-config", "/nonexistent.yaml"}, 1, "", "/nonexistent.yaml: cannot read config"},
		{"a certificate expiring within 14 days is a warning", []string{"validate", "-config", soon}, 0, "ok (1 routes)",
			soon + ":4: server.tls.certificates[0].cert_file: warning: the certificate expires in 120h"},
		{"an expired certificate is a problem", []string{"validate", "-config", expired}, 1, "",
			expired + ":4: server.tls.certificates[0].cert_file: the certificate expired at"},
		{"version", []string{"version"}, 0, "weir ", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"stray argument", []string{"validate", "extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) || (tc.wantStderr == "" && stderr.Len() > 0) {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

// TestBinary_SIGTERMDrainsAndExitsZero runs the real binary, because signal handling and exit codes
// only exist in a real process.
func TestBinary_SIGTERMDrainsAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "weir")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release // held until the gateway has stopped accepting
		ctx.WriteString("drained")
	}}
	go func() { _ = backend.Serve(ln) }()
	defer backend.Shutdown()

	gwLn, _ := net.Listen("tcp", "127.0.0.1:0")
	gw := gwLn.Addr().String()
	gwLn.Close()
	cfg := writeConfig(t, fmt.Sprintf("server: {listen: %q}\nadmin: {listen: \"127.0.0.1:0\"}\nlog: {access: false}\nupstreams:\n  u:\n    targets: [{url: \"http://%s\"}]\nroutes:\n  - {name: r, match: {path: \"/{rest:*}\"}, upstream: u}\n", gw, ln.Addr()))

	cmd := exec.Command(bin, "-config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("tcp", gw); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weir did not start listening:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	result := make(chan string, 1)
	go func() {
		status, body, err := fasthttp.GetTimeout(nil, "http://"+gw+"/slow", 5*time.Second)
		result <- fmt.Sprintf("%d %s %v", status, body, err)
	}()
	<-entered
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", gw, 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("weir still accepts connections after SIGTERM")
		}
	}
	close(release)
	if got := <-result; got != "200 drained <nil>" {
		t.Errorf("in-flight request during SIGTERM: %s, want 200 drained", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("weir exited with %v after SIGTERM, want exit 0\n%s", err, stderr.String())
	}
}
