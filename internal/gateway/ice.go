package gateway

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/mseway/mseway/configs"
)

// defaultTURNTTL is how long time-limited TURN credentials last when the
// config gives no ttl (a day, as coturn's REST API examples).
const defaultTURNTTL = 24 * time.Hour

// advertisedICEServers are the ICE servers a publisher of stream is told
// about: static ones as configured, and for servers with a secret fresh
// time-limited credentials (the "TURN REST API" of coturn's
// use-auth-secret): username "<unix expiry>:<stream>", credential
// base64(HMAC-SHA1(secret, username)).
func advertisedICEServers(servers []configs.ICEServer, stream string, now time.Time) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(servers))
	for _, s := range servers {
		if s.Secret == "" {
			out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
			continue
		}
		ttl := s.TTL
		if ttl <= 0 {
			ttl = defaultTURNTTL
		}
		user := strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + stream
		mac := hmac.New(sha1.New, []byte(s.Secret))
		mac.Write([]byte(user))
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: user, Credential: base64.StdEncoding.EncodeToString(mac.Sum(nil))})
	}
	return out
}
