//go:build !linux

package upstream

import "net"

// watchHangup is Linux only (see hangup_linux.go): elsewhere a client's hang-up mid-stream is noticed
// at the next write to it.
func watchHangup(net.Conn, func()) func() { return nil }
