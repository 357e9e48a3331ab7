package pattern

import (
	"regexp"
	"strings"
)

// Tree finds the value of the pattern a path matches, by segments: a literal segment is tried before
// a parameter, a parameter before a catch-all, backing off to the next choice when the rest of the
// path does not match. These are fasthttp/router's priorities; weir keeps the router to register
// routes and report conflicts, and looks paths up here because the router's lookup copies every
// parameter value (an allocation per parameter per request) whether or not anyone reads it. Match
// allocates nothing.
type Tree[V any] struct {
	root tnode[V]
}

type tnode[V any] struct {
	// literals are scanned in order; with more than a few, litMap finds them (a scan of short
	// strings beats hashing the segment).
	literals []literalChild[V]
	litMap   map[string]*tnode[V]
	params   []*tparam[V] // more specific first: see Tree.Add
	catchAll *V
	value    *V // a pattern ends here
}

type literalChild[V any] struct {
	text string
	next *tnode[V]
}

const maxScannedLiterals = 8

func (n *tnode[V]) literal(seg string) *tnode[V] {
	if n.litMap != nil {
		return n.litMap[seg]
	}
	for i := range n.literals {
		if l := &n.literals[i]; l.text == seg {
			return l.next
		}
	}
	return nil
}

// tparam is a parameter segment: {name}, {name:regex}, with a literal prefix and suffix.
type tparam[V any] struct {
	prefix, suffix string
	re             *regexp.Regexp // nil: any non-empty value
	next           tnode[V]
}

// Add registers v for p. A later Add for a pattern that matches the same paths replaces the value;
// the router, which refuses such patterns, is the place to check for them.
func (t *Tree[V]) Add(p *Pattern, v V) {
	t.add(&t.root, p.segments, v)
}

// AddText parses p and adds it.
func (t *Tree[V]) AddText(p string, v V) error {
	pat, err := Parse(p)
	if err != nil {
		return err
	}
	t.Add(pat, v)
	return nil
}

func (t *Tree[V]) add(n *tnode[V], segs []segment, v V) {
	for i, s := range segs {
		switch s.kind {
		case literal:
			next := n.literal(s.text)
			if next == nil {
				next = &tnode[V]{}
				n.literals = append(n.literals, literalChild[V]{s.text, next})
				if len(n.literals) > maxScannedLiterals {
					n.litMap = map[string]*tnode[V]{}
					for _, l := range n.literals {
						n.litMap[l.text] = l.next
					}
				}
			}
			n = next
		case catchAll:
			n.catchAll = &v
			return
		case optional:
			// {name?} matches the path without its segment too: /a/{x?} matches /a, /{x?} matches /.
			if n == &t.root {
				t.add(n, []segment{{kind: literal}}, v)
			} else {
				n.value = &v
			}
			fallthrough
		case param:
			var re *regexp.Regexp
			if s.re != "" { // only a {name:regex} parameter has one
				re = regexp.MustCompile("^(?:" + s.re + ")$") // Parse checked it compiles
			}
			var tp *tparam[V]
			for _, existing := range n.params {
				if existing.prefix == s.prefix && existing.suffix == s.suffix && sameRegexp(existing.re, re) {
					tp = existing
				}
			}
			if tp == nil {
				tp = &tparam[V]{prefix: s.prefix, suffix: s.suffix, re: re}
				n.params = append(n.params, tp)
				sortParams(n.params)
			}
			if i == len(segs)-1 {
				tp.next.value = &v
				return
			}
			t.add(&tp.next, segs[i+1:], v)
			return
		}
	}
	n.value = &v
}

func sameRegexp(a, b *regexp.Regexp) bool {
	return a == nil && b == nil || a != nil && b != nil && a.String() == b.String()
}

// sortParams puts the most specific parameters first: the longest literal prefix and suffix, then
// those with a regular expression, then the plain ones.
func sortParams[V any](ps []*tparam[V]) {
	rank := func(p *tparam[V]) int {
		r := 2 * (len(p.prefix) + len(p.suffix))
		if p.re != nil {
			r++
		}
		return r
	}
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && rank(ps[j]) > rank(ps[j-1]); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// Match returns the value of the pattern path matches. path is a normalized request path, starting
// with /.
func (t *Tree[V]) Match(path string) (V, bool) {
	if v := match(&t.root, strings.TrimPrefix(path, "/")); v != nil {
		return *v, true
	}
	var zero V
	return zero, false
}

// match matches rest, the path after a slash, below n.
func match[V any](n *tnode[V], rest string) *V {
	seg, more, last := rest, "", true
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		seg, more, last = rest[:i], rest[i+1:], false
	}
	if next := n.literal(seg); next != nil {
		if last {
			if next.value != nil {
				return next.value
			}
		} else if v := match(next, more); v != nil {
			return v
		}
	}
	for _, p := range n.params {
		// A value is never empty: /{x} does not match /, nor /{w}.json match /.json (the router lets a
		// value be empty in some places and not in others, by the shape of its tree).
		if len(seg) <= len(p.prefix)+len(p.suffix) || !strings.HasPrefix(seg, p.prefix) || !strings.HasSuffix(seg, p.suffix) {
			continue
		}
		if p.re != nil && !p.re.MatchString(seg[len(p.prefix):len(seg)-len(p.suffix)]) {
			continue
		}
		if last {
			if p.next.value != nil {
				return p.next.value
			}
		} else if v := match(&p.next, more); v != nil {
			return v
		}
	}
	return n.catchAll
}
