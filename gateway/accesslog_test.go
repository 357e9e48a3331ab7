package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestAccessLog_OneJSONLinePerRequestWithItsFields(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("12345") })
	snap, err := Compile("test.yaml", []byte(oneRouteConfig("", backend)))
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	gw, _ := serveSnapshotLogged(t, snap, &out)

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + gw + "/a/b?q=1")
	req.Header.SetHost("api.example.com")
	req.UseHostHeader = true
	req.Header.Set("X-Request-Id", "log-me-1")
	send(t, gw, req)
	req.Header.SetMethod("CONNECT") // refused before routing, still logged
	req.Header.Set("X-Request-Id", "log-me-2")
	send(t, gw, req)

	var lines []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if lines = out.lines(); len(lines) == 2 {
			break
		}
	}
	if len(lines) != 2 {
		t.Fatalf("access log has %d lines, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	want := []map[string]any{
		{"request_id": "log-me-1", "client_ip": "127.0.0.1", "method": "GET", "host": "api.example.com",
			"path": "/a/b", "status": 200.0, "bytes": 5.0, "route": "all", "upstream": backend},
		{"request_id": "log-me-2", "client_ip": "127.0.0.1", "method": "CONNECT", "status": 501.0, "route": "", "upstream": ""},
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d is not JSON: %q", i, line)
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v (line %s)", i, k, got[k], v, line)
			}
		}
		for _, k := range []string{"time", "duration_us"} {
			if _, ok := got[k]; !ok {
				t.Errorf("line %d has no %s: %s", i, k, line)
			}
		}
	}
}

func TestAccessLog_OffWritesNothing(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	snap, err := Compile("test.yaml", []byte("log: {access: false}\n"+oneRouteConfig("", backend)))
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	gw, _ := serveSnapshotLogged(t, snap, &out)
	if resp := get(t, gw, "/x"); resp.StatusCode() != 200 {
		t.Fatalf("status %d", resp.StatusCode())
	}
	if l := out.lines(); len(l) != 1 || l[0] != "" {
		t.Fatalf("access log off, but it wrote %q", l)
	}
}

func TestAccessLog_SamplesSuccessesButNeverErrors(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/fail" {
			ctx.SetStatusCode(500)
		}
	})
	snap, err := Compile("test.yaml", []byte("log: {access_sample: 10}\n"+oneRouteConfig("", backend)))
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	gw, _ := serveSnapshotLogged(t, snap, &out)
	for i := 0; i < 100; i++ {
		get(t, gw, "/ok")
	}
	for i := 0; i < 7; i++ {
		get(t, gw, "/fail")
	}
	ok, failed := 0, 0
	for _, line := range out.lines() {
		switch {
		case strings.Contains(line, `"status":200`):
			ok++
		case strings.Contains(line, `"status":500`):
			failed++
			if !strings.Contains(line, `"attempts":1`) || !strings.Contains(line, `"upstream_us":`) {
				t.Errorf("error line lacks attempts or upstream_us: %s", line)
			}
		}
	}
	if ok != 10 || failed != 7 {
		t.Fatalf("logged %d of 100 successes and %d of 7 errors; want 10 and 7", ok, failed)
	}
}
