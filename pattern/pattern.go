// Package pattern parses route path patterns (the fasthttp/router syntax weir accepts), matches paths
// against them (Tree) and reads parameter values out of matched paths. fasthttp/router registers the
// routes and reports conflicts; this package rejects the patterns it would take literally or never
// match, and does the per-request work without the router's allocations.
package pattern

import (
	"fmt"
	"regexp"
	"strings"
)

// Pattern is a parsed path pattern such as /api/users/{id}.
type Pattern struct {
	Text     string
	segments []segment
}

type segmentKind uint8

const (
	literal  segmentKind = iota
	param                // {name} or {name:regex}, with optional literal prefix and suffix
	optional             // {name?}: a whole last segment that may be absent
	catchAll             // {name:*}: the rest of the path
)

type segment struct {
	kind   segmentKind
	text   string // literal segments
	name   string
	prefix string
	suffix string
	re     string // a parameter's regular expression, if any
}

// Param is one parameter's value in a matched path. Value aliases the path it was read from.
type Param struct {
	Name  string
	Value []byte
}

// Parse checks a pattern and returns it parsed. Besides syntax it refuses segments that a normalized
// request path can never contain (empty, "." and ".."), and more than one parameter in a segment,
// whose split between the parameters would be a guess.
func Parse(p string) (*Pattern, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path pattern %q must start with /", p)
	}
	if strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") {
		return nil, fmt.Errorf("path pattern %q has an empty, . or .. segment; requests are matched after normalization, so it could never match", p)
	}
	pat := &Pattern{Text: p}
	var names []string
	rest := p[1:]
	for rest != "" || len(pat.segments) == 0 {
		seg, more, err := splitSegment(p, rest)
		if err != nil {
			return nil, err
		}
		s, err := parseSegment(p, seg, more == "")
		if err != nil {
			return nil, err
		}
		if s.kind != literal {
			for _, n := range names {
				if n == s.name {
					return nil, fmt.Errorf("path pattern %q uses parameter {%s} twice", p, s.name)
				}
			}
			names = append(names, s.name)
		}
		pat.segments = append(pat.segments, s)
		if more == "" {
			break
		}
		rest = more[1:]
		if rest == "" { // a trailing slash is a literal empty last segment
			pat.segments = append(pat.segments, segment{kind: literal})
		}
	}
	return pat, nil
}

// splitSegment cuts the first segment off rest, skipping slashes inside a parameter's regex.
func splitSegment(p, rest string) (seg, more string, err error) {
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '/':
			return rest[:i], rest[i:], nil
		case '{':
			end := closingBrace(rest, i)
			if end < 0 {
				return "", "", fmt.Errorf("path pattern %q has a { without a matching }", p)
			}
			i = end
		case '}':
			return "", "", fmt.Errorf("path pattern %q has a } without a matching {", p)
		}
	}
	return rest, "", nil
}

func parseSegment(p, seg string, last bool) (segment, error) {
	open := strings.IndexByte(seg, '{')
	if open < 0 {
		return segment{kind: literal, text: seg}, nil
	}
	end := closingBrace(seg, open)
	if strings.IndexByte(seg[end+1:], '{') >= 0 {
		return segment{}, fmt.Errorf("path pattern %q: a segment may hold only one parameter", p)
	}
	s := segment{kind: param, prefix: seg[:open], suffix: seg[end+1:]}
	name, spec, hasSpec := strings.Cut(seg[open+1:end], ":")
	if !hasSpec && strings.HasSuffix(name, "?") {
		name, s.kind = strings.TrimSuffix(name, "?"), optional
	}
	s.name = name
	if !ValidName(name) {
		return segment{}, fmt.Errorf("path pattern %q: parameter name %q must be letters, digits and _, not starting with a digit", p, name)
	}
	whole := s.prefix == "" && s.suffix == ""
	switch {
	case s.kind == optional && (!last || !whole):
		return segment{}, fmt.Errorf("path pattern %q: optional parameter {%s?} must be a whole last segment", p, name)
	case hasSpec && spec == "*":
		if !last || !whole {
			return segment{}, fmt.Errorf("path pattern %q: catch-all {%s:*} must be a whole last segment", p, name)
		}
		s.kind = catchAll
	case hasSpec && spec == "":
		return segment{}, fmt.Errorf("path pattern %q: parameter {%s:} has an empty regular expression", p, name)
	case hasSpec:
		if _, err := regexp.Compile(spec); err != nil {
			return segment{}, fmt.Errorf("path pattern %q: parameter {%s} has an invalid regular expression: %v", p, name, err)
		}
		s.re = spec
	}
	return s, nil
}

// closingBrace finds the } closing the { at s[open], letting a regular expression after ":" contain
// balanced braces of its own ({n:[0-9]{3}}), as fasthttp/router does; -1 if there is none.
func closingBrace(s string, open int) int {
	depth, inRegex := 0, false
	for j := open + 1; j < len(s); j++ {
		switch s[j] {
		case ':':
			inRegex = true
		case '{':
			if !inRegex {
				return -1
			}
			depth++
		case '}':
			if depth == 0 {
				return j
			}
			depth--
		}
	}
	return -1
}

// ValidName reports whether s can name a parameter: letters, digits and _, not starting with a digit.
func ValidName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Names lists the pattern's parameters in order.
func (p *Pattern) Names() []string {
	var names []string
	for _, s := range p.segments {
		if s.kind != literal {
			names = append(names, s.name)
		}
	}
	return names
}

// Params appends the parameter values of path to dst. path must be one the pattern matched (the router
// decided that); values alias path. It does not allocate when dst has room.
func (p *Pattern) Params(path []byte, dst []Param) []Param {
	rest := path
	if len(rest) > 0 && rest[0] == '/' {
		rest = rest[1:]
	}
	for _, s := range p.segments {
		var seg []byte
		if s.kind == catchAll {
			seg, rest = rest, nil
		} else if i := indexSlash(rest); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest = rest, nil
		}
		switch s.kind {
		case param:
			if len(seg) >= len(s.prefix)+len(s.suffix) {
				seg = seg[len(s.prefix) : len(seg)-len(s.suffix)]
			}
			dst = append(dst, Param{Name: s.name, Value: seg})
		case optional, catchAll:
			dst = append(dst, Param{Name: s.name, Value: seg})
		}
	}
	return dst
}

func indexSlash(b []byte) int {
	for i, c := range b {
		if c == '/' {
			return i
		}
	}
	return -1
}
