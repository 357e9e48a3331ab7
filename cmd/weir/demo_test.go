package main

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/weir-gateway/weir/gateway"
)

// The repo's config.yaml has an api_key route; the demo's curl line for it must carry a key that
// route's filter accepts, so that a newcomer's first try gets 200, not 401.
func TestDemoHelp_CurlLineForAnAPIKeyRouteCarriesTheDemoKey(t *testing.T) {
	data, err := os.ReadFile("../../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := gateway.Compile("config.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printDemoHelp(&out, snap, gateway.Listeners{HTTP: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}})
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasSuffix(l, "# route reports") {
			line = l
		}
	}
	if !strings.Contains(line, "-H 'X-API-Key: "+demoAPIKey+"' http://127.0.0.1:8080/api/reports/42") {
		t.Fatalf("demo help for the api_key route: %q\nall of it:\n%s", line, out.String())
	}
}
