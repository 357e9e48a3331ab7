package upstream

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/valyala/fasthttp"
)

// Failure classifies an attempt that produced no usable response. The gateway renders each class with
// the status and short reason here; the error text itself never reaches a client, since fasthttp's can
// carry raw upstream bytes.
type Failure struct {
	Status int
	Reason string
	// Local means the gateway itself gave up (its connection limit to the target was reached): the
	// target did not fail, so breakers and health checks should not count it.
	Local bool
}

var (
	failTimeout = Failure{fasthttp.StatusGatewayTimeout, "upstream timed out", false}
	// failConnectTimeout is a dial that got no answer (a host powered off, a partition): like a refused
	// connection the request never left weir, so it is retried as a connect failure.
	failConnectTimeout = Failure{fasthttp.StatusGatewayTimeout, "upstream connect timed out", false}
	failNoConns        = Failure{fasthttp.StatusServiceUnavailable, "upstream connection limit reached", true}
	failTooLarge       = Failure{fasthttp.StatusBadGateway, "upstream response too large", false}
	failConnect        = Failure{fasthttp.StatusBadGateway, "upstream unreachable", false}
	// failTLS is a TLS handshake that failed before the request was written (the target's certificate
	// not trusted, the target refusing weir's): a connect failure, retried as one.
	failTLS         = Failure{fasthttp.StatusBadGateway, "upstream TLS handshake failed", false}
	failClosed      = Failure{fasthttp.StatusBadGateway, "upstream closed the connection", false}
	failBadResponse = Failure{fasthttp.StatusBadGateway, "bad upstream response", false}
)

// Classify maps a Forward error to the status the client gets.
func Classify(err error) Failure {
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.Is(err, fasthttp.ErrTLSHandshakeTimeout),
		errors.As(err, &opErr) && opErr.Op == "dial" && opErr.Timeout():
		return failConnectTimeout
	// Any other deadline (write, read, or the attempt's whole budget) is a gateway timeout: the
	// target may be alive but did not answer in time.
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &netErr) && netErr.Timeout():
		return failTimeout
	// Every connection to the target is busy and none freed up within conn_wait_timeout: the target
	// is healthy but saturated, so tell the client to come back rather than blaming the target.
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return failNoConns
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return failTooLarge
	// Refused or reset while dialing, or the target's name did not resolve: nothing was sent.
	case errors.As(err, &opErr) && opErr.Op == "dial", errors.As(err, &dnsErr):
		return failConnect
	case isTLSFailure(err):
		return failTLS
	// Closed or reset before any of the response arrived (a target going down, say): the request may
	// or may not have been acted on.
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return failClosed
	}
	// Closed mid-response, malformed status line or framing: the target answered wrongly.
	return failBadResponse
}
