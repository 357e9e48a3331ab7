package filters

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/bytedance/sonic/ast"
	"github.com/bytedance/sonic/encoder"
	"github.com/bytedance/sonic/utf8"
	"github.com/valyala/fasthttp"
)

// JSONConfig is the `json` filter: it reshapes the upstream's JSON response body. The steps run in
// this order: target, allow, deny, rename, wrap. At least one of them must be set.
//
// A path is dotted keys through nested objects: "profile.email" is the "email" member of the
// "profile" object. allow, deny and rename reach through arrays: where a path meets an array, the
// rest of the path applies to each object in it (nested arrays too), so deny [profile.ssn] also
// removes ssn from every object of a profile array; scalars in such arrays are kept. target does not
// go into arrays (a target path meeting an array or a scalar matches nothing), and a key containing a
// dot cannot be named. Keys keep their order, and duplicate keys are treated one by one like any
// other.
//
// Only 2xx answers of the upstream (not 204 or 206, not to HEAD) with Content-Type application/json or
// any type/subtype+json (parameters allowed) and no Content-Encoding other than identity are shaped.
// Everything else, and a body that is not valid JSON, is larger than max_body_bytes, or lacks the
// target, passes through unchanged and is counted by reason (see JSON.Skipped). While the filter is
// on a route, the upstream is asked for an uncompressed body: the request goes up without
// Accept-Encoding. A shaped body keeps the upstream's other headers and gets a new Content-Length.
//
// Values the filter does not edit are copied byte for byte (numbers keep their spelling), then the
// whole shaped body is escaped for browsers like encoding/json does: <, >, &, U+2028 and U+2029 as
// \u003c, \u003e, \u0026, \u2028, \u2029, and invalid UTF-8 as \ufffd.
type JSONConfig struct {
	// Target, when set, replaces the body with the value at this path ("data", "result.items"). The
	// value may be of any type. A body without it passes through unchanged (reason missing_target).
	// Absent: the whole body.
	Target string `yaml:"target"`
	// Allow keeps only these paths and drops every other member: allow [id, profile.email] turns
	// {"id":1,"name":"a","profile":{"email":"e","ssn":"s"}} into {"id":1,"profile":{"email":"e"}}.
	// An object on the way to a kept path keeps only what is allowed inside it; a member on the way
	// that is not an object is dropped; missing paths are simply absent. Absent: keep everything. The
	// list must not be empty, repeat a path or list a path inside another.
	Allow []string `yaml:"allow"`
	// Deny removes these paths (after allow); missing paths are ignored. Absent: remove nothing. The
	// list must not be empty or overlap itself, and a path must not also be in allow, nor be the
	// parent of an allowed path.
	Deny []string `yaml:"deny"`
	// Rename maps old paths to new ones (after allow and deny, named by their original paths). A
	// rename stays inside its parent object, so both sides have the same parent: {email: contact,
	// profile.name: profile.full_name}. The member keeps its position; if the object already has a
	// member with the new name, the renamed one replaces it. All renames of an object happen at once,
	// so {a: b, b: a} swaps. Absent: no renames. Two renames may not share a new name, an old path
	// must not be removed by deny nor (with allow) be left out by allow, and a new name must not
	// replace an allowed path.
	Rename map[string]string `yaml:"rename"`
	// Wrap, when set, puts the shaped body under this path: wrap "result" gives {"result": ...}, and
	// "meta.result" gives {"meta":{"result": ...}}. Absent: no wrapping.
	Wrap string `yaml:"wrap"`
	// MaxBodyBytes is the largest body that is shaped, in bytes; larger ones pass through unchanged
	// (reason too_large). The default, 1048576 (1 MiB), bounds the extra memory and CPU a response costs:
	// shaping holds the body, a lazily parsed tree of the objects it edits and the output at once,
	// and bodies this large are exports and dumps rather than API responses a client would reshape.
	MaxBodyBytes int `yaml:"max_body_bytes" default:"1048576"`
}

