package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
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

// decodeConfig parses one YAML document strictly into cfg. Problems go to sink.
func decodeConfig(data []byte, cfg *Config, sink *problemSink) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			sink.addf("", "the file is empty; it needs at least one route")
			return
		}
		sink.list = append(sink.list, yamlSyntaxProblem(sink.file, err))
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		sink.list = append(sink.list, Problem{File: sink.file, Line: extra.Line,
			Msg: "a second YAML document (after ---) is not allowed; put everything in one document"})
	} else if !errors.Is(err, io.EOF) {
		sink.list = append(sink.list, yamlSyntaxProblem(sink.file, err))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d := nodeDecoder{sink: sink}
	d.value(root, "", reflect.ValueOf(cfg).Elem())
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
	sink *problemSink
}

func (d nodeDecoder) value(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// "key:" with nothing after it: leave the zero value (or the default already applied).
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
			v.SetFloat(f)
		}
	default:
		panic(fmt.Sprintf("config decoder: unsupported field type %s at %s", v.Type(), path))
	}
}

func (d nodeDecoder) expectScalar(n *yaml.Node, path, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.sink.addf(path, "expected %s, got %s", want, kindName(n))
		return false
	}
	return true
}

func (d nodeDecoder) scalar(n *yaml.Node, path string, out any, want string) bool {
	if err := n.Decode(out); err != nil {
		d.sink.addf(path, "expected %s, got %q", want, n.Value)
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
			d.sink.addf(path, "duration %q has no unit; write it like \"%sms\" or \"%ss\"", n.Value, n.Value, n.Value)
		} else {
			d.sink.addf(path, "invalid duration %q; write it like \"250ms\", \"5s\" or \"1m30s\"", n.Value)
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
		d.sink.addf(path, "%v", err)
		return
	}
	v.SetInt(int64(s))
}

func (d nodeDecoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.sink.addf(path, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	t := v.Type()
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		fpath := joinPath(path, key)
		d.sink.lines[fpath] = k.Line
		if seen[key] {
			d.sink.addf(fpath, "key %q appears twice in this mapping", key)
			continue
		}
		seen[key] = true
		f, ok := fieldByKey(t, key)
		if !ok {
			d.sink.addf(fpath, "unknown key %q%s", key, suggest(key, keysOf(t), "keys"))
			continue
		}
		d.value(val, fpath, v.FieldByIndex(f.Index))
	}
	// Absent keys take their declared default; absent nested sections get their own defaults applied.
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := yamlKey(f)
		if key == "" || seen[key] {
			continue
		}
		fv := v.Field(i)
		if def, ok := f.Tag.Lookup("default"); ok {
			d.value(&yaml.Node{Kind: yaml.ScalarNode, Value: def}, joinPath(path, key), fv)
		} else if f.Type.Kind() == reflect.Struct && f.Type != nodeType {
			d.structure(&yaml.Node{Kind: yaml.MappingNode}, joinPath(path, key), fv)
		}
	}
}

func (d nodeDecoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.sink.addf(path, "expected a mapping, got %s", kindName(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(v.Type(), len(n.Content)/2))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fpath := joinPath(path, k.Value)
		d.sink.lines[fpath] = k.Line
		key := reflect.ValueOf(k.Value)
		if v.MapIndex(key).IsValid() {
			d.sink.addf(fpath, "key %q appears twice in this mapping", k.Value)
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(val, fpath, elem)
		v.SetMapIndex(key, elem)
	}
}

func (d nodeDecoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.sink.addf(path, "expected a list, got %s", kindName(n))
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

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func keysOf(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
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
