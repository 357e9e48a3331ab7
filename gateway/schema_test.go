package gateway

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// schemaDocs reads the doc comments of every config struct field, keyed "package.Type.Field", from
// the packages whose structs the config is made of.
func schemaDocs(t *testing.T) map[string]string {
	t.Helper()
	docs := map[string]string{}
	for _, dir := range []string{".", "../filters", "../filters/basicauth", "../filters/jwt", "../filters/mirror", "../filters/compress"} {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for name, pkg := range pkgs {
			for _, file := range pkg.Files {
				ast.Inspect(file, func(n ast.Node) bool {
					ts, ok := n.(*ast.TypeSpec)
					if !ok {
						return true
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						return false
					}
					for _, f := range st.Fields.List {
						text := f.Doc.Text()
						if text == "" {
							text = f.Comment.Text()
						}
						for _, id := range f.Names {
							if text != "" {
								docs[name+"."+ts.Name.Name+"."+id.Name] = strings.Join(strings.Fields(text), " ")
							}
						}
					}
					return false
				})
			}
		}
	}
	return docs
}

// The committed schema is what the config structs and their comments give now. To regenerate it:
// WEIR_UPDATE_SCHEMA=1 go test -run TestSchema_CommittedFileIsCurrent ./gateway/
func TestSchema_CommittedFileIsCurrent(t *testing.T) {
	got := MarshalSchema(BuildSchema(schemaDocs(t)))
	if os.Getenv("WEIR_UPDATE_SCHEMA") == "1" {
		if err := os.WriteFile("config.schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, SchemaJSON) {
		t.Fatal("gateway/config.schema.json is stale: regenerate it with WEIR_UPDATE_SCHEMA=1 go test -run TestSchema_CommittedFileIsCurrent ./gateway/")
	}
}

func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("config.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("config.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlInstance reads YAML the way a schema validator sees it: as JSON.
func yamlInstance(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// Every config in the repo validates against the schema, and configs weir rejects for a key or a
// type do not.
func TestSchema_ConfigsInTheRepoValidate(t *testing.T) {
	s := compiledSchema(t)
	files, _ := filepath.Glob("../bench/configs/*.yaml")
	files = append(files, "../config.yaml")
	configs := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configs[f] = data
	}
	k8s, err := os.ReadFile("../deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(k8s, []byte("\n---\n")) {
		var m struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if yaml.Unmarshal(doc, &m) == nil && m.Kind == "ConfigMap" {
			configs["deploy/kubernetes.yaml ConfigMap"] = []byte(m.Data["config.yaml"])
		}
	}
	if len(configs) < 5 {
		t.Fatalf("found only %d configs", len(configs))
	}
	for name, data := range configs {
		if err := s.Validate(yamlInstance(t, data)); err != nil {
			t.Errorf("%s does not validate against the schema: %v", name, err)
		}
	}
	for _, bad := range []string{
		"server: {listen: \":8080\", lisen: \":9\"}\n",
		"server: {read_timeout: 5}\n",
		"server: {max_body_bytes: 4 megs}\n",
		"routes: [{name: r, match: {path: /}, upstream: u, filters: [{rate_limt: {rate: 1}}]}]\n",
		"routes: [{name: r, match: {path: /}, upstream: u, filters: [{rate_limit: {rate: fast}}]}]\n",
	} {
		if s.Validate(yamlInstance(t, []byte(bad))) == nil {
			t.Errorf("the schema accepts %q", bad)
		}
		if _, err := Compile("test.yaml", []byte(bad)); err == nil {
			t.Errorf("weir accepts %q", bad)
		}
	}
}