// Reasons a response passes through the json filter unchanged, as reported by JSON.Skipped.
const (
	JSONSkipNotAnswered   = "not_answered"   // the gateway answered (rejection, upstream failure)
	JSONSkipStatus        = "status"         // not 2xx, or 204/206
	JSONSkipHead          = "head"           // the response to a HEAD request has no body
	JSONSkipContentType   = "content_type"   // not application/json or */*+json
	JSONSkipEncoding      = "encoding"       // a Content-Encoding other than identity
	JSONSkipStream        = "stream"         // a streamed body
	JSONSkipTooLarge      = "too_large"      // more than max_body_bytes
	JSONSkipInvalidJSON   = "invalid_json"   // not a valid JSON text
	JSONSkipMissingTarget = "missing_target" // the body has no value at target
)

type jsonSkip uint8

const (
	skipNotAnswered jsonSkip = iota
	skipStatus
	skipHead
	skipContentType
	skipEncoding
	skipStream
	skipTooLarge
	skipInvalidJSON
	skipMissingTarget
	numJSONSkips
	shapedOK jsonSkip = 255
)

var jsonSkipNames = [numJSONSkips]string{
	JSONSkipNotAnswered, JSONSkipStatus, JSONSkipHead, JSONSkipContentType, JSONSkipEncoding,
	JSONSkipStream, JSONSkipTooLarge, JSONSkipInvalidJSON, JSONSkipMissingTarget,
}

// maxRenamesPerObject bounds the renames inside one object (they are tracked in a uint64 bit set).
const maxRenamesPerObject = 64

// JSON is a compiled json filter. Its counters are safe to read while it serves.
type JSON struct {
	target    []any      // target path for ast.Searcher; empty: the whole body
	root      *jsonLevel // allow/deny/rename rules for the root object (or each element); nil: none
	wrapOpen  []byte     // {"a":{"b":
	wrapClose []byte     // }}
	maxBody   int

	shaped  atomic.Uint64
	skipped [numJSONSkips]atomic.Uint64
}

// jsonLevel holds the rules for the members of one object.
type jsonLevel struct {
	// allowOnly means an allow list applies here: members without an allow entry are dropped.
	allowOnly bool
	fields    []*jsonField
	renames   []*jsonField // the fields with a rename; field.bit is 1 << index here
}

// jsonField is the rules for one member name of an object.
type jsonField struct {
	key     string
	keep    bool   // an allow path ends here: keep the whole value
	through bool   // an allow path continues below: keep the value only if it is an object
	deny    bool   // a deny path ends here
	rename  string // new name, "" if none
	quoted  []byte // `"new name":`
	bit     uint64
	sub     *jsonLevel // rules inside the value, when it is an object
}

func (lv *jsonLevel) find(key string) *jsonField {
	for _, f := range lv.fields {
		if f.key == key {
			return f
		}
	}
	return nil
}

func (lv *jsonLevel) add(key string) *jsonField {
	if f := lv.find(key); f != nil {
		return f
	}
	f := &jsonField{key: key}
	lv.fields = append(lv.fields, f)
	return f
}

// kept reports whether a member with rules f (nil: none) and value v survives allow and deny.
func (lv *jsonLevel) kept(f *jsonField, v *ast.Node) bool {
	switch {
	case f == nil:
		return !lv.allowOnly
	case f.deny:
		return false
	case !lv.allowOnly:
		return true
	}
	return f.keep || f.through && (v.Type() == ast.V_OBJECT || v.Type() == ast.V_ARRAY)
}

