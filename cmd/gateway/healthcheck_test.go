package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = w.Write([]byte(`{"status":"ok"}`))
			return
		}
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer ok.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	for _, tc := range []struct {
		url  string
		code int
		says string
	}{
		{ok.URL + "/healthz", 0, "ok: 200"},
		{tlsSrv.URL + "/", 0, "ok: 200"}, // a certificate that names no host here is fine
		{ok.URL + "/readyz", 1, "503"},
		{"http://127.0.0.1:1/healthz", 1, "healthcheck"},
		{"ftp://x/", 2, "want http(s)"},
	} {
		var out, errOut bytes.Buffer
		code := run([]string{"-healthcheck", tc.url}, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.says) {
			t.Errorf("-healthcheck %s: exit %d, %q %q; want %d and %q", tc.url, code, out.String(), errOut.String(), tc.code, tc.says)
		}
	}
}
