package pattern

import (
	"fmt"
	"testing"
)

func TestParams_ReadsEachKindOfParameterFromAMatchedPath(t *testing.T) {
	for _, tc := range []struct {
		pattern, path, want string
	}{
		{"/static", "/static", "[]"},
		{"/", "/", "[]"},
		{"/users/{id}", "/users/42", "[id=42]"},
		{"/users/{id}/posts/{post}", "/users/42/posts/7", "[id=42 post=7]"},
		{"/files/{name}.json", "/files/report.json", "[name=report]"},
		{"/v{version:[0-9]+}/x", "/v2/x", "[version=2]"},
		{"/n/{n:[0-9]{3}}", "/n/123", "[n=123]"},
		{"/a/{id?}", "/a/9", "[id=9]"},
		{"/a/{id?}", "/a", "[id=]"},
		{"/static/{rest:*}", "/static/css/site.css", "[rest=css/site.css]"},
		{"/static/{rest:*}", "/static/", "[rest=]"},
		{"/dir/", "/dir/", "[]"},
	} {
		t.Run(tc.pattern+" "+tc.path, func(t *testing.T) {
			p, err := Parse(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, prm := range p.Params([]byte(tc.path), nil) {
				got = append(got, prm.Name+"="+string(prm.Value))
			}
			if s := fmt.Sprint(got); s != tc.want && !(tc.want == "[]" && got == nil) {
				t.Errorf("Params = %s, want %s", s, tc.want)
			}
		})
	}
}

func TestParse_RejectsPatternsTheRouterWouldMisread(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"api", `path pattern "api" must start with /`},
		{"/a//b", `path pattern "/a//b" has an empty, . or .. segment; requests are matched after normalization, so it could never match`},
		{"/a/{id", `path pattern "/a/{id" has a { without a matching }`},
		{"/a}", `path pattern "/a}" has a } without a matching {`},
		{"/a/{x}-{y}", `path pattern "/a/{x}-{y}": a segment may hold only one parameter`},
		{"/a/{id?}/b", `path pattern "/a/{id?}/b": optional parameter {id?} must be a whole last segment`},
		{"/{rest:*}/x", `path pattern "/{rest:*}/x": catch-all {rest:*} must be a whole last segment`},
		{"/a/{}", `path pattern "/a/{}": parameter name "" must be letters, digits and _, not starting with a digit`},
		{"/a/{id}/{id}", `path pattern "/a/{id}/{id}" uses parameter {id} twice`},
		{"/a/{id:}", `path pattern "/a/{id:}": parameter {id:} has an empty regular expression`},
	} {
		if _, err := Parse(tc.pattern); err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q) = %v, want %s", tc.pattern, err, tc.want)
		}
	}
}

func TestParams_DoesNotAllocate(t *testing.T) {
	p, _ := Parse("/users/{id}/files/{rest:*}")
	path := []byte("/users/42/files/a/b.txt")
	dst := make([]Param, 0, 4)
	if n := testing.AllocsPerRun(100, func() { dst = p.Params(path, dst[:0]) }); n != 0 {
		t.Fatalf("Params allocates %.1f times", n)
	}
}