// NewJSON validates cfg and builds the filter.
func NewJSON(cfg JSONConfig, _ Env) (*JSON, error) {
	var errs []error
	fail := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }

	if cfg.Target == "" && cfg.Allow == nil && cfg.Deny == nil && cfg.Rename == nil && cfg.Wrap == "" {
		fail("", "set at least one of target, allow, deny, rename or wrap")
	}
	if cfg.MaxBodyBytes <= 0 {
		fail("max_body_bytes", "must be more than 0 bytes, got %d", cfg.MaxBodyBytes)
	}
	// path checks one path and returns its parts (nil if it is not a valid path).
	path := func(field, p string) []string {
		parts := strings.Split(p, ".")
		if p == "" || slices.Contains(parts, "") {
			fail(field, "invalid path %q; write keys separated by dots, like profile.email", p)
			return nil
		}
		return parts
	}
	var target, wrap []string
	if cfg.Target != "" {
		target = path("target", cfg.Target)
	}
	if cfg.Wrap != "" {
		wrap = path("wrap", cfg.Wrap)
	}
	if cfg.Allow != nil && len(cfg.Allow) == 0 {
		fail("allow", "the list is empty, which would drop everything; leave allow out to keep every member")
	}
	if cfg.Deny != nil && len(cfg.Deny) == 0 {
		fail("deny", "the list is empty; list at least one path or leave deny out")
	}
	if cfg.Rename != nil && len(cfg.Rename) == 0 {
		fail("rename", "the mapping is empty; map at least one path or leave rename out")
	}

	allow := pathList("allow", cfg.Allow, path, fail)
	deny := pathList("deny", cfg.Deny, path, fail)
	for i, d := range deny {
		if d == nil {
			continue
		}
		for k, a := range allow {
			switch {
			case a == nil:
			case slices.Equal(a, d):
				fail(jsonIndex("deny", i), "%q is also in allow[%d]; a path is either allowed or denied", cfg.Deny[i], k)
			case isPrefix(d, a):
				fail(jsonIndex("deny", i), "%q removes allow[%d] %q entirely; deny something inside an allowed path instead", cfg.Deny[i], k, cfg.Allow[k])
			}
		}
	}

	type renameRule struct{ from, to []string }
	var renames []renameRule
	olds := make([]string, 0, len(cfg.Rename))
	for old := range cfg.Rename {
		olds = append(olds, old)
	}
	slices.Sort(olds)
	newNames := map[string]string{} // new path -> old path that claimed it
	for _, old := range olds {
		field := "rename." + old
		from, to := path(field, old), path(field, cfg.Rename[old])
		if from == nil || to == nil {
			continue
		}
		ok := true
		switch {
		case len(from) != len(to) || !slices.Equal(from[:len(from)-1], to[:len(to)-1]):
			want := strings.Join(append(slices.Clone(from[:len(from)-1]), to[len(to)-1]), ".")
			fail(field, "%q is not in the same object as %q; a rename stays inside its parent object (write %q)", cfg.Rename[old], old, want)
			ok = false
		case slices.Equal(from, to):
			fail(field, "renames %q to itself", old)
			ok = false
		}
		if prev, dup := newNames[cfg.Rename[old]]; dup {
			fail(field, "%q is also the new name of rename.%s", cfg.Rename[old], prev)
			ok = false
		} else {
			newNames[cfg.Rename[old]] = old
		}
		for k, d := range deny {
			if d != nil && isPrefix(d, from) {
				fail(field, "%q is removed by deny[%d] %q before renames run", old, k, cfg.Deny[k])
				ok = false
			}
		}
		if cfg.Allow != nil {
			covered := false
			for k, a := range allow {
				switch {
				case a == nil:
				case isPrefix(a, from) || isPrefix(from, a):
					covered = true
				case isPrefix(to, a):
					fail(field, "new name %q would replace allow[%d] %q", cfg.Rename[old], k, cfg.Allow[k])
					ok = false
				}
			}
			if !covered {
				fail(field, "%q is not kept by allow, so there is nothing to rename", old)
				ok = false
			}
		}
		if ok {
			renames = append(renames, renameRule{from, to})
		}
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	j := &JSON{maxBody: cfg.MaxBodyBytes}
	for _, k := range target {
		j.target = append(j.target, k)
	}
	for _, k := range wrap {
		j.wrapOpen = append(appendJSONKey(append(j.wrapOpen, '{'), k), ':')
		j.wrapClose = append(j.wrapClose, '}')
	}
	if len(allow)+len(deny)+len(renames) > 0 {
		j.root = &jsonLevel{}
	}
	for _, a := range allow {
		lv := j.root
		lv.allowOnly = true
		for i, k := range a {
			f := lv.add(k)
			if i == len(a)-1 {
				f.keep = true
				break
			}
			f.through = true
			if f.sub == nil {
				f.sub = &jsonLevel{}
			}
			lv = f.sub
			lv.allowOnly = true
		}
	}
	for _, d := range deny {
		j.root.walk(d).deny = true
	}
	for _, r := range renames {
		lv := j.root
		for _, k := range r.from[:len(r.from)-1] {
			f := lv.add(k)
			if f.sub == nil {
				f.sub = &jsonLevel{}
			}
			lv = f.sub
		}
		f := lv.add(r.from[len(r.from)-1])
		if len(lv.renames) == maxRenamesPerObject {
			return nil, fieldErr("rename."+strings.Join(r.from, "."), "more than %d renames in one object", maxRenamesPerObject)
		}
		f.rename = r.to[len(r.to)-1]
		f.quoted = append(appendJSONKey(nil, f.rename), ':')
		f.bit = 1 << len(lv.renames)
		lv.renames = append(lv.renames, f)
	}
	return j, nil
}

