package upstream

import (
	"net"
	"testing"
	"time"
)

// BenchmarkDeadlines is what forward pays per attempt to bound it: one SetDeadline (what it does) or a
// write deadline and then a read deadline (what it did), on a loopback TCP connection.
func BenchmarkDeadlines(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	b.Run("one-SetDeadline", func(b *testing.B) {
		for b.Loop() {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
		}
	})
	b.Run("write-then-read", func(b *testing.B) {
		for b.Loop() {
			d := time.Now().Add(time.Second)
			_ = conn.SetWriteDeadline(d)
			_ = conn.SetReadDeadline(d)
		}
	})
}
