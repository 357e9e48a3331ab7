package filters

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bytedance/sonic/encoder"
	"github.com/valyala/fasthttp"
)

// The json filter's shaping (validation, target/allow/deny/rename/wrap, browser-safe escaping: all
// of it but the final copy into the response) against the obvious encoding/json way of doing the
// same edit: decode into map[string]any / []any, edit, encode.
//
// Bodies: a user record with its recent orders (an object), and a list of user records (an array),
// at about 1 KB and 100 KB. Settings: an allow list reaching into a nested object plus two renames.

var jsonBenchCfg = JSONConfig{
	Allow:        []string{"id", "name", "email", "profile.name", "profile.city", "orders"},
	Rename:       map[string]string{"email": "contact", "profile.name": "profile.full_name"},
	MaxBodyBytes: 1 << 20,
}

func jsonBenchUser(i int) string {
	return fmt.Sprintf(`{"id":%d,"name":"User %d","email":"user%d@example.com","password":"5f4dcc3b5aa765d61d8327deb882cf99",`+
		`"active":true,"score":%d.5,"tags":["admin","beta","eu"],`+
		`"profile":{"name":"Full Name %d","city":"Lisbon","ssn":"123-45-%04d","bio":"Likes <b>bold</b> & \"quotes\" \u00e9"},`+
		`"created_at":"2024-01-02T03:04:05Z"`, i, i, i, i%100, i, i%10000)
}

func jsonBenchOrder(i int) string {
	return fmt.Sprintf(`{"order_id":"ord-%06d","total":%d.%02d,"currency":"EUR","items":[{"sku":"sku-%d","qty":%d}],"status":"shipped"}`,
		i, i%500, i%100, i%97, 1+i%3)
}

// jsonBenchObject is one user with as many orders as it takes to reach size bytes.
func jsonBenchObject(size int) []byte {
	var b strings.Builder
	b.WriteString(jsonBenchUser(1))
	b.WriteString(`,"orders":[`)
	for i := 0; b.Len() < size-2; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonBenchOrder(i))
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// jsonBenchArray is a list of users (without orders) reaching size bytes.
func jsonBenchArray(size int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; b.Len() < size-1; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonBenchUser(i))
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// stdShape is jsonBenchCfg done with encoding/json.
func stdShape(body []byte) ([]byte, error) {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, err
	}
	switch d := doc.(type) {
	case map[string]any:
		doc = stdShapeObject(d)
	case []any:
		for i, e := range d {
			if m, ok := e.(map[string]any); ok {
				d[i] = stdShapeObject(m)
			}
		}
	}
	return json.Marshal(doc)
}

func stdShapeObject(m map[string]any) map[string]any {
	out := make(map[string]any, 5)
	for _, k := range []string{"id", "name", "email", "orders"} {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	if p, ok := m["profile"].(map[string]any); ok {
		np := make(map[string]any, 2)
		for _, k := range []string{"name", "city"} {
			if v, ok := p[k]; ok {
				np[k] = v
			}
		}
		if v, ok := np["name"]; ok {
			delete(np, "name")
			np["full_name"] = v
		}
		out["profile"] = np
	}
	if v, ok := out["email"]; ok {
		delete(out, "email")
		out["contact"] = v
	}
	return out
}

func BenchmarkJSONShape(b *testing.B) {
	j := mustJSON(b, jsonBenchCfg)
	for _, body := range []struct {
		name string
		data []byte
	}{
		{"object_1KB", jsonBenchObject(1 << 10)},
		{"array_1KB", jsonBenchArray(1 << 10)},
		{"object_100KB", jsonBenchObject(100 << 10)},
		{"array_100KB", jsonBenchArray(100 << 10)},
	} {
		// Both ways must do the same edit.
		bufs := &jsonBufs{}
		got, r := j.transform(body.data, bufs)
		want, err := stdShape(body.data)
		if r != shapedOK || err != nil {
			b.Fatalf("%s: filter %d, encoding/json %v", body.name, r, err)
		}
		var g, w any
		if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil || !jsonEqual(g, w) {
			b.Fatalf("%s: the filter and encoding/json disagree:\n%.300s\n%.300s", body.name, got, want)
		}

		b.Run(body.name+"/filter", func(b *testing.B) {
			bufs := &jsonBufs{}
			b.SetBytes(int64(len(body.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, r := j.transform(body.data, bufs); r != shapedOK {
					b.Fatal(r)
				}
			}
		})
		b.Run(body.name+"/encoding_json", func(b *testing.B) {
			b.SetBytes(int64(len(body.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := stdShape(body.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJSONServe is the whole step on a 1 KB object: headers checked, body shaped and copied
// into the response (the upstream's SetBody of the input is included).
func BenchmarkJSONServe(b *testing.B) {
	j := mustJSON(b, jsonBenchCfg)
	body := string(jsonBenchObject(1 << 10))
	h := j.Wrap(jsonUpstream{status: 200, ctype: "application/json", body: body})
	ctx := new(fasthttp.RequestCtx)
	x := AcquireExchange(ctx)
	defer ReleaseExchange(x)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h.Serve(x)
	}
	if j.Shaped() == 0 {
		b.Fatal("nothing shaped")
	}
}

// BenchmarkJSONValidate splits the validation of the 100 KB object: sonic checks the structure,
// validStrings what sonic does not check inside strings; encoding/json.Valid for scale.
func BenchmarkJSONValidate(b *testing.B) {
	data := jsonBenchObject(100 << 10)
	b.Run("sonic_structure", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			encoder.Valid(data)
		}
	})
	b.Run("strings", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			validStrings(data)
		}
	})
	b.Run("encoding_json_valid", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			json.Valid(data)
		}
	})
}
