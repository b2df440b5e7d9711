package httpapi

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckToken(t *testing.T) {
	for _, c := range []struct {
		got, want string
		status    int // 0: allowed
	}{
		{"", "", 0},
		{"anything", "", 0},
		{"", "secret", http.StatusUnauthorized},
		{"secreT", "secret", http.StatusForbidden},
		{"secret-longer", "secret", http.StatusForbidden},
		{"secret", "secret", 0},
	} {
		err := CheckToken(c.got, c.want, "view")
		he, ok := errors.AsType[*Error](err)
		switch {
		case c.status == 0 && err != nil:
			t.Errorf("%q vs %q: %v, want allowed", c.got, c.want, err)
		case c.status != 0 && (!ok || he.Status != c.status):
			t.Errorf("%q vs %q: %v, want status %d", c.got, c.want, err, c.status)
		case ok && strings.Contains(he.Msg, c.want):
			t.Errorf("the message gives the token away: %q", he.Msg)
		}
	}
}

func TestToken(t *testing.T) {
	r := httptest.NewRequest("GET", "/ws/watch/x?token=q", nil)
	if got := Token(r); got != "q" {
		t.Errorf("query token %q", got)
	}
	r.Header.Set("Authorization", "bearer  h ")
	if got := Token(r); got != "h" {
		t.Errorf("bearer token %q (it wins over the query)", got)
	}
	r.Header.Set("Authorization", "Basic abc")
	if got := Token(r); got != "q" {
		t.Errorf("with Basic auth: %q, want the query's", got)
	}
}

func TestFailAndStreamName(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		msg    string
	}{
		{StreamName("bad name"), 400, "invalid stream name: 1-64 characters of [A-Za-z0-9._-], not . or .."},
		{StreamName(".."), 400, "invalid stream name: 1-64 characters of [A-Za-z0-9._-], not . or .."},
		{Errorf(409, "busy"), 409, "busy"},
		{errors.New("secret detail of a bug"), 500, "internal error"},
	} {
		w := httptest.NewRecorder()
		Fail(w, c.err)
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != c.status || body["error"] != c.msg ||
			w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: %d %q %v", c.err, w.Code, w.Body.String(), err)
		}
	}
	if StreamName("cam-1.main_2") != nil || StreamName(strings.Repeat("x", 65)) == nil || StreamName("") == nil {
		t.Error("stream name rules")
	}
}

// A value JSON cannot hold is a 500 with a JSON error, not a 200 with an
// empty body.
func TestWriteJSONUnencodable(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, 200, map[string]float64{"latency": math.Inf(1)})
	var body map[string]string
	if w.Code != 500 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] == "" {
		t.Fatalf("%d %q", w.Code, w.Body.String())
	}
}

func TestAddressGroup(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7": "192.0.2.7", "::ffff:192.0.2.7": "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::", "2001:db8:1:2::": "2001:db8:1:2::", "nonsense": "nonsense",
	} {
		if got := AddressGroup(in); got != want {
			t.Errorf("AddressGroup(%q) = %q, want %q", in, got, want)
		}
	}
}