// walk returns the field at path p below lv, creating the levels on the way.
func (lv *jsonLevel) walk(p []string) *jsonField {
	for _, k := range p[:len(p)-1] {
		f := lv.add(k)
		if f.sub == nil {
			f.sub = &jsonLevel{}
		}
		lv = f.sub
	}
	return lv.add(p[len(p)-1])
}

// pathList checks a list of paths (no duplicates, none inside another) and returns their parts; an
// invalid entry is nil.
func pathList(name string, list []string, path func(field, p string) []string, fail func(field, format string, args ...any)) [][]string {
	out := make([][]string, len(list))
	for i, p := range list {
		field := jsonIndex(name, i)
		parts := path(field, p)
		if parts == nil {
			continue
		}
		for k := 0; k < i; k++ {
			switch q := out[k]; {
			case q == nil:
			case slices.Equal(q, parts):
				fail(field, "%q is listed twice (also %s[%d])", p, name, k)
				parts = nil
			case isPrefix(q, parts):
				fail(field, "%q is inside %s[%d] %q, which already covers it", p, name, k, list[k])
				parts = nil
			case isPrefix(parts, q):
				fail(field, "%q contains %s[%d] %q; list only one of them", p, name, k, list[k])
				parts = nil
			}
			if parts == nil {
				break
			}
		}
		out[i] = parts
	}
	return out
}

func jsonIndex(name string, i int) string {
	return name + "[" + strconv.Itoa(i) + "]"
}

// isPrefix reports whether path p is q or an ancestor of q.
func isPrefix(p, q []string) bool {
	return len(p) <= len(q) && slices.Equal(p, q[:len(p)])
}

// Shaped is the number of responses the filter has reshaped.
func (j *JSON) Shaped() uint64 { return j.shaped.Load() }

// Skipped is the number of responses passed through unchanged, by reason (the JSONSkip* constants).
// Every reason is present, zero or not.
func (j *JSON) Skipped() map[string]uint64 {
	m := make(map[string]uint64, numJSONSkips)
	for i := range j.skipped {
		m[jsonSkipNames[i]] = j.skipped[i].Load()
	}
	return m
}

// Wrap returns the json step around next.
func (j *JSON) Wrap(next Handler) Handler { return jsonStep{j: j, next: next} }

type jsonStep struct {
	j    *JSON
	next Handler
}

func (s jsonStep) Serve(x *Exchange) {
	// Ask the upstream for a body this filter can read. The client's Accept-Encoding is put back
	// afterwards for the steps around this one (a compression step, say).
	h := &x.Ctx.Request.Header
	var aeBuf [128]byte
	ae := append(aeBuf[:0], h.Peek(fasthttp.HeaderAcceptEncoding)...)
	if len(ae) > 0 {
		h.Del(fasthttp.HeaderAcceptEncoding)
	}
	s.next.Serve(x)
	if len(ae) > 0 {
		h.SetBytesV(fasthttp.HeaderAcceptEncoding, ae)
	}
	if r := s.j.respond(x); r != shapedOK {
		s.j.skipped[r].Add(1)
	} else {
		s.j.shaped.Add(1)
	}
}

