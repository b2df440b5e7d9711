// Package web holds the gateway's browser UI: the stream list, the WHIP publish
// page and the MSE watch page with its player. The files live in static/ and are
// embedded into the binary, so serving them needs no build step and no files on disk.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/mseway/mseway/httpapi"
)

//go:embed static
var static embed.FS

// FS returns the static files, rooted at the static folder (index.html at the top).
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // cannot happen: "static" is embedded above
	}
	return sub
}

// contentTypes pins the types the pages depend on. Browsers refuse module scripts
// served with a non-JavaScript type, and the host's mime.types must not change that.
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".txt":         "text/plain; charset=utf-8",
	".webmanifest": "application/manifest+json",
}

type handler struct {
	files fs.FS
	opts  Options
	csp   string
	once  sync.Once
	etags map[string]string
}

// Options adjusts what the UI serves.
type Options struct {
	// FrameAncestors are the origins that may frame the pages (CSP
	// frame-ancestors); empty = 'self'.
	FrameAncestors []string
	// TestPages serves the measuring pages under /test/ (the test suite's);
	// without it they are 404.
	TestPages bool
}

// contentSecurityPolicy is the pages' CSP: scripts and workers from the
// gateway only (tokens travel in page URLs, so no script of anyone else's
// may run beside them); media from MSE (blob:) and the camera; WebSockets
// and WHIP to any gateway (a cluster's goaway names another node); inline
// styles (the player's shadow DOM has them).
func contentSecurityPolicy(frameAncestors []string) string {
	fa := "'self'"
	if len(frameAncestors) > 0 {
		fa = strings.Join(frameAncestors, " ")
	}
	return "default-src 'self'; script-src 'self'; worker-src 'self' blob:; connect-src 'self' ws: wss: http: https:; " +
		"media-src 'self' blob: mediastream:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " +
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors " + fa
}

// Handler serves the embedded UI: "/" is index.html, every other path is the file of
// that name under static/. Only GET and HEAD are allowed. Missing files get 404 with a
// JSON {"error": ...} body like every other gateway endpoint. Responses carry a strong
// ETag (content hash) and Cache-Control: no-cache, so browsers revalidate cheaply and
// never run a stale player after an upgrade.
func Handler(opts Options) http.Handler {
	return &handler{files: FS(), opts: opts, csp: contentSecurityPolicy(opts.FrameAncestors)}
}

func (h *handler) etag(name string) string {
	h.once.Do(func() {
		h.etags = map[string]string{}
		_ = fs.WalkDir(h.files, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, err := fs.ReadFile(h.files, p)
			if err != nil {
				return nil
			}
			sum := sha256.Sum256(b)
			h.etags[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
			return nil
		})
	})
	return h.etags[name]
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpapi.WriteError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	if !fs.ValidPath(name) || (!h.opts.TestPages && (name == "test" || strings.HasPrefix(name, "test/"))) {
		httpapi.WriteError(w, http.StatusNotFound, "not found")
		return
	}
	st, err := fs.Stat(h.files, name)
	if err == nil && st.IsDir() {
		name = path.Join(name, "index.html")
		st, err = fs.Stat(h.files, name)
	}
	if err != nil || st.IsDir() {
		httpapi.WriteError(w, http.StatusNotFound, "not found")
		return
	}
	f, err := h.files.Open(name)
	if err != nil {
		httpapi.WriteError(w, http.StatusNotFound, "not found")
		return
	}
	defer f.Close()
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		httpapi.WriteError(w, http.StatusInternalServerError, "file not seekable")
		return
	}
	ext := strings.ToLower(path.Ext(name))
	ct := contentTypes[ext]
	if ct == "" {
		ct = mime.TypeByExtension(ext)
	}
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if tag := h.etag(name); tag != "" {
		w.Header().Set("ETag", tag)
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", h.csp)
	// The files are public and carry no credentials: let other sites import the
	// player (<script type="module" src=".../mse-player.js">), which needs CORS for
	// module scripts and for the worker they start.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	http.ServeContent(w, r, name, time.Time{}, rs)
}
