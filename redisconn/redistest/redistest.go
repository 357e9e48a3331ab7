// Package redistest runs a real redis-server for tests: on a free loopback port, in the test's
// temporary directory, stopped by its PID when the test ends.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process.
type Server struct {
	Addr     string
	Password string // "" without requirepass
	dir      string
	cmd      *exec.Cmd
	t        testing.TB
	tls      *TLS
}

// TLS makes the server speak TLS only: CertFile and KeyFile are its certificate, Client the config
// the readiness check dials with (trusting the certificate's CA).
type TLS struct {
	CertFile, KeyFile, CAFile string
	Client                    *tls.Config
}

// Start runs redis-server with password ("" for none). Without a redis-server binary the test is
// skipped, except under CI (CI=true), where that is a failure: .ci/run installs it.
func Start(t testing.TB, password string) *Server { return StartTLS(t, password, nil) }

// StartTLS is Start with TLS (nil: none).
func StartTLS(t testing.TB, password string, tlsConf *TLS) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not installed (apt-get install -y redis-server); CI must run the Redis tests")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server to run the Redis tests")
	}
	s := &Server{Password: password, dir: t.TempDir(), t: t, tls: tlsConf}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	ln.Close()
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", s.dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log")}
	if s.Password != "" {
		args = append(args, "--requirepass", s.Password)
	}
	if s.tls != nil {
		args[1] = "0" // no plain port
		args = append(args, "--tls-port", port, "--tls-cert-file", s.tls.CertFile, "--tls-key-file", s.tls.KeyFile,
			"--tls-ca-cert-file", s.tls.CAFile, "--tls-auth-clients", "no")
	}
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.ping() {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.Stop()
			s.t.Fatalf("redis-server on %s did not answer within 10s; its log:\n%s", s.Addr, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends PING (after AUTH when a password is set) and reports whether PONG came back.
func (s *Server) ping() bool {
	var c net.Conn
	var err error
	if s.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 200 * time.Millisecond}, "tcp", s.Addr, s.tls.Client)
	} else {
		c, err = net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	cmd := "PING\r\n"
	if s.Password != "" {
		cmd = fmt.Sprintf("AUTH %s\r\nPING\r\n", s.Password)
	}
	if _, err := c.Write([]byte(cmd)); err != nil {
		return false
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.HasPrefix(line, "+PONG") {
			return true
		}
		if strings.HasPrefix(line, "-") {
			return false
		}
	}
}

// Stop kills the server (SIGKILL: as a crash looks to its clients) and waits for it to exit. It may be
// called more than once.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
