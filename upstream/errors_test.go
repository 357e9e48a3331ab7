package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestClassify_MapsEachFailureToItsStatusAndReason(t *testing.T) {
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	for _, tc := range []struct {
		desc string
		err  error
		want Failure
	}{
		{"connection refused", dial(syscall.ECONNREFUSED), failConnect},
		{"name does not resolve", &net.DNSError{Err: "no such host", Name: "users.internal", IsNotFound: true}, failConnect},
		{"dial timed out", fasthttp.ErrDialTimeout, failConnectTimeout},
		{"attempt timed out", fasthttp.ErrTimeout, failTimeout},
		{"connection limit", fasthttp.ErrNoFreeConns, failNoConns},
		{"closed before the answer", fasthttp.ErrConnectionClosed, failClosed},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, failClosed},
		{"eof", io.EOF, failClosed},
		{"body too large", fasthttp.ErrBodyTooLarge, failTooLarge},
		{"malformed", errors.New("cannot parse response status"), failBadResponse},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.desc, got, tc.want)
		}
	}
}
