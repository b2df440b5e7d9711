package gateway

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// newRedirectServer is the server of the HTTP -> HTTPS redirect listener
// (tls.redirect_http): every request is answered 308 to https on the host
// it named, with its path and query; ACME HTTP-01 challenges are answered
// first when automatic certificates are on.
func (g *Gateway) newRedirectServer() *http.Server {
	var h http.Handler = http.HandlerFunc(g.redirectToHTTPS)
	if g.acme != nil {
		h = g.acme.httpChallenge(h)
	}
	return &http.Server{
		Handler:           g.guard.Middleware(h),
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       headerTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// redirectToHTTPS answers 308 with https://host[:port]/path?query: the
// request's host without its port, and the port of tls.https_port or else
// of the main listener, left out when it is 443.
func (g *Gateway) redirectToHTTPS(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, "/\\@?#% ") {
		http.Error(w, "a request for https needs a Host header", http.StatusBadRequest)
		return
	}
	if port := g.httpsPort(); port != "443" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	w.Header().Set("Connection", "close")
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// httpsPort is the port redirects name: tls.https_port, or the main
// listener's (as bound, once Serve has it; as configured before).
func (g *Gateway) httpsPort() string {
	if p := g.cfg.TLS.HTTPSPort; p > 0 {
		return strconv.Itoa(p)
	}
	addr := g.cfg.Listen
	if a := g.mainAddr.Load(); a != nil {
		addr = *a
	}
	if _, port, err := net.SplitHostPort(addr); err == nil && port != "" && port != "0" {
		return port
	}
	return "443"
}

// ServeRedirect serves the redirect listener (tls.redirect_http) on ln
// until Close. It returns nil after Close.
func (g *Gateway) ServeRedirect(ln net.Listener) error {
	err := g.redirect.Serve(g.guard.Listener(ln))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
