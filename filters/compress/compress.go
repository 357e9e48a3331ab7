// Package compress is the `compress` filter: responses encoded with zstd, brotli or gzip as the
// client's Accept-Encoding allows, buffered bodies in one go and streamed bodies as a stream, with a
// flush after every piece the upstream sent.
package compress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	brrr "github.com/molecule-man/go-brrr"
	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// Config is what the YAML says.
type Config struct {
	// Encodings weir offers, in its order of preference when the client likes several equally.
	Encodings []string `yaml:"encodings"`
	// Types are the content types compressed: exact (application/json) or a family (text/*); the
	// +json and +xml suffixes count as their base type. Default: JSON, text, JavaScript, XML.
	Types []string `yaml:"types"`
	// MinLength: a buffered body shorter than this many bytes is sent as it is.
	MinLength int `yaml:"min_length" default:"1024"`
	// Levels: gzip 1-9, brotli 0-11, zstd 1-4 (fastest to best). The defaults are each encoding's
	// fastest useful level, as nginx's gzip_comp_level 1: see BenchmarkCompress for the trade.
	GzipLevel   int `yaml:"gzip_level" default:"1"`
	BrotliLevel int `yaml:"brotli_level" default:"1"`
	ZstdLevel   int `yaml:"zstd_level" default:"1"`
}

var (
	defaultEncodings = []string{"zstd", "br", "gzip"}
	defaultTypes     = []string{"application/json", "application/x-ndjson", "text/*", "application/javascript", "application/xml", "image/svg+xml"}
)

// encoder is what the three encoders have in common.
type encoder interface {
	io.Writer
	Flush() error
	Close() error
	Reset(io.Writer)
}

type coding struct {
	name  string // the Content-Encoding token
	value []byte
	pool  sync.Pool // of encoder
}

// Filter is a compiled compress filter.
type Filter struct {
	codings   []*coding // in preference order
	exact     map[string]bool
	families  []string // "text/"
	minLength int
}