// respond reshapes the response in x if it qualifies.
func (j *JSON) respond(x *Exchange) jsonSkip {
	if !x.Answered() {
		return skipNotAnswered
	}
	resp := &x.Ctx.Response
	if st := resp.StatusCode(); st < 200 || st > 299 || st == fasthttp.StatusNoContent || st == fasthttp.StatusPartialContent {
		return skipStatus
	}
	if x.Ctx.Request.Header.IsHead() {
		return skipHead
	}
	if !isJSONMediaType(resp.Header.ContentType()) {
		return skipContentType
	}
	if ce := bytes.TrimSpace(resp.Header.ContentEncoding()); len(ce) > 0 && !bytes.EqualFold(ce, []byte("identity")) {
		return skipEncoding
	}
	if resp.IsBodyStream() {
		return skipStream
	}
	body := resp.Body()
	if len(body) > j.maxBody {
		return skipTooLarge
	}
	bufs := jsonBufPool.Get().(*jsonBufs)
	out, r := j.transform(body, bufs)
	if r == shapedOK {
		// The shaped tree pointed into body; nothing of it is used from here on.
		resp.SetBody(out)
		resp.Header.SetContentLength(len(out))
		// The upstream's validators and digests describe the body it sent, not this one: a strong ETag
		// would let a cache match conditional requests against the wrong representation.
		for _, h := range [...]string{fasthttp.HeaderETag, "Content-Md5", "Digest", "Repr-Digest", "Content-Digest"} {
			resp.Header.Del(h)
		}
	}
	if cap(bufs.a) <= jsonPoolMaxBuf && cap(bufs.b) <= jsonPoolMaxBuf {
		jsonBufPool.Put(bufs)
	}
	return r
}

type jsonBufs struct{ a, b []byte }

// jsonPoolMaxBuf keeps buffers grown by unusually large bodies out of the pool.
const jsonPoolMaxBuf = 4 << 20

var jsonBufPool = sync.Pool{New: func() any { return &jsonBufs{a: make([]byte, 0, 4096), b: make([]byte, 0, 4096)} }}

// transform validates body and returns the shaped body, built in bufs (valid until bufs is reused).
//
// body is read in place, without a copy, although it is the response's own buffer: every ast.Node
// made from it lives only during this call, and the result is in bufs, so nothing refers to body once
// the caller replaces it.
//
// Escaping: untouched values are copied byte for byte from the upstream's text (the lazily parsed
// tree is never re-encoded), so their escapes survive. The output is then made safe for browsers the
// way sonic.ConfigStd does it, not ConfigDefault: its EscapeHTML step (encoder.HTMLEscape: <, >, &,
// U+2028 and U+2029 inside strings become \u003c, \u003e, \u0026, \u2028, \u2029, so the JSON cannot
// close a <script> element or break a JavaScript string) and its ValidateString step (invalid UTF-8
// becomes \ufffd). ConfigDefault, and ast.Node.MarshalJSON, would write such characters raw, and a
// shaped body should be no less safe than what encoding/json would produce.
func (j *JSON) transform(body []byte, bufs *jsonBufs) ([]byte, jsonSkip) {
	if !validJSON(body) {
		return nil, skipInvalidJSON
	}
	src := unsafe.String(unsafe.SliceData(body), len(body))
	raw := strings.Trim(src, " \t\r\n")
	if len(j.target) > 0 {
		s := ast.NewSearcher(src)
		s.ValidateJSON = false // validJSON has checked the whole body
		n, err := s.GetByPath(j.target...)
		if err != nil {
			// Not found, or a non-object on the way (the searcher reports that as a syntax error).
			return nil, skipMissingTarget
		}
		if raw, err = n.Raw(); err != nil {
			return nil, skipMissingTarget
		}
	}
	out := append(bufs.a[:0], j.wrapOpen...)
	out, err := j.shapeRoot(raw, out)
	bufs.a = out
	if err != nil {
		return nil, skipInvalidJSON
	}
	out = append(out, j.wrapClose...)
	bufs.a = out
	esc := encoder.HTMLEscape(bufs.b[:0], out)
	bufs.b = esc
	if !utf8.Validate(esc) {
		out = utf8.CorrectWith(out[:0], esc, `\ufffd`)
		bufs.a = out
		return out, shapedOK
	}
	return esc, shapedOK
}

