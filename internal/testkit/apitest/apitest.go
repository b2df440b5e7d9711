// Package apitest sends HTTP requests to a gateway under test and reads the
// answers (status, headers, body, the JSON error message), for the tests of
// the signaling and of the whole gateway.
package apitest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Result is an answer.
type Result struct {
	Status int
	Header http.Header
	Body   string
	Error  string // the "error" of a JSON error body, if any
}

// Do sends method url with body of content type ctype ("" = none) and the
// headers hdr, with client (nil: http.DefaultClient). Transport errors fail t.
func Do(t testing.TB, client *http.Client, method, url, ctype, body string, hdr map[string]string) Result {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := Result{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil {
		r.Error = e.Error
	}
	return r
}
