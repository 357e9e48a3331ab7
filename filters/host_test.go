package filters

import "testing"

func TestAppendHostKey(t *testing.T) {
	for in, want := range map[string]string{"API.Example.com": "api.example.com", "api.example.com:8443": "api.example.com",
		"[::1]:8080": "[::1]", "[::1]": "[::1]", "127.0.0.1:80": "127.0.0.1", "": ""} {
		if got := string(AppendHostKey(nil, []byte(in))); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
