package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	brrr "github.com/molecule-man/go-brrr"
	"github.com/valyala/fasthttp"
)

func decode(t *testing.T, encoding string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	var err error
	switch encoding {
	case "gzip":
		r, err = gzip.NewReader(bytes.NewReader(body))
	case "br":
		r = brrr.NewReader(bytes.NewReader(body))
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(body))
		r = d
	default:
		return body
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", encoding, err)
	}
	return out
}

func TestCompress_BufferedBodiesRoundTripInEachEncoding(t *testing.T) {
	doc := []byte(`{"items": [` + strings.Repeat(`{"id": 12345, "name": "a product name", "tags": ["x", "y"]},`, 60) + `{}]}`)
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/small":
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"ok": true}`)
		case "/png":
			ctx.SetContentType("image/png")
			ctx.SetBody(doc)
		case "/encoded":
			ctx.SetContentType("application/json")
			ctx.Response.Header.Set("Content-Encoding", "gzip")
			ctx.SetBody(doc) // not really gzip: weir must not touch it
		default:
			ctx.SetContentType("application/json")
			ctx.Response.Header.Set("ETag", `"v1"`)
			ctx.Response.Header.Set("Vary", "Origin")
			ctx.SetBody(doc)
		}
	})
	gw, _ := startGateway(t, filterConfig(b, "      - compress: {}\n"))
	for accept, want := range map[string]string{"gzip": "gzip", "gzip, br": "br", "br, zstd": "zstd", "identity;q=0": "", "": ""} {
		resp := request(t, gw, "GET", "/doc", "Accept-Encoding", accept)
		got := string(resp.Header.Peek("Content-Encoding"))
		if got != want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", accept, got, want)
		}
		if body := decode(t, got, resp.Body()); !bytes.Equal(body, doc) {
			t.Errorf("Accept-Encoding %q: the decoded body differs from the upstream's (%d vs %d bytes)", accept, len(body), len(doc))
		}
		if want != "" && (len(resp.Body()) >= len(doc)/3 || string(resp.Header.Peek("ETag")) != `W/"v1"`) {
			t.Errorf("%s: %d bytes of %d, ETag %q", want, len(resp.Body()), len(doc), resp.Header.Peek("ETag"))
		}
		if v := string(resp.Header.Peek("Vary")); v != "Origin, Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Vary %q", accept, v)
		}
	}
	for _, path := range []string{"/small", "/png", "/encoded"} {
		resp := request(t, gw, "GET", path, "Accept-Encoding", "gzip, br")
		if enc := string(resp.Header.Peek("Content-Encoding")); (path == "/encoded") != (enc == "gzip") || (path != "/encoded" && enc != "") {
			t.Errorf("%s: Content-Encoding %q", path, enc)
		}
		if path == "/encoded" && !bytes.Equal(resp.Body(), doc) {
			t.Errorf("an encoded body was changed")
		}
	}
	resp := request(t, gw, "HEAD", "/doc", "Accept-Encoding", "gzip")
	if enc := resp.Header.Peek("Content-Encoding"); len(enc) != 0 {
		t.Errorf("HEAD: Content-Encoding %q", enc)
	}
}

// A streamed body is compressed as it goes: each upstream write reaches the client, decodable,
// before the next is sent. An event stream is never compressed.
func TestCompress_StreamsLeaveCompressedPieceByPieceAndEventStreamsUntouched(t *testing.T) {
	next := make(chan struct{})
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: "+strings.Repeat("e", 2000)+"\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		// Past buffer_responses, so the body streams.
		fmt.Fprintf(w, "{\"pad\": %q}\n", strings.Repeat("p", 1100<<10))
		w.(http.Flusher).Flush()
		for i := range 3 {
			fmt.Fprintf(w, "{\"line\": %d}\n", i)
			w.(http.Flusher).Flush()
			<-next // the client has decoded this line
		}
	}))
	gw, _ := startGateway(t, oneRouteConfig("", b)+"    filters:\n      - compress: {}\n")
	req, _ := http.NewRequest("GET", "http://"+gw+"/lines", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := noKeepAlive().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.ContentLength != -1 {
		t.Fatalf("Content-Encoding %q, length %d; want gzip, chunked", resp.Header.Get("Content-Encoding"), resp.ContentLength)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(zr)
	if pad, err := lines.ReadString('\n'); err != nil || len(pad) < 1100<<10 {
		t.Fatalf("first line: %d bytes, %v", len(pad), err)
	}
	for i := range 3 {
		line, err := lines.ReadString('\n')
		if err != nil || line != fmt.Sprintf("{\"line\": %d}\n", i) {
			t.Fatalf("line %d: %q, %v", i, line, err)
		}
		next <- struct{}{}
	}

	req, _ = http.NewRequest("GET", "http://"+gw+"/events", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	ev, err := noKeepAlive().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Body.Close()
	body, _ := io.ReadAll(ev.Body)
	if ev.Header.Get("Content-Encoding") != "" || !strings.HasPrefix(string(body), "data: eee") {
		t.Errorf("event stream: Content-Encoding %q, body %.20q", ev.Header.Get("Content-Encoding"), body)
	}
}

func TestCompile_CompressProblems(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "unknown and repeated encodings, a bad type, levels out of range",
		yaml: filterConfig("127.0.0.1:9", "      - compress: {encodings: [gzip, deflate, gzip], types: [json], gzip_level: 0, zstd_level: 5}\n"),
		want: []string{
			`test.yaml:9: routes[0].filters[0].compress.gzip_level: must be from 1 (fastest) to 9 (smallest)`,
			`test.yaml:9: routes[0].filters[0].compress.zstd_level: must be from 1 (fastest) to 4 (smallest)`,
			`test.yaml:9: routes[0].filters[0].compress.encodings[1]: unknown encoding "deflate"; use zstd, br or gzip`,
			`test.yaml:9: routes[0].filters[0].compress.encodings[2]: gzip is listed twice`,
			`test.yaml:9: routes[0].filters[0].compress.types[0]: "json" is not a content type (like application/json) or a family (like text/*)`,
		},
	}})
}
