package configs

import (
	"strings"
	"testing"
)

func TestAdminAndMetrics(t *testing.T) {
	def := Default()
	if def.Admin.Listen != "" || !def.Metrics.PerStream {
		t.Fatalf("defaults: admin.listen %q (want off), metrics.per_stream %v (want true)", def.Admin.Listen, def.Metrics.PerStream)
	}
	c, err := Parse("t.yaml", []byte("admin:\n  listen: 127.0.0.1:9090\nmetrics:\n  per_stream: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Listen != "127.0.0.1:9090" || c.Metrics.PerStream {
		t.Fatalf("parsed %+v %+v", c.Admin, c.Metrics)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"admin:\n  listen: 9090\n", "admin.listen"},
		{"listen: :8080\nadmin:\n  listen: 127.0.0.1:8080\n", "a port of its own"},
		{"metrics:\n  per_stream: maybe\n", "maybe"},
		{"metrics:\n  per_steam: true\n", "per_steam"},
	} {
		_, err := Parse("t.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := Parse("t.yaml", []byte("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n")); err != nil {
		t.Errorf("port 0 on both (tests): %v", err)
	}
}
