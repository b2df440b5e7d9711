package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// clusterYAML is a cluster section with the embedded server on and extra
// lines (indented under cluster:) appended.
func clusterYAML(embedded string, cluster ...string) string {
	y := "cluster:\n"
	for _, l := range cluster {
		y += "  " + l + "\n"
	}
	y += "  embedded:\n    enabled: true\n"
	for l := range strings.SplitSeq(strings.TrimSpace(embedded), "\n") {
		y += "    " + l + "\n"
	}
	return y
}

func TestEmbeddedNATSSecurity(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, key, ca := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	missing := filepath.Join(dir, "missing.pem")

	good := []string{
		clusterYAML(""), // 127.0.0.1:4222, no routes
		clusterYAML("listen: localhost:4222\ncluster_listen: 127.0.0.1:6222\nroutes: [nats-route://127.0.0.1:6223]"),
		clusterYAML("listen: \"[::1]:4222\""),
		clusterYAML("listen: 0.0.0.0:4222", `user: gw`, `password: s3cret`),
		clusterYAML("listen: 0.0.0.0:4222", `token: t0ken`),
		clusterYAML("cluster_listen: 0.0.0.0:6222\nroutes: [nats-route://gw-b:6222]\nroute_user: r\nroute_password: rp"),
		clusterYAML("cluster_listen: 0.0.0.0:6222\nroutes: [nats-route://gw-b:6222]\ninsecure_routes: true"),
		clusterYAML("cluster_listen: 0.0.0.0:6222\nroutes: [\"nats-route://r:rp@gw-b:6222\"]\nroute_user: r\nroute_password: rp"),
		clusterYAML("tls_cert: " + cert + "\ntls_key: " + key + "\ntls_ca: " + ca),
	}
	for _, y := range good {
		if _, err := Parse("good.yaml", []byte(y)); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}

	checkErrors(t, []badConfig{
		// An open client port.
		{clusterYAML("listen: 0.0.0.0:4222"), "cluster.embedded.listen"},
		{clusterYAML("listen: 0.0.0.0:4222"), "cluster.user/cluster.password nor cluster.token"},
		{clusterYAML("listen: \":4222\""), "cluster.embedded.listen"},
		{clusterYAML("listen: gw-a:4222"), "not a loopback address"},
		{clusterYAML("", `user: gw`), "cluster.password"},
		{clusterYAML("", `user: gw`, `password: p`, `token: t`), "cluster.user and cluster.token"},
		// An open route port.
		{clusterYAML("cluster_listen: 0.0.0.0:6222\nroutes: [nats-route://gw-b:6222]"), "cluster.embedded.cluster_listen"},
		{clusterYAML("cluster_listen: 0.0.0.0:6222\nroutes: [nats-route://gw-b:6222]"), "route_user/route_password"},
		{clusterYAML("cluster_listen: 0.0.0.0:6222\nroutes: [nats-route://gw-b:6222]"), "insecure_routes"},
		{clusterYAML("cluster_listen: 127.0.0.1:6222"), "cluster.embedded.routes is empty"},
		{clusterYAML("listen: 0.0.0.0:4222\nroutes: [nats-route://gw-b:6222]", `token: t`), "cluster.embedded.routes without cluster_listen"},
		{clusterYAML("route_user: r"), "route_user and cluster.embedded.route_password"},
		{clusterYAML("route_password: rp"), "route_user and cluster.embedded.route_password"},
		// TLS.
		{clusterYAML("tls_cert: " + cert + "\ntls_ca: " + ca), "cluster.embedded.tls_cert and cluster.embedded.tls_key"},
		{clusterYAML("tls_key: " + key), "cluster.embedded.tls_cert and cluster.embedded.tls_key"},
		{clusterYAML("tls_cert: " + cert + "\ntls_key: " + key), "cluster.embedded.tls_ca"},
		{clusterYAML("tls_ca: " + ca), "cluster.embedded.tls_ca"},
		{clusterYAML("tls_cert: " + missing + "\ntls_key: " + key + "\ntls_ca: " + ca), "cluster.embedded.tls_cert: stat"},
		{clusterYAML("tls_cert: " + cert + "\ntls_key: " + missing + "\ntls_ca: " + ca), "cluster.embedded.tls_key: stat"},
		{clusterYAML("tls_cert: " + cert + "\ntls_key: " + key + "\ntls_ca: " + missing), "cluster.embedded.tls_ca: stat"},
	})

	// Off, the embedded section is not checked.
	if _, err := Parse("off.yaml", []byte("cluster:\n  embedded:\n    listen: 0.0.0.0:4222\n")); err != nil {
		t.Errorf("embedded off: %v", err)
	}
}

// A route URL's password never shows in an error.
func TestRouteURLRedacted(t *testing.T) {
	_, err := Parse("bad.yaml", []byte(clusterYAML("routes: [\"nats://r:hunter2@gw-b:6222\"]")))
	if err == nil || !strings.Contains(err.Error(), "cluster.embedded.routes[0]") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want cluster.embedded.routes[0], without the password", err)
	}
	_, err = Parse("bad.yaml", []byte("cluster:\n  nats_urls: [\"http://u:hunter2@nats:4222\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "cluster.nats_urls[0]") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v: want cluster.nats_urls[0], without the password", err)
	}
	for in, want := range map[string]string{
		"nats-route://r:hunter2@gw-b:6222": "nats-route://redacted@gw-b:6222",
		"nats-route://gw-b:6222":           "nats-route://gw-b:6222",
		"nats-route://r@gw-b:6222":         "nats-route://redacted@gw-b:6222",
		"%zz://a:hunter2@b":                "<redacted>",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for h, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "localhost": true, "LOCALHOST": true, "::ffff:127.0.0.1": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "gw-a": false, "localhost.example": false,
	} {
		if got := IsLoopback(h); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestClusterRelayLimits(t *testing.T) {
	relay := func(line string) string { return "cluster:\n  relay:\n    " + line + "\n" }
	for _, y := range []string{relay("interest_period: 500ms"), relay("queue_messages: 16"), relay("gop_bytes: 1048576")} {
		if _, err := Parse("good.yaml", []byte(y)); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}
	checkErrors(t, []badConfig{
		{relay("interest_period: 10ms"), "cluster.relay.interest_period"},
		{relay("interest_period: 1h"), "cluster.relay.interest_period"},
		{relay("snapshot_timeout: 0s"), "cluster.relay.snapshot_timeout"},
		{relay("gop_bytes: 1000"), "cluster.relay.gop_bytes"},
		{relay("queue_bytes: 99999999999"), "cluster.relay.queue_bytes"},
		{relay("queue_messages: 0"), "cluster.relay.queue_messages"},
		{relay("pending_bytes: -1"), "cluster.relay.pending_bytes"},
		{relay("bogus: 1"), "bogus"},
	})
}
