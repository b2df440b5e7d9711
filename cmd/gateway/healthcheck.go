package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// runHealthcheck is -healthcheck URL: one GET, exit 0 on a 2xx answer. An
// https URL is not checked against a CA (the check runs next to the
// gateway, often on 127.0.0.1, which its certificate does not name).
func runHealthcheck(target string, stdout, stderr io.Writer) int {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "gateway: -healthcheck %q: want http(s)://HOST:PORT/PATH\n", target)
		return 2
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // see above
	client := &http.Client{Timeout: 5 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(u.String())
	if err != nil {
		fmt.Fprintf(stderr, "gateway: healthcheck: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		fmt.Fprintf(stderr, "gateway: healthcheck: %s answered %s\n", u.Redacted(), res.Status)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %s\n", res.Status)
	return 0
}
