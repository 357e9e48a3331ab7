package upstream

import (
	"net"
	"syscall"
	"time"
)

// watchHangup calls onHangup, from its own goroutine, when the peer of c closes the connection
// while nothing is to be read from it: a client that went away in the middle of a silent stream,
// which weir would otherwise notice only at its next write to it, up to stream_idle_timeout later.
// It looks without reading (recv with MSG_PEEK, as nginx does for the same purpose), so the
// connection's bytes stay where fasthttp expects them. Once the client sends anything (a pipelined
// request, or over TLS any record, a close_notify alert included) watching ends and a hang-up is
// noticed at the next write again. stop ends watching and waits for it; it returns nil when c gives
// no access to its socket.
func watchHangup(c net.Conn, onHangup func()) (stop func()) {
	rc := rawConn(c)
	if rc == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		gone := false
		err := rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				return false // nothing yet: wait until the socket is readable
			}
			gone = n == 0 || err != nil // end of stream, or reset
			return true
		})
		if err == nil && gone {
			onHangup()
		}
	}()
	return func() {
		// A deadline in the past wakes the waiting read; fasthttp sets its own before it reads again.
		_ = c.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = c.SetReadDeadline(time.Time{})
	}
}

// rawConn finds the socket under c, looking through TLS (NetConn).
func rawConn(c net.Conn) syscall.RawConn {
	for range 4 {
		switch v := c.(type) {
		case syscall.Conn:
			rc, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
