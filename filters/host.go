package filters

import "bytes"

// AppendHostKey appends a Host header value as routing reads it: lower-case, without port or
// trailing dot. An IPv6 literal keeps its brackets. The gateway looks routes up by it, and the cache
// keys entries by it.
func AppendHostKey(dst, host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			host = host[:i+1]
		}
	} else if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = bytes.TrimSuffix(host, []byte("."))
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
