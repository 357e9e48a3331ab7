package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// The config decoder walks yaml.v3's node tree itself instead of calling yaml.Unmarshal, for three reasons:
// every problem is reported (Unmarshal stops at the first type error), every problem names its key path
// and line, and a key absent from the file takes the `default:"…"` of its struct field, so defaults are
// declared once, next to the field they belong to.

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
	nodeType     = reflect.TypeFor[yaml.Node]()
)

// decodeConfig parses one YAML document strictly into cfg. Problems go to sink. It returns false when
// the file has no usable top-level mapping (empty, not YAML, a list...), in which case checking the
// meaning of cfg would only pile up noise about values the file never got to set.
func decodeConfig(data []byte, cfg *Config, sink *problemSink) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			sink.addf("", "the file is empty; it needs at least one route")
		} else {
			sink.list = append(sink.list, yamlSyntaxProblem(sink.file, err))
		}
		return false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil && !isEmptyDocument(&extra) {
		sink.list = append(sink.list, Problem{File: sink.file, Line: extra.Line,
			Msg: "a second YAML document (after ---) is not allowed; put everything in one document"})
	} else if err != nil && !errors.Is(err, io.EOF) {
		sink.list = append(sink.list, yamlSyntaxProblem(sink.file, err))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		if isNull(root) {
			sink.addf("", "the file has no settings; it needs at least one route")
		} else {
			sink.list = append(sink.list, Problem{File: sink.file, Line: root.Line,
				Msg: "the top level must be a mapping of keys (server, upstreams, routes...), got " + kindName(root)})
		}
		return false
	}
	d := newNodeDecoder(sink)
	d.value(root, "", reflect.ValueOf(cfg).Elem())
	return !d.state.stopped
}

