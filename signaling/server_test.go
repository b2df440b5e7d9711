package signaling

import "testing"

// TestPublisherKind: who publishes, from the protocol and the User-Agent.
func TestPublisherKind(t *testing.T) {
	for _, tc := range []struct{ protocol, ua, want string }{
		{"whip", "mseway-agent/1", "agent"},
		{"whip", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36", "browser"},
		{"whip", "GStreamer souphttpsrc 1.22.0 libsoup/3.2.2", "whip"},
		{"whip", "obs-studio/30.1", "whip"},
		{"whip", "", "whip"},
		{"ws", "Mozilla/5.0 (Macintosh) Safari/605.1.15", "browser"},
		{"ws", "", "browser"},
	} {
		if got := publisherKind(tc.protocol, tc.ua); got != tc.want {
			t.Errorf("publisherKind(%q, %q) = %q, want %q", tc.protocol, tc.ua, got, tc.want)
		}
	}
}