// New validates cfg and builds the filter.
func New(cfg Config, _ filters.Env) (*Filter, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &filters.ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	f := &Filter{exact: map[string]bool{}, minLength: cfg.MinLength}
	if cfg.GzipLevel < 1 || cfg.GzipLevel > 9 {
		bad("gzip_level", "must be from 1 (fastest) to 9 (smallest)")
	}
	if cfg.BrotliLevel < 0 || cfg.BrotliLevel > 11 {
		bad("brotli_level", "must be from 0 (fastest) to 11 (smallest)")
	}
	if cfg.ZstdLevel < 1 || cfg.ZstdLevel > 4 {
		bad("zstd_level", "must be from 1 (fastest) to 4 (smallest)")
	}
	if cfg.MinLength < 0 {
		bad("min_length", "must be 0 or more")
	}
	names := cfg.Encodings
	if len(names) == 0 {
		names = defaultEncodings
	}
	for i, n := range names {
		if slicesIndex(names[:i], n) >= 0 {
			bad(fmt.Sprintf("encodings[%d]", i), "%s is listed twice", n)
			continue
		}
		c := &coding{name: n, value: []byte(n)}
		switch n {
		case "gzip":
			level := cfg.GzipLevel
			c.pool.New = func() any { w, _ := gzip.NewWriterLevel(nil, level); return w }
		case "br":
			level := cfg.BrotliLevel
			c.pool.New = func() any { w, _ := brrr.NewWriter(nil, level); return w }
		case "zstd":
			level := zstd.EncoderLevel(cfg.ZstdLevel)
			c.pool.New = func() any {
				// One goroutine and a small window: an encoder per response, not per file.
				w, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
					zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
				return w
			}
		default:
			bad(fmt.Sprintf("encodings[%d]", i), "unknown encoding %q; use zstd, br or gzip", n)
			continue
		}
		f.codings = append(f.codings, c)
	}
	types := cfg.Types
	if len(types) == 0 {
		types = defaultTypes
	}
	for i, t := range types {
		t = strings.ToLower(t)
		switch {
		case strings.HasSuffix(t, "/*") && !strings.Contains(t[:len(t)-2], "/"):
			f.families = append(f.families, t[:len(t)-1])
		case strings.Count(t, "/") == 1 && !strings.ContainsAny(t, " ;*"):
			f.exact[t] = true
		default:
			bad(fmt.Sprintf("types[%d]", i), "%q is not a content type (like application/json) or a family (like text/*)", t)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// Wrap implements filters.Filter.
func (f *Filter) Wrap(next filters.Handler) filters.Handler { return &step{Filter: f, next: next} }

type step struct {
	*Filter
	next filters.Handler
}

func (s *step) Serve(x *filters.Exchange) {
	// Read before next: a rewrite could change the request's headers on the way.
	c := s.choose(x.Ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding))
	head := x.Ctx.IsHead()
	s.next.Serve(x)
	resp := &x.Ctx.Response
	h := &resp.Header
	if !x.Answered() || x.Tunnel != nil || !s.compressible(h) {
		return
	}
	// The answer depends on Accept-Encoding from here on, whether it is compressed or not.
	filters.AddVary(h, fasthttp.HeaderAcceptEncoding)
	if c == nil || head {
		return
	}
	if body := resp.BodyStream(); body != nil {
		s.stream(resp, body, c)
		return
	}
	if len(resp.Body()) < s.minLength {
		return
	}
	out := bytebufferpool.Get()
	enc := c.pool.Get().(encoder)
	enc.Reset(out)
	_, err := enc.Write(resp.Body())
	if err == nil {
		err = enc.Close()
	}
	c.pool.Put(enc)
	if err == nil && out.Len() < len(resp.Body()) {
		resp.SetBody(out.B)
		h.SetContentEncodingBytes(c.value)
		weakenETag(h)
	}
	bytebufferpool.Put(out)
}

// compressible: a status with a body, not encoded already, not a range, a listed type, not an
// event stream.
func (s *step) compressible(h *fasthttp.ResponseHeader) bool {
	switch st := h.StatusCode(); {
	case st < 200, st == fasthttp.StatusNoContent, st == fasthttp.StatusNotModified, st == fasthttp.StatusPartialContent:
		return false
	}
	if len(h.ContentEncoding()) > 0 || len(h.Peek(fasthttp.HeaderContentRange)) > 0 {
		return false
	}
	// Without it, an upstream answer with no Content-Type would read as fasthttp's default
	// text/plain; weir's server sends none in that case anyway.
	h.SetNoDefaultContentType(true)
	ct := h.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	var buf [128]byte
	if len(ct) > len(buf) {
		return false
	}
	lo := buf[:len(ct)]
	for i, b := range ct {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lo[i] = b
	}
	if string(lo) == "text/event-stream" {
		return false // each event must leave as it comes; see the README
	}
	if s.exact[string(lo)] {
		return true
	}
	// application/problem+json is JSON, image/svg+xml is XML.
	if i := bytes.LastIndexByte(lo, '+'); i >= 0 {
		slash := bytes.IndexByte(lo, '/')
		if slash >= 0 && (s.exact[string(lo[:slash+1])+string(lo[i+1:])]) {
			return true
		}
	}
	for _, fam := range s.families {
		if bytes.HasPrefix(lo, []byte(fam)) {
			return true
		}
	}
	return false
}

// choose picks the coding the client accepts with the highest q (ties: weir's order). identity
// and * are understood; nil means send the body as it is.
func (s *Filter) choose(accept []byte) *coding {
	var best *coding
	bestQ := 0
	star := -1 // q of *, -1 when absent
	var qs [3]int
	for i := range qs {
		qs[i] = -1
	}
	for rest := accept; len(rest) > 0; {
		var item []byte
		if i := bytes.IndexByte(rest, ','); i >= 0 {
			item, rest = rest[:i], rest[i+1:]
		} else {
			item, rest = rest, nil
		}
		name, q := token(item)
		if string(name) == "*" {
			star = q
			continue
		}
		for i, c := range s.codings {
			if bytes.EqualFold(name, c.value) || (c.name == "gzip" && bytes.EqualFold(name, []byte("x-gzip"))) {
				qs[i] = q
			}
		}
	}
	for i, c := range s.codings {
		q := qs[i]
		if q < 0 {
			q = star // not named: * decides, if present
		}
		if q > bestQ { // a tie keeps the earlier: weir's preference
			best, bestQ = c, q
		}
	}
	return best
}

// token reads "name;q=0.5" into the name and q in thousandths (1000 when absent, 0 for a bad q).
func token(item []byte) ([]byte, int) {
	name, params, _ := bytes.Cut(item, []byte(";"))
	name = bytes.TrimSpace(name)
	q := 1000
	for rest := params; len(rest) > 0; {
		var p []byte
		p, rest, _ = bytes.Cut(rest, []byte(";"))
		p = bytes.TrimSpace(p)
		if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
			continue
		}
		q = parseQ(p[2:])
	}
	return name, q
}

// parseQ reads a qvalue (0, 0.5, 1.000) in thousandths; anything else is 0.
func parseQ(v []byte) int {
	if len(v) == 0 || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return 0
	}
	q := int(v[0]-'0') * 1000
	if len(v) > 1 {
		if v[1] != '.' {
			return 0
		}
		scale := 100
		for _, d := range v[2:] {
			if d < '0' || d > '9' {
				return 0
			}
			q += int(d-'0') * scale
			scale /= 10
		}
	}
	return min(q, 1000)
}

