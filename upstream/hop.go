package upstream

import (
	"bytes"
	"iter"
	"slices"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// hopHeaders are meaningful for one connection only (RFC 9110 §7.6.1) and never forwarded. Trailer is
// not among them: fasthttp relays trailers end to end, and their announcement must travel with them.
var hopHeaders = NewNameSet(
	fasthttp.HeaderConnection,
	"Proxy-Connection",
	fasthttp.HeaderKeepAlive,
	fasthttp.HeaderProxyAuthenticate,
	fasthttp.HeaderProxyAuthorization,
	fasthttp.HeaderTE,
	fasthttp.HeaderTransferEncoding,
	fasthttp.HeaderUpgrade,
)

// NameSet is a set of header names, matched ignoring ASCII case (header names are tokens: ASCII only).
// Every line of every message is looked up in several sets, so a lookup must be cheap: a mask of the
// names' lengths turns most lines away without comparing a byte, and the rest are compared only with
// the names of their own length.
type NameSet struct {
	lens  uint64   // bit l is set when a name has length l; bit 63 stands for 63 bytes or more
	names []string // in lower case
}

// NewNameSet returns the set of names.
func NewNameSet(names ...string) *NameSet {
	s := &NameSet{}
	for _, n := range names {
		s.lens |= 1 << min(len(n), 63)
		s.names = append(s.names, strings.ToLower(n))
	}
	return s
}

// Has reports whether name is in the set, ignoring ASCII case. A nil set is empty.
func (s *NameSet) Has(name []byte) bool {
	if s == nil || s.lens&(1<<min(len(name), 63)) == 0 {
		return false
	}
	for _, k := range s.names {
		if len(k) == len(name) && equalLower(name, k) {
			return true
		}
	}
	return false
}

// delFrom deletes every header of the set from h. A nil set deletes nothing.
func (s *NameSet) delFrom(h interface{ Del(key string) }) {
	if s == nil {
		return
	}
	for _, k := range s.names {
		h.Del(k)
	}
}

// equalLower reports whether b, in lower case, is lower; the two have the same length.
func equalLower(b []byte, lower string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// sameName reports whether two header names are equal ignoring case.
func sameName(a, b []byte) bool { return len(a) == len(b) && bytes.EqualFold(a, b) }

// Removing header lines without reordering the rest.
//
// fasthttp's Del fills the gap with the last header line. When that line's name repeats, the repeats
// change order (Via: 1, Via: 2 goes out as Via: 2, Via: 1), and RFC 9110 §5.3 makes that order
// significant: Link, Via, WWW-Authenticate... So when lines must go, every line from the first removed
// one onward is deleted and the lines that stay are added back in the order they came: one pass, and
// none at all for the many messages that carry nothing to remove. Headers fasthttp keeps outside its
// line list (Host, Content-Type, User-Agent, Content-Length, Cookie, Server, Set-Cookie, Trailer) are
// never touched: their place on the wire is fasthttp's, and re-adding Cookie would re-serialize it.

const (
	maxLines = 128 // a message with more lines is stripped with plain Del, order not kept
	maxNamed = 32  // likewise for more names listed in Connection
)

type headerLine struct{ name, value []byte }

// stripPlan is the set of lines of one header block and which of them go. At about 9 KB it lives in
// planPool rather than on the stack: a connection's goroutine keeps the stack its deepest request grew
// for as long as the connection stays open, idle or not.
type stripPlan struct {
	lines  [maxLines]headerLine
	n      int
	named  [maxNamed][]byte // names listed in Connection lines
	nNamed int
	extra  *NameSet // names the caller replaces with its own
	expect bool     // drop Expect too (requests: the server answered it)
	exceed bool     // too many lines or names, or a folded line: fall back to Del
	first  int      // index of the first line that goes; n when none does

	// StripHopResponse copies the lines it re-adds here (Del and Add reuse the memory All() points
	// into), and notes where each one is.
	saved []byte
	kept  [maxLines][2]int
}

var planPool = sync.Pool{New: func() any { return new(stripPlan) }}

func acquirePlan() *stripPlan { return planPool.Get().(*stripPlan) }

// maxSaved is the largest copy buffer a pooled plan keeps: one unusually large response head must not
// pin its size in the pool for good.
const maxSaved = 16 << 10

// release returns p to the pool, cleared, holding no reference into a message. Only the used part of
// each array is cleared: zeroing the whole plan would cost more than the strip.
func (p *stripPlan) release() {
	clear(p.lines[:p.n])
	clear(p.named[:p.nNamed])
	p.n, p.nNamed, p.extra, p.expect, p.exceed, p.first = 0, 0, nil, false, false, 0
	p.saved = p.saved[:0]
	if cap(p.saved) > maxSaved {
		p.saved = nil
	}
	planPool.Put(p)
}

func (p *stripPlan) add(name, value []byte) {
	if p.n == maxLines {
		p.exceed = true
		return
	}
	p.lines[p.n] = headerLine{name, value}
	p.n++
}

// collectNamed records the names a Connection value lists.
func (p *stripPlan) collectNamed(list []byte) {
	for len(list) > 0 {
		var name []byte
		name, list = nextToken(list)
		switch {
		case !droppableByConnection(name):
		case p.nNamed == maxNamed:
			p.exceed = true
		default:
			p.named[p.nNamed] = name
			p.nNamed++
		}
	}
}

// droppableByConnection reports whether a name listed in Connection may be dropped. Host and
// Content-Length may not: one decides routing, the other framing, and neither is the peer's to drop
// per hop.
func droppableByConnection(name []byte) bool {
	return len(name) > 0 && !sameName(name, []byte(fasthttp.HeaderHost)) &&
		!sameName(name, []byte(fasthttp.HeaderContentLength))
}

// delListed deletes from h every header the comma-separated Connection value list names. It is the
// fallback's way: by name, however many there are and wherever their lines stand. list must not point
// into memory Del reuses.
func delListed[H interface{ DelBytes([]byte) }](h H, list []byte) {
	for len(list) > 0 {
		var name []byte
		name, list = nextToken(list)
		if droppableByConnection(name) {
			h.DelBytes(name)
		}
	}
}

func (p *stripPlan) drops(name []byte) bool {
	if hopHeaders.Has(name) || p.extra.Has(name) {
		return true
	}
	if p.expect && sameName(name, []byte(fasthttp.HeaderExpect)) {
		return true
	}
	for _, k := range p.named[:p.nNamed] {
		if sameName(name, k) {
			return true
		}
	}
	return false
}

// findFirst sets p.first.
func (p *stripPlan) findFirst() {
	p.first = p.n
	for i := 0; i < p.n; i++ {
		if p.drops(p.lines[i].name) {
			p.first = i
			return
		}
	}
}

// moved reports whether line i is deleted and (unless it drops) re-added: its name occurs at or after
// the first line that goes.
func (p *stripPlan) moved(i int) bool {
	name := p.lines[i].name
	for j := p.first; j < p.n; j++ {
		if sameName(name, p.lines[j].name) {
			return true
		}
	}
	return false
}

// keptOutside are the headers fasthttp holds as parsed state rather than as lines, in requests or
// responses: deleting and re-adding them would re-serialize or re-parse them, so the strips leave
// their lines alone.
var keptOutside = NewNameSet(fasthttp.HeaderHost, fasthttp.HeaderContentType, fasthttp.HeaderUserAgent,
	fasthttp.HeaderContentLength, fasthttp.HeaderCookie, fasthttp.HeaderTrailer, fasthttp.HeaderServer,
	fasthttp.HeaderSetCookie, fasthttp.HeaderContentEncoding)

// StripHopRequest removes from a request as received its hop-by-hop headers, every header any
// Connection line names, Expect (weir answered it already), and replaced: names the caller is about
// to set itself. The gateway calls it before adding headers of its own, so a client cannot name
// X-Forwarded-For or X-Request-Id in Connection to have them removed after weir set them. The lines
// that stay keep their order. It reads the raw header block: fasthttp's Peek returns only the first
// Connection line (or just "close"), and iterating with All() would re-serialize Cookie. It does not
// allocate.
func StripHopRequest(h *fasthttp.RequestHeader, replaced *NameSet) {
	p := acquirePlan()
	defer p.release()
	chunked := false
	p.extra, p.expect = replaced, true
	for raw := h.RawHeaders(); len(raw) > 0; {
		var line []byte
		line, raw = nextLine(raw)
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			p.exceed = true // obs-fold: fasthttp unfolded the value; the raw line cannot be re-added
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		if sameName(name, []byte(fasthttp.HeaderConnection)) {
			p.collectNamed(value)
		}
		// Only chunked requests carry trailers. The header line is the sign: fasthttp replaces it
		// with Content-Length: 0 when the body was empty, but trailers may follow an empty body too.
		chunked = chunked || sameName(name, []byte(fasthttp.HeaderTransferEncoding))
		if !keptOutside.Has(name) || p.drops(name) {
			p.add(name, value)
		}
	}
	if chunked {
		DropRequestTrailers(h)
	}
	p.findFirst()
	switch {
	case p.first == p.n && !p.exceed:
		return
	case p.exceed:
		// Lines past maxLines, names past maxNamed and folded lines were not planned, so everything
		// that must go goes by name, wherever its lines stand: the caller adds its own lines rather
		// than replacing these, so none of the replaced names may survive either.
		hopHeaders.delFrom(h)
		replaced.delFrom(h)
		h.Del(fasthttp.HeaderExpect)
		delConnectionListedRaw(h, h.RawHeaders())
		return
	}
	for i := p.first; i < p.n; i++ {
		h.DelBytes(p.lines[i].name)
	}
	for i := 0; i < p.n; i++ {
		// Raw lines are a copy fasthttp set aside while parsing: Del and Add do not touch them.
		if !p.drops(p.lines[i].name) && p.moved(i) && !keptOutside.Has(p.lines[i].name) {
			h.AddBytesKV(p.lines[i].name, p.lines[i].value)
		}
	}
}

// delConnectionListedRaw deletes every header a Connection line of the raw block names, folded
// continuation lines included (fasthttp joined them into the value it parsed). The raw block is
// fasthttp's copy: deleting does not change it.
func delConnectionListedRaw(h *fasthttp.RequestHeader, raw []byte) {
	inConnection := false
	for len(raw) > 0 {
		var line []byte
		line, raw = nextLine(raw)
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if inConnection {
				delListed(h, line)
			}
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		if inConnection = sameName(bytes.TrimSpace(name), []byte(fasthttp.HeaderConnection)); inConnection {
			delListed(h, value)
		}
	}
}

// DropRequestTrailers removes the trailer fields that ended a chunked request body. fasthttp appends
// them to the header list once the body is read, where they pass for header fields but are missing
// from the raw header block; left there they would go upstream as headers around every rule the raw
// block is checked by (a trailer Forwarded or Upgrade is never stripped). Nothing upstream asked for
// them, so weir drops them, as nginx does, with the Trailer field announcing them. A name with more
// values than raw lines is deleted and its raw lines re-added (after the other headers: the order of
// such a name moves). Only chunked requests get here, so it may allocate.
func DropRequestTrailers(h *fasthttp.RequestHeader) {
	raw := h.RawHeaders()
	// The announcement goes first: the request goes upstream with a Content-Length body and no trailer
	// section, and fasthttp leaves announced names out of the header it writes (and out of block).
	h.Del(fasthttp.HeaderTrailer)
	// A copy of the header list as it would be written: unlike All(), this leaves Cookie lines as
	// received. The names below point into it, so Del and Add cannot change them.
	block := h.AppendBytes(nil)
	var extra [][]byte
	_, lines := nextLine(block) // the request line
	for name := range headerLines(lines) {
		if synthesized.Has(name) || countLines(block, name) <= countLines(raw, name) ||
			slices.ContainsFunc(extra, func(e []byte) bool { return sameName(e, name) }) {
			continue
		}
		extra = append(extra, name)
	}
	for _, name := range extra {
		values := rawValues(raw, name)
		h.DelBytes(name)
		for _, v := range values {
			h.AddBytesKV(name, v)
		}
	}
}

// synthesized are the header lines fasthttp writes from parsed state rather than from received lines,
// so their count need not match the raw block's. None of them may be a trailer anyway.
var synthesized = NewNameSet(fasthttp.HeaderContentLength, fasthttp.HeaderConnection, fasthttp.HeaderCookie,
	fasthttp.HeaderTrailer, fasthttp.HeaderHost, fasthttp.HeaderContentType)

// headerLines yields the trimmed name and value of each "name: value" line of a header block.
func headerLines(block []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		for len(block) > 0 {
			var line []byte
			line, block = nextLine(block)
			if k, v, ok := bytes.Cut(line, []byte(":")); ok && !yield(bytes.TrimSpace(k), bytes.TrimSpace(v)) {
				return
			}
		}
	}
}

// countLines counts the lines of a header block named name.
func countLines(block, name []byte) int {
	n := 0
	for k := range headerLines(block) {
		if sameName(k, name) {
			n++
		}
	}
	return n
}

// HasHeaderLine reports whether a raw header block (RequestHeader.RawHeaders) has a line named name:
// what the client sent, where fasthttp's parsed state may already have replaced it.
func HasHeaderLine(raw []byte, name string) bool {
	return countLines(raw, []byte(name)) > 0
}

// rawValues returns the values of the raw header lines named name, in order.
func rawValues(raw, name []byte) [][]byte {
	var values [][]byte
	for k, v := range headerLines(raw) {
		if sameName(k, name) {
			values = append(values, v)
		}
	}
	return values
}

// StripHopResponse removes an upstream response's hop-by-hop headers, including every header any
// Connection line names, keeping the order of the lines that stay. A response from fasthttp's client
// has no raw header block, so its lines are read with All(), which leaves Set-Cookie as received, and
// the lines to re-add are copied first (Del and Add reuse the buffers All() points into). It does not
// allocate once the pooled plan's copy buffer has grown to the size of the heads it sees.
func StripHopResponse(h *fasthttp.ResponseHeader) {
	p := acquirePlan()
	defer p.release()
	for name, value := range h.All() {
		if sameName(name, []byte(fasthttp.HeaderConnection)) {
			p.collectNamed(value)
		}
		if !keptOutside.Has(name) {
			p.add(name, value)
		}
	}
	p.findFirst()
	switch {
	case p.first == p.n && !p.exceed:
		return
	case p.exceed:
		// By name, as for requests. The Connection values are copied first: Del reuses the memory
		// All() points into.
		for name, value := range h.All() {
			if sameName(name, []byte(fasthttp.HeaderConnection)) {
				p.saved = append(append(p.saved, value...), ',')
			}
		}
		delListed(h, p.saved)
		hopHeaders.delFrom(h)
		return
	}
	nKept := 0
	for i := 0; i < p.n; i++ {
		if p.drops(p.lines[i].name) || !p.moved(i) {
			continue
		}
		start := len(p.saved)
		p.saved = append(append(append(p.saved, p.lines[i].name...), ':'), p.lines[i].value...)
		p.kept[nKept] = [2]int{start, len(p.saved)}
		nKept++
	}
	for i := p.first; i < p.n; i++ {
		h.DelBytes(p.lines[i].name)
	}
	for _, k := range p.kept[:nKept] {
		name, value, _ := bytes.Cut(p.saved[k[0]:k[1]], []byte(":"))
		h.AddBytesKV(name, value)
	}
}

// nextLine splits the first CRLF- (or LF-) terminated line off b.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:]
	}
	return b, nil
}

// nextToken splits the first element off a comma-separated header list.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		return bytes.TrimSpace(list[:i]), list[i+1:]
	}
	return bytes.TrimSpace(list), nil
}
