package gateway

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Problem is one thing wrong with a config file, located precisely enough for an operator to fix it.
type Problem struct {
	File string
	Line int    // 1-based; 0 when the problem is about the file as a whole
	Path string // key path such as routes[2].upstream; empty for file-level problems
	Msg  string
	// Warning marks something that works but deserves attention (a certificate about to expire);
	// warnings never make a config invalid.
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is the error returned for an invalid config: every problem found, in file order.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

// problemSink collects problems against one file, locating each key path by the line it was read from.
type problemSink struct {
	file     string
	lines    map[string]int // key path -> line of the key (or of the element, for list items)
	list     Problems
	warnings Problems
}

func newProblemSink(file string) *problemSink {
	return &problemSink{file: file, lines: make(map[string]int)}
}

// addf records a problem at path. A path that was never read (a missing key) is located at its nearest
// ancestor that was.
func (s *problemSink) addf(path, format string, args ...any) {
	p := Problem{File: s.file, Line: s.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...)}
	for _, q := range s.list {
		if q == p { // defaults.filters are built once per route; say each thing once
			return
		}
	}
	s.list = append(s.list, p)
}

// warnf records a warning at path, located like addf's problems.
func (s *problemSink) warnf(path, format string, args ...any) {
	p := Problem{File: s.file, Line: s.lineOf(path), Path: path, Msg: fmt.Sprintf(format, args...), Warning: true}
	if !slices.Contains(s.warnings, p) {
		s.warnings = append(s.warnings, p)
	}
}

func (s *problemSink) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := s.lines[p]; ok {
			return l
		}
	}
	return 0
}

// covered reports whether a problem is already recorded at path or at one of its ancestors, so that
// validation does not pile a second complaint onto a value that failed to decode.
func (s *problemSink) covered(path string) bool {
	for _, p := range s.list {
		if p.Path == path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}

func (s *problemSink) err() error {
	if len(s.list) == 0 {
		return nil
	}
	s.list.sort()
	return s.list
}

// parentPath strips the last element of a key path: a.b[2].c -> a.b[2] -> a.b -> a.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	switch {
	case parent == "":
		return key
	case key == "":
		return parent
	}
	return parent + "." + key
}