var errJSONShape = errors.New("json: unexpected structure")

// shapeRoot appends the value raw, shaped by j.root.
func (j *JSON) shapeRoot(raw string, out []byte) ([]byte, error) {
	if j.root == nil || raw == "" || raw[0] != '{' && raw[0] != '[' {
		return append(out, raw...), nil
	}
	p := ast.NewParserObj(raw)
	n, perr := p.Parse()
	if perr != 0 {
		return out, errJSONShape
	}
	return shapeValue(&n, j.root, out)
}

// shapeValue appends v with lv's rules applied: to its members if it is an object, to each element if
// it is an array (arrays nested in arrays too), and v as it is otherwise. Rules thus reach through
// arrays: deny [profile.ssn] removes ssn from the profile object and from every object of a profile
// array alike, so a denied field cannot slip out because the upstream sent a list.
func shapeValue(v *ast.Node, lv *jsonLevel, out []byte) ([]byte, error) {
	switch v.Type() {
	case ast.V_OBJECT:
		return shapeObject(v, lv, out)
	case ast.V_ARRAY:
	default:
		return appendRaw(out, v)
	}
	out = append(out, '[')
	var err error
	for i := 0; ; i++ {
		e := v.Index(i)
		if e == nil {
			break
		}
		if i > 0 {
			out = append(out, ',')
		}
		if out, err = shapeValue(e, lv, out); err != nil {
			return out, err
		}
	}
	if v.Type() != ast.V_ARRAY {
		return out, errJSONShape // a syntax error turned the array into an error node
	}
	return append(out, ']'), nil
}

// shapeObject appends the object obj with lv's rules applied to its members.
func shapeObject(obj *ast.Node, lv *jsonLevel, out []byte) ([]byte, error) {
	// IndexPair loads a lazy object one member at a time (values stay unparsed, as raw text) and
	// returns a pointer into the node, so members are neither copied nor moved to the heap.
	//
	// fired holds the renames whose member is present and kept: a member already carrying such a
	// new name is replaced by the renamed one. Finding them takes a first pass over the keys, only in
	// objects with renames.
	var fired uint64
	if len(lv.renames) > 0 {
		for i := 0; ; i++ {
			p := obj.IndexPair(i)
			if p == nil {
				break
			}
			if f := lv.find(p.Key); f != nil && f.rename != "" && lv.kept(f, &p.Value) {
				fired |= f.bit
			}
		}
	}
	out = append(out, '{')
	first := true
	var err error
	for i := 0; ; i++ {
		p := obj.IndexPair(i)
		if p == nil {
			break
		}
		if err = p.Value.Check(); err != nil {
			return out, err
		}
		f := lv.find(p.Key)
		if !lv.kept(f, &p.Value) || fired != 0 && (f == nil || f.rename == "") && replaced(lv, p.Key, fired) {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		if f != nil && f.rename != "" {
			out = append(out, f.quoted...)
		} else {
			out = append(appendJSONKey(out, p.Key), ':')
		}
		if f != nil && f.sub != nil {
			out, err = shapeValue(&p.Value, f.sub, out)
		} else {
			out, err = appendRaw(out, &p.Value)
		}
		if err != nil {
			return out, err
		}
	}
	if obj.Type() != ast.V_OBJECT {
		return out, errJSONShape // a syntax error turned the object into an error node
	}
	return append(out, '}'), nil
}

// replaced reports whether a member named key gives way to a renamed member that takes its name.
func replaced(lv *jsonLevel, key string, fired uint64) bool {
	for _, r := range lv.renames {
		if fired&r.bit != 0 && r.rename == key {
			return true
		}
	}
	return false
}

func appendRaw(out []byte, n *ast.Node) ([]byte, error) {
	raw, err := n.Raw()
	if err != nil {
		return out, err
	}
	return append(out, raw...), nil
}

// appendJSONKey appends key as a JSON string. HTML characters and invalid UTF-8 are left to the
// final pass over the whole output (see transform).
func appendJSONKey(out []byte, key string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, key[start:i]...)
		switch c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	return append(append(out, key[start:]...), '"')
}

