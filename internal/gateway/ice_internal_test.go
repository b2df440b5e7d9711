package gateway

import (
	"testing"
	"time"

	"github.com/mseway/mseway/configs"
)

// Time-limited TURN credentials as coturn checks them (use-auth-secret):
// the vector below was computed with
// printf '1700003600:cam' | openssl dgst -sha1 -hmac 'north' -binary | base64
func TestAdvertisedICEServers(t *testing.T) {
	now := time.Unix(1700000000, 0)
	got := advertisedICEServers([]configs.ICEServer{
		{URLs: []string{"stun:stun.example.org"}},
		{URLs: []string{"turn:turn.example.org"}, Secret: "north", TTL: time.Hour},
	}, "cam", now)
	if len(got) != 2 || got[0].Username != "" {
		t.Fatalf("%+v", got)
	}
	if got[1].Username != "1700003600:cam" || got[1].Credential != "CBXhxQNGzZ7jWVji0SV0UpZHLtE=" {
		t.Fatalf("TURN REST credentials: %q / %q", got[1].Username, got[1].Credential)
	}
}