// weakenETag: the encoded body is another representation, so a strong validator no longer holds
// for it byte for byte (as nginx does).
func weakenETag(h *fasthttp.ResponseHeader) {
	if e := h.Peek(fasthttp.HeaderETag); len(e) > 0 && !bytes.HasPrefix(e, []byte("W/")) {
		var buf [256]byte
		h.SetBytesV(fasthttp.HeaderETag, append(append(buf[:0], "W/"...), e...))
	}
}

func slicesIndex(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// stream compresses a streamed body as it is read: every read from the upstream is encoded and
// flushed, so an NDJSON line or a progress chunk leaves at once, compressed. The body leaves
// chunked. Only a body that can be handed over (filters.Handoff: weir's upstream streams) is
// compressed; another is sent as it is.
func (s *step) stream(resp *fasthttp.Response, body io.Reader, c *coding) {
	ho, ok := body.(filters.Handoff)
	if !ok {
		return
	}
	z := &streamer{src: body, coding: c, enc: c.pool.Get().(encoder), buf: chunks.Get().(*[chunkSize]byte)}
	z.enc.Reset(&z.out)
	ho.HandOff() // SetBodyStream closes the body it replaces: this once, the stream ignores it
	resp.SetBodyStream(z, -1)
	resp.Header.SetContentEncodingBytes(c.value)
	weakenETag(&resp.Header)
}

const chunkSize = 16 << 10

var chunks = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// streamer is a compressing reader over a streamed body. It holds its encoder and a 16 KiB read
// buffer until the body ends.
type streamer struct {
	src     io.Reader
	coding  *coding
	enc     encoder
	buf     *[chunkSize]byte
	out     bytes.Buffer
	pending []byte
	done    bool
	closed  bool
}

// Unwrap returns the body compressed, so that the gateway can find its upstream stream.
func (z *streamer) Unwrap() io.Reader { return z.src }

func (z *streamer) Read(p []byte) (int, error) {
	for len(z.pending) == 0 {
		if z.done {
			return 0, io.EOF
		}
		z.out.Reset()
		n, err := z.src.Read(z.buf[:])
		if n > 0 {
			if _, werr := z.enc.Write(z.buf[:n]); werr != nil {
				return 0, werr
			}
		}
		switch {
		case err == io.EOF:
			z.done = true
			if cerr := z.enc.Close(); cerr != nil {
				return 0, cerr
			}
		case err != nil:
			return 0, err // the upstream's failure, as the stream reported it
		default:
			if ferr := z.enc.Flush(); ferr != nil {
				return 0, ferr
			}
		}
		z.pending = z.out.Bytes()
	}
	n := copy(p, z.pending)
	z.pending = z.pending[n:]
	return n, nil
}

// CloseWithError implements fasthttp.ReadCloserWithError: the encoder and buffer go back to their
// pools, and the upstream stream is closed as fasthttp would have closed it.
func (z *streamer) CloseWithError(err error) error {
	if z.closed {
		return nil
	}
	z.closed = true
	z.enc.Reset(io.Discard)
	z.coding.pool.Put(z.enc)
	chunks.Put(z.buf)
	switch src := z.src.(type) {
	case fasthttp.ReadCloserWithError:
		return src.CloseWithError(err)
	case io.Closer:
		return src.Close()
	}
	return nil
}
