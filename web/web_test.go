package web

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesFiles(t *testing.T) {
	h := Handler(Options{TestPages: true})
	tests := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", "<!doctype html>"},
		{"/index.html", "text/html", "index.js"},
		{"/publish.html", "text/html", "publish.js"},
		{"/watch.html", "text/html", "watch.js"},
		{"/player.js", "text/javascript", "export class MSEPlayer"},
		{"/engine.js", "text/javascript", "export class MSEPipeline"},
		{"/publish.js", "text/javascript", "new Publisher("},
		{"/watch.js", "text/javascript", "MSEPlayer"},
		{"/index.js", "text/javascript", "/api/streams"},
		{"/common.js", "text/javascript", "STREAM_NAME_RE"},
		{"/style.css", "text/css", "--bg"},
		{"/mse-player.js", "text/javascript", "customElements.define('mse-player'"},
		{"/mse-worker.js", "text/javascript", "StreamEngine"},
		{"/publisher.js", "text/javascript", "/ws/publish/"},
		{"/embed.html", "text/html", "<mse-player"},
		{"/embed.js", "text/javascript", "snippet"},
		{"/test/clock.js", "text/javascript", "clockReader"},
		{"/test/g2g-publish.html", "text/html", "g2g-publish.js"},
		{"/test/g2g-watch.html", "text/html", "g2g-watch.js"},
		{"/test/g2g-minimal.html", "text/html", "g2g-minimal.js"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tc.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.ctype)
			}
			if res.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("missing Access-Control-Allow-Origin: * (other sites import the player)")
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("missing X-Content-Type-Options: nosniff")
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "frame-ancestors 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			body, _ := io.ReadAll(res.Body)
			if !strings.Contains(string(body), tc.contains) {
				t.Errorf("body does not contain %q", tc.contains)
			}
		})
	}
}

func TestHandlerNotFound(t *testing.T) {
	h := Handler(Options{})
	for _, p := range []string{"/missing.html", "/nope/", "/static/index.html", "/../web.go", "/web.go", "/x.js"} {
		t.Run(p, func(t *testing.T) {
			res := get(t, h, http.MethodGet, p, nil)
			if res.StatusCode != http.StatusNotFound {
				t.Fatalf("status = %d, want 404", res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var body struct {
				Error string `json:"error"`
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Error == "" {
				t.Errorf("body is not a JSON error: %v %+v", err, body)
			}
		})
	}
}

func TestHandlerMethods(t *testing.T) {
	h := Handler(Options{})
	res := get(t, h, http.MethodPost, "/index.html", nil)
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST status = %d, want 405", res.StatusCode)
	}
	if a := res.Header.Get("Allow"); !strings.Contains(a, "GET") {
		t.Errorf("Allow = %q", a)
	}
	res = get(t, h, http.MethodHead, "/player.js", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("HEAD status = %d, want 200", res.StatusCode)
	}
	if body, _ := io.ReadAll(res.Body); len(body) != 0 {
		t.Errorf("HEAD returned a body of %d bytes", len(body))
	}
}

func TestHandlerETag(t *testing.T) {
	h := Handler(Options{})
	res := get(t, h, http.MethodGet, "/player.js", nil)
	tag := res.Header.Get("ETag")
	if tag == "" {
		t.Fatal("no ETag")
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control = %q, want no-cache", cc)
	}
	res = get(t, h, http.MethodGet, "/player.js", map[string]string{"If-None-Match": tag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET status = %d, want 304", res.StatusCode)
	}
}

// The pages run no inline script (the CSP forbids it), the test pages are
// served only when asked for, and frame-ancestors follows the config.
func TestPagesUnderCSP(t *testing.T) {
	err := fs.WalkDir(FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".html") {
			return err
		}
		b, err := fs.ReadFile(FS(), p)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(string(b), -1) {
			if !strings.Contains(m, "src=") {
				t.Errorf("%s: inline script %s (the CSP blocks it)", p, m)
			}
		}
		if regexp.MustCompile(`\son[a-z]+=`).Match(b) {
			t.Errorf("%s: an inline event handler (the CSP blocks it)", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/test/g2g-watch.html", "/test/g2g-minimal.html", "/test/clock.js", "/test/"} {
		if res := get(t, Handler(Options{}), http.MethodGet, p, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s without test_pages: %d, want 404", p, res.StatusCode)
		}
	}
	res := get(t, Handler(Options{FrameAncestors: []string{"https://a.example", "https://b.example"}}), http.MethodGet, "/watch.html", nil)
	if csp := res.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "frame-ancestors https://a.example https://b.example") {
		t.Errorf("CSP with frame_ancestors: %q", csp)
	}
}
