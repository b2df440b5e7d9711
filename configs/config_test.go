package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if c.Listen != ":8080" || c.WebRTC.UDPPort != 8189 || !c.StreamDefaults.GOPCache {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.StreamDefaults.KeyframeInterval != 3*time.Second {
		t.Fatalf("keyframe_interval = %v", c.StreamDefaults.KeyframeInterval)
	}
}

func TestOverridesKeepDefaults(t *testing.T) {
	c, err := Parse("x.yaml", []byte(`
listen: "127.0.0.1:9000"
streams:
  lobby:
    allow_takeover: false
auth:
  publish_token: s3cret
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9000" || c.Limits.MaxStreams != 100 || c.Auth.PublishToken != "s3cret" {
		t.Fatalf("got %+v", c)
	}
	lobby := c.StreamSettings("lobby")
	if lobby.AllowTakeover || !lobby.GOPCache || lobby.ViewerQueueMessages != 300 {
		t.Fatalf("lobby settings: %+v", lobby)
	}
	if !c.StreamSettings("other").AllowTakeover {
		t.Fatal("other stream should use defaults")
	}
}

func TestErrorsNameFileAndKey(t *testing.T) {
	cases := []badConfig{
		{"lisen: x", "field lisen not found"},
		{"webrtc:\n  udp_port: 70000", "webrtc.udp_port"},
		{"webrtc:\n  udp_port: abc", "cannot unmarshal"},
		{"listen: nonsense", "listen"},
		{"log_level: loud", "log_level"},
		{"log_format: xml", `log_format: "xml" is not text or json`},
		{"log_format: JSON", "log_format"},
		{"webrtc:\n  nat_1to1_ips: [not-an-ip]", "webrtc.nat_1to1_ips[0]"},
		{"webrtc:\n  ice_servers: [{urls: [http://x]}]", "webrtc.ice_servers[0].urls[0]"},
		{"limits:\n  max_streams: 0", "limits.max_streams"},
		{"streams:\n  bad/name: {}", "streams.bad/name"},
		{"streams:\n  ok:\n    gop_cach: true", "streams.ok"},
		{"streams:\n  ok:\n    viewer_queue_messages: 1", "streams.ok.viewer_queue_messages"},
		{"stream_defaults:\n  keyframe_interval: fast", "cannot unmarshal"},
		{"tls_cert: a.pem", "tls_cert and tls_key"},
	}
	checkErrors(t, cases)
}

// badConfig is a config file and what its error must name.
type badConfig struct{ yaml, want string }

// checkErrors parses each bad config and checks that the error names the
// file and the key.
func checkErrors(t *testing.T, cases []badConfig) {
	t.Helper()
	for _, tc := range cases {
		_, err := Parse("bad.yaml", []byte(tc.yaml))
		if err == nil {
			t.Errorf("%q: no error", tc.yaml)
			continue
		}
		if !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q should name the file and %q", tc.yaml, err, tc.want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("listen: \":9999\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.Listen != ":9999" {
		t.Fatalf("Load: %v %+v", err, c)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestValidStreamName(t *testing.T) {
	for _, n := range []string{"demo", "a", "A.b_c-9", strings.Repeat("x", 64), "...", ".a", "a.."} {
		if !ValidStreamName(n) {
			t.Errorf("%q should be valid", n)
		}
	}
	for _, n := range []string{"", "a b", "a/b", "ü", strings.Repeat("x", 65), ".", ".."} {
		if ValidStreamName(n) {
			t.Errorf("%q should be invalid", n)
		}
	}
}

func TestMaxViewersPerIP(t *testing.T) {
	if c := Default(); c.Limits.MaxViewersPerIP != 1000 {
		t.Fatalf("default max_viewers_per_ip %d", c.Limits.MaxViewersPerIP)
	}
	c, err := Parse("c.yaml", []byte("limits:\n  max_viewers_per_ip: 0\n"))
	if err != nil || c.Limits.MaxViewersPerIP != 0 {
		t.Fatalf("0 (no cap): %v %+v", err, c.Limits)
	}
	checkErrors(t, []badConfig{{"limits:\n  max_viewers_per_ip: -1", "limits.max_viewers_per_ip"}})
}

func TestDenyRemoteNetworks(t *testing.T) {
	c, err := Parse("t", []byte("webrtc:\n  deny_remote_networks: [private, 203.0.113.0/24, 198.51.100.7]\n"))
	if err != nil {
		t.Fatal(err)
	}
	deny, err := c.WebRTC.DenyRemote()
	if err != nil || len(deny) != len(PrivateNetworks)+2 || deny[len(deny)-1].String() != "198.51.100.7/32" {
		t.Fatalf("%v %v", deny, err)
	}
	if _, err := Parse("t", []byte("webrtc:\n  deny_remote_networks: [lan]\n")); err == nil || !strings.Contains(err.Error(), "deny_remote_networks[0]") {
		t.Fatalf("a bad entry: %v", err)
	}
}

func TestLogFormat(t *testing.T) {
	if f := Default().LogFormat; f != "text" {
		t.Fatalf("default log_format %q, want text", f)
	}
	c, err := Parse("json.yaml", []byte("log_format: json\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.LogFormat != "json" {
		t.Fatalf("log_format %q, want json", c.LogFormat)
	}
}