// isJSONMediaType reports whether a Content-Type value is application/json or type/subtype+json,
// with any parameters.
func isJSONMediaType(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	slash := bytes.IndexByte(ct, '/')
	if slash <= 0 || slash == len(ct)-1 {
		return false
	}
	sub := ct[slash+1:]
	return bytes.EqualFold(ct, []byte("application/json")) ||
		len(sub) > len("+json") && bytes.EqualFold(sub[len(sub)-len("+json"):], []byte("+json"))
}

// validJSON reports whether b is one valid JSON text, as encoding/json.Valid would.
//
// sonic's validator (sonic.Valid, encoder.Valid) checks the structure but not what is inside strings:
// it accepts raw control characters and unknown escapes such as "\x" or "\u12". sonic.Get's lazy
// parsing checks even less. So the structure is checked by sonic and the strings here.
//
// sonic v1.15.5 also accepts a top-level string that is not closed when its end falls on a 32-byte
// boundary (`"` followed by 32 zeros, say); inside an array or object the missing bracket gives it
// away. So a top-level string is walked to its closing quote.
func validJSON(b []byte) bool {
	ok, start := encoder.Valid(b)
	if !ok {
		return false
	}
	if start >= 0 && start < len(b) && b[start] == '"' {
		return scanStrings(b)
	}
	return validStrings(b)
}

// validStrings checks the strings of structurally valid JSON: only the escapes JSON defines, no
// control characters. Both are found without following the strings in the common case:
//
//   - outside strings a backslash is a syntax error, so scanning left to right, every backslash
//     starts an escape sequence (an escaped backslash is consumed with its escape);
//   - outside strings the only bytes below 0x20 are the whitespace \t, \n and \r, so a body without
//     those (compact JSON) needs no more than a look for any byte below 0x20; only a body with
//     such whitespace is walked string by string (scanStrings).
func validStrings(b []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for i := 0; ; {
		k := bytes.IndexByte(b[i:], '\\')
		if k < 0 {
			break
		}
		i += k
		if i+1 >= len(b) {
			return false
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
				return false
			}
			i += 6
		default:
			return false
		}
	}
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if x := binary.LittleEndian.Uint64(b[i:]); (x-0x20*ones)&^x&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c >= 0x20:
		case c == '\t' || c == '\n' || c == '\r':
			return scanStrings(b)
		default:
			return false // inside a string, as nothing else may be outside
		}
	}
	return true
}

// scanStrings checks the strings of structurally valid JSON by walking them: no control characters,
// only the escapes JSON defines. Bytes are looked at eight at a time: the SWAR masks below have the
// high bit set in the lowest byte that matches (higher bytes may be false positives, never the
// lowest), so the trailing zero count finds the next interesting byte exactly.
func scanStrings(b []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	n := len(b)
	i := 0
	for {
		// Outside strings, the next quote opens one.
		for {
			if i+8 > n {
				k := bytes.IndexByte(b[i:], '"')
				if k < 0 {
					return true
				}
				i += k
				break
			}
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ ('"' * ones)
			if m := (q - ones) &^ q & highs; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		i++
		// Inside a string: stop at a quote, a backslash or a control character.
		for {
			for i+8 <= n {
				x := binary.LittleEndian.Uint64(b[i:])
				q := x ^ ('"' * ones)
				s := x ^ ('\\' * ones)
				if m := ((x-0x20*ones)&^x | (q-ones)&^q | (s-ones)&^s) & highs; m != 0 {
					i += bits.TrailingZeros64(m) >> 3
					break
				}
				i += 8
			}
			for i < n && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
				i++
			}
			if i >= n {
				return false
			}
			switch c := b[i]; {
			case c == '"':
				i++
			case c < 0x20:
				return false
			default: // a backslash
				if i+1 >= n {
					return false
				}
				switch b[i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					i += 2
				case 'u':
					if i+6 > n || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
						return false
					}
					i += 6
				default:
					return false
				}
				continue
			}
			break
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