// isEmptyDocument reports whether a document holds nothing, as after a trailing "---".
func isEmptyDocument(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || len(doc.Content) == 1 && isNull(doc.Content[0])
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// yamlSyntaxProblem turns "yaml: line 3: mapping values are not allowed in this context" into a Problem
// on line 3.
func yamlSyntaxProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return Problem{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

type nodeDecoder struct {
	sink  *problemSink
	state *decodeState
}

// decodeState guards the walk against hostile YAML: aliases can point back at their own ancestors
// (a cycle the walk would follow forever) or fan out exponentially (a "billion laughs" document).
type decodeState struct {
	nodes   int                 // values visited, aliases expanded included
	depth   int                 // current nesting
	merging map[*yaml.Node]bool // mappings whose merge keys are being expanded
	stopped bool                // the budget ran out; one problem was reported
}

const (
	maxDecodeNodes = 500_000 // a config with 10,000 routes has about 200,000
	maxDecodeDepth = 64
)

func newNodeDecoder(sink *problemSink) nodeDecoder {
	return nodeDecoder{sink: sink, state: &decodeState{merging: map[*yaml.Node]bool{}}}
}

// enter counts a value against the budget; false means stop descending.
func (d nodeDecoder) enter(n *yaml.Node, path string) bool {
	st := d.state
	if st.stopped {
		return false
	}
	st.nodes++
	st.depth++
	switch {
	case st.nodes > maxDecodeNodes:
		d.fail(n, path, "the document expands to more than %d values; are aliases (*name) multiplying it?", maxDecodeNodes)
	case st.depth > maxDecodeDepth:
		d.fail(n, path, "values are nested more than %d deep; does an alias (*name) refer to a mapping that contains it?", maxDecodeDepth)
	default:
		return true
	}
	st.stopped = true
	return false
}

// fail records a problem with the value n at path, on the line of its key (a block value starts on
// the line after), or on n's own line where it has no key.
func (d nodeDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	line, ok := d.sink.lines[path]
	if !ok {
		line = n.Line
	}
	d.sink.list = append(d.sink.list, Problem{File: d.sink.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// failKey records a problem with the key node k itself (unknown, or given twice), on k's line.
func (d nodeDecoder) failKey(k *yaml.Node, path, format string, args ...any) {
	d.sink.list = append(d.sink.list, Problem{File: d.sink.file, Line: k.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d nodeDecoder) value(n *yaml.Node, path string, v reflect.Value) {
	if !d.enter(n, path) {
		return
	}
	defer func() { d.state.depth-- }()
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isNull(n) {
		// A list item or map value written as nothing: leave the zero value. (A struct field written
		// as nothing takes its default; see structure.)
		return
	}
	switch {
	case v.Type() == nodeType:
		v.Set(reflect.ValueOf(*n))
		return
	case v.Type() == durationType:
		d.duration(n, path, v)
		return
	case v.Type() == sizeType:
		d.size(n, path, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, path, v.Elem())
	case reflect.Struct:
		d.structure(n, path, v)
	case reflect.Map:
		d.mapping(n, path, v)
	case reflect.Slice:
		d.sequence(n, path, v)
	case reflect.String:
		if d.expectScalar(n, path, "a string") {
			v.SetString(n.Value)
		}
	case reflect.Bool:
		var b bool
		if d.expectScalar(n, path, "true or false") && d.scalar(n, path, &b, "true or false") {
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		var i int64
		if d.expectScalar(n, path, "a whole number") && d.scalar(n, path, &i, "a whole number") {
			v.SetInt(i)
		}
	case reflect.Float64:
		var f float64
		if d.expectScalar(n, path, "a number") && d.scalar(n, path, &f, "a number") {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				d.fail(n, path, "expected a finite number, got %q", n.Value)
				return
			}
			v.SetFloat(f)
		}
	default:
		panic(fmt.Sprintf("config decoder: unsupported field type %s at %s", v.Type(), path))
	}
}

func (d nodeDecoder) expectScalar(n *yaml.Node, path, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected %s, got %s", want, kindName(n))
		return false
	}
	return true
}

func (d nodeDecoder) scalar(n *yaml.Node, path string, out any, want string) bool {
	if err := n.Decode(out); err != nil {
		d.fail(n, path, "expected %s, got %q", want, n.Value)
		return false
	}
	return true
}

func (d nodeDecoder) duration(n *yaml.Node, path string, v reflect.Value) {
	if !d.expectScalar(n, path, `a duration such as "250ms" or "5s"`) {
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			d.fail(n, path, "duration %q has no unit; durations need one, like \"250ms\" or \"5s\"", n.Value)
		} else {
			d.fail(n, path, "invalid duration %q; write it like \"250ms\", \"5s\" or \"1m30s\"", n.Value)
		}
		return
	}
	v.SetInt(int64(dur))
}

func (d nodeDecoder) size(n *yaml.Node, path string, v reflect.Value) {
	if !d.expectScalar(n, path, `a size such as 4096, "16KiB" or "4MiB"`) {
		return
	}
	s, err := ParseSize(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.SetInt(int64(s))
}

func (d nodeDecoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	si := infoOf(v.Type())
	var seen, set uint64 // by field, in si.fields order
	var unknown []string
	for _, kv := range d.pairs(n, path) {
		k, val := kv[0], kv[1]
		key := k.Value
		fpath := joinPath(path, key)
		if path == "" && strings.HasPrefix(key, "x-") {
			continue // top-level x-* keys are the operator's own, typically holding YAML anchors
		}
		j := si.find(key)
		if j < 0 {
			if !slices.Contains(unknown, key) {
				unknown = append(unknown, key)
				d.failKey(k, fpath, "unknown key %q%s", key, suggest(key, si.keys, "keys"))
			}
			continue
		}
		if seen&(1<<j) != 0 {
			if kv[2] == nil { // an explicit key given twice; a merged key is simply overridden
				d.failKey(k, fpath, "key %q appears twice in this mapping", key)
			}
			continue
		}
		seen |= 1 << j
		d.sink.lines[fpath] = k.Line
		if isNull(val) {
			continue // "key:" with nothing after it means the default, like an absent key
		}
		set |= 1 << j
		d.value(val, fpath, v.Field(si.fields[j].index))
	}
	// Absent keys take their declared default; absent nested sections get their own defaults applied.
	for j, f := range si.fields {
		switch {
		case set&(1<<j) != 0:
		case f.hasDefault:
			v.Field(f.index).Set(f.def)
		case f.nested:
			d.structure(&yaml.Node{Kind: yaml.MappingNode}, joinPath(path, f.key), v.Field(f.index))
		}
	}
}

// structInfo is what the decoder needs of a config struct type, worked out once per type.
type structInfo struct {
	fields []fieldInfo
	keys   []string // sorted, for suggestions
}

type fieldInfo struct {
	key        string
	index      int
	def        reflect.Value // the decoded `default` tag
	hasDefault bool
	nested     bool // a struct without a default: absent, it still gets its own fields' defaults
}

var structInfos sync.Map // reflect.Type -> *structInfo

func infoOf(t reflect.Type) *structInfo {
	if si, ok := structInfos.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := yamlKey(f)
		if key == "" {
			continue
		}
		fi := fieldInfo{key: key, index: i}
		if def, ok := f.Tag.Lookup("default"); ok {
			sink := newProblemSink("default")
			fi.def, fi.hasDefault = reflect.New(f.Type).Elem(), true
			newNodeDecoder(sink).value(&yaml.Node{Kind: yaml.ScalarNode, Value: def}, key, fi.def)
			if len(sink.list) > 0 {
				panic(fmt.Sprintf("config struct %s: bad default for %s: %v", t, key, sink.list))
			}
		} else if f.Type.Kind() == reflect.Struct && f.Type != nodeType {
			fi.nested = true
		}
		si.fields = append(si.fields, fi)
		si.keys = append(si.keys, key)
	}
	if len(si.fields) > 64 {
		panic(fmt.Sprintf("config struct %s has more than 64 keys", t))
	}
	sort.Strings(si.keys)
	structInfos.Store(t, si)
	return si
}

func (si *structInfo) find(key string) int {
	for j := range si.fields {
		if si.fields[j].key == key {
			return j
		}
	}
	return -1
}

// pairs lists a mapping's key/value nodes with YAML merge keys ("<<: *defaults") expanded: explicit
// keys first, then merged ones, so explicit keys win. The third element is non-nil for merged pairs.
func (d nodeDecoder) pairs(n *yaml.Node, path string) [][3]*yaml.Node {
	explicit := make([][3]*yaml.Node, 0, len(n.Content)/2)
	var merged [][3]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			explicit = append(explicit, [3]*yaml.Node{k, val, nil})
			continue
		}
		sources := []*yaml.Node{val}
		if val.Kind == yaml.SequenceNode {
			sources = val.Content
		}
		for _, src := range sources {
			if src.Kind == yaml.AliasNode {
				src = src.Alias
			}
			switch {
			case src.Kind != yaml.MappingNode:
				d.failKey(k, path, "a merge key (<<) needs a mapping or a list of mappings")
				continue
			case d.state.merging[src] || src == n:
				d.failKey(k, path, "a merge key (<<) refers to a mapping that contains it")
				continue
			case !d.enter(src, path):
				return append(explicit, merged...)
			}
			d.state.merging[src] = true
			for _, kv := range d.pairs(src, path) {
				merged = append(merged, [3]*yaml.Node{kv[0], kv[1], k})
			}
			delete(d.state.merging, src)
			d.state.depth--
		}
	}
	return append(explicit, merged...)
}

func (d nodeDecoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
	}
	for _, kv := range d.pairs(n, path) {
		k, val := kv[0], kv[1]
		fpath := joinPath(path, k.Value)
		key := reflect.ValueOf(k.Value)
		if v.MapIndex(key).IsValid() {
			if kv[2] == nil {
				d.failKey(k, fpath, "key %q appears twice in this mapping", k.Value)
			}
			continue
		}
		d.sink.lines[fpath] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(val, fpath, elem)
		v.SetMapIndex(key, elem)
	}
}

func (d nodeDecoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		d.sink.lines[ipath] = item.Line
		d.value(item, ipath, s.Index(i))
	}
	v.Set(s)
}

func yamlKey(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	return name
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// suggest names the closest known name when the unknown one looks like a typo, else lists them all.
func suggest(key string, known []string, noun string) string {
	if len(known) == 0 {
		return "; no " + noun + " are defined"
	}
	sort.Strings(known)
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; known " + noun + ": " + strings.Join(known, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
