package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
)

const (
	secret1 = "first-hs256-secret-of-32-bytes-or-more!"
	secret2 = "second-hs256-secret-of-32-bytes-or-more"
	issuer  = "https://issuer.example"
	aud     = "mseway"
)

func hsConfig() configs.Auth {
	return configs.Auth{JWT: configs.JWT{
		HS256:    []configs.HMACKey{{Secret: secret1, KID: "k1"}, {Secret: secret2, KID: "k2"}},
		Issuer:   issuer,
		Audience: aud,
		Leeway:   10 * time.Second,
	}}
}

// good are valid claims for hsConfig at now.
func good(now time.Time, g *Grants) *Claims {
	c := claimsAt(now, g)
	c.Issuer = issuer
	c.Audience = jwt.ClaimStrings{aud}
	return c
}

var allGrants = &Grants{Publish: []string{"cam-*", "lobby"}, View: []string{"*"}}

func TestJWTGrants(t *testing.T) {
	clk := newClock()
	a := newAuth(t, hsConfig(), Options{Now: clk.Now})
	now := clk.Now()
	tok := sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, allGrants))

	d := check(t, a, Request{Action: Publish, Stream: "cam-1", Token: tok}, 0, ViaJWT)
	if d.Subject != "alice" {
		t.Errorf("subject %q, want alice", d.Subject)
	}
	check(t, a, Request{Action: Publish, Stream: "cam-", Token: tok}, 0, ViaJWT)
	check(t, a, Request{Action: Publish, Stream: "lobby", Token: tok}, 0, ViaJWT)
	check(t, a, Request{Action: View, Stream: "anything.at_all", Token: tok}, 0, ViaJWT)
	expectMsg(t, a, Request{Action: Publish, Stream: "lobby2", Token: tok}, 403, `this token may not publish stream "lobby2"`)
	expectMsg(t, a, Request{Action: Publish, Stream: "xcam-1", Token: tok}, 403, `this token may not publish stream "xcam-1"`)
	expectMsg(t, a, Request{Action: Admin, Token: tok}, 403, "this token may not admin")

	// publish and view are separate rights.
	pubOnly := sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, &Grants{Publish: []string{"*"}}))
	check(t, a, Request{Action: Publish, Stream: "s", Token: pubOnly}, 0, ViaJWT)
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: pubOnly}, 403, `this token may not view stream "s"`)
	viewOnly := sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, &Grants{View: []string{"s"}}))
	check(t, a, Request{Action: View, Stream: "s", Token: viewOnly}, 0, ViaJWT)
	check(t, a, Request{Action: Publish, Stream: "s", Token: viewOnly}, 403, "")

	// admin opens the operator endpoints, and nothing else.
	admin := sign(t, jwt.SigningMethodHS256, []byte(secret2), "k2", good(now, &Grants{Admin: true}))
	check(t, a, Request{Action: Admin, Token: admin}, 0, ViaJWT)
	check(t, a, Request{Action: Publish, Stream: "s", Token: admin}, 403, "")
	check(t, a, Request{Action: View, Stream: "s", Token: admin}, 403, "")

	// A valid token without the claim grants nothing.
	none := sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, nil))
	for _, action := range []Action{Publish, View, Admin} {
		check(t, a, Request{Action: action, Stream: "s", Token: none}, 403, "")
	}

	// Without a kid every secret is tried.
	noKID := sign(t, jwt.SigningMethodHS256, []byte(secret2), "", good(now, allGrants))
	check(t, a, Request{Action: View, Stream: "s", Token: noKID}, 0, ViaJWT)

	// Within the leeway an expired token still works; nbf likewise.
	c := good(now, allGrants)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(-5 * time.Second))
	c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Second))
	check(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", c)}, 0, ViaJWT)

	// The token expires with the clock.
	clk.Advance(time.Hour + 11*time.Second)
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: tok}, 401, "invalid token: expired")
}

// Every kind of bad JWT is a 401 with a short reason.
func TestJWTRefused(t *testing.T) {
	clk := newClock()
	a := newAuth(t, hsConfig(), Options{Now: clk.Now})
	now := clk.Now()
	hs := func(kid string, c jwt.Claims) string {
		return sign(t, jwt.SigningMethodHS256, []byte(secret1), kid, c)
	}
	mod := func(f func(c *Claims)) *Claims {
		c := good(now, allGrants)
		f(c)
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := hs("k1", good(now, allGrants))
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	tooMany := make([]string, MaxPatterns+1)
	for i := range tooMany {
		tooMany[i] = "x"
	}
	tooMany[MaxPatterns] = "cam-1"

	for _, c := range []struct {
		name, token, reason string
	}{
		{"no exp", hs("k1", mod(func(c *Claims) { c.ExpiresAt = nil })), "missing exp"},
		{"expired", hs("k1", mod(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-11 * time.Second)) })), "expired"},
		{"nbf in the future", hs("k1", mod(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) })), "not yet valid"},
		{"signed with another secret", sign(t, jwt.SigningMethodHS256, []byte("some-other-secret-of-32-bytes-and-more"), "k1", good(now, allGrants)), "bad signature"},
		{"kid of the other secret", sign(t, jwt.SigningMethodHS256, []byte(secret1), "k2", good(now, allGrants)), "bad signature"},
		{"no kid, no secret of ours", sign(t, jwt.SigningMethodHS256, []byte("some-other-secret-of-32-bytes-and-more"), "", good(now, allGrants)), "bad signature"},
		{"payload changed", parts[0] + "." + b64([]byte(`{"sub":"mallory","exp":4102444800,"iss":"`+issuer+`","aud":"`+aud+`","mseway":{"admin":true}}`)) + "." + parts[2], "bad signature"},
		{"signature cut", parts[0] + "." + parts[1] + ".", "bad signature"},
		{"wrong issuer", hs("k1", mod(func(c *Claims) { c.Issuer = "https://evil.example" })), "wrong issuer"},
		{"no issuer", hs("k1", mod(func(c *Claims) { c.Issuer = "" })), "wrong issuer"},
		{"wrong audience", hs("k1", mod(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), "wrong audience"},
		{"no audience", hs("k1", mod(func(c *Claims) { c.Audience = nil })), "wrong audience"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good(now, allGrants)), "algorithm not accepted"},
		{"alg none with kid", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", good(now, allGrants)), "algorithm not accepted"},
		{"HS384 with our secret", sign(t, jwt.SigningMethodHS384, []byte(secret1), "k1", good(now, allGrants)), "algorithm not accepted"},
		{"RS256 with only HS256 configured", sign(t, jwt.SigningMethodRS256, rsaKey, "k1", good(now, allGrants)), "algorithm not accepted"},
		{"ES256 with only HS256 configured", sign(t, jwt.SigningMethodES256, ecKey, "", good(now, allGrants)), "algorithm not accepted"},
		{"unknown alg", b64([]byte(`{"alg":"XX999","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2], "algorithm not accepted"},
		{"unknown kid", hs("k9", good(now, allGrants)), "signing key unknown"},
		{"kid not a string", b64([]byte(`{"alg":"HS256","kid":7}`)) + "." + parts[1] + "." + parts[2], "malformed"},
		{"no alg", b64([]byte(`{"typ":"JWT"}`)) + "." + parts[1] + "." + parts[2], "malformed"},
		{"garbage", "a.b.c", "malformed"},
		{"empty parts", "..", "malformed"},
		{"header not JSON", b64([]byte("{")) + "." + parts[1] + "." + parts[2], "malformed"},
		{"claims not JSON", parts[0] + "." + b64([]byte("[1,2")) + "." + parts[2], "malformed"},
		{"exp a string", hs("k1", jwt.MapClaims{"exp": "tomorrow", "iss": issuer, "aud": aud}), "malformed"},
		{"grants not an object", hs("k1", jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "iss": issuer, "aud": aud, "mseway": "all"}), "malformed"},
		{"too many patterns", hs("k1", good(now, &Grants{Publish: tooMany})), "malformed"},
		{"oversized", hs("k1", mod(func(c *Claims) { c.ID = strings.Repeat("x", MaxTokenLen) })), "too long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			expectMsg(t, a, Request{Action: Publish, Stream: "cam-1", Token: c.token}, 401, "invalid token: "+c.reason)
		})
	}
	// The valid token the bad ones were made from works.
	check(t, a, Request{Action: Publish, Stream: "cam-1", Token: valid}, 0, ViaJWT)
}

// With JWTs configured a token that is neither a static token nor a JWT is
// a 401; with static tokens alone it is the v1 403.
func TestJWTAndStatic(t *testing.T) {
	clk := newClock()
	cfg := hsConfig()
	cfg.PublishToken = pubTok
	a := newAuth(t, cfg, Options{Now: clk.Now})
	check(t, a, Request{Action: Publish, Stream: "s", Token: pubTok}, 0, ViaStatic)
	expectMsg(t, a, Request{Action: Publish, Stream: "s", Token: wrongTok}, 401, "invalid token")
	expectMsg(t, a, Request{Action: Publish, Stream: "s"}, 401, "publish token required")
	// JWT or hook configured: viewing is protected unless public_view.
	if a.Open(View) || a.Open(Publish) || a.Open(Admin) {
		t.Error("an action is open")
	}
	expectMsg(t, a, Request{Action: View, Stream: "s"}, 401, "view token required")
	// The publish token is the admin token.
	check(t, a, Request{Action: Admin, Token: pubTok}, 0, ViaStatic)
}

// public_view: anyone views, and a view JWT still counts as a credential;
// a bad token on an open action is ignored.
func TestJWTPublicView(t *testing.T) {
	clk := newClock()
	cfg := hsConfig()
	cfg.PublicView = true
	a := newAuth(t, cfg, Options{Now: clk.Now})
	if !a.Open(View) || a.Open(Publish) || a.Open(Admin) {
		t.Errorf("open: publish %v view %v admin %v", a.Open(Publish), a.Open(View), a.Open(Admin))
	}
	now := clk.Now()
	viewer := sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, &Grants{View: []string{"s"}}))
	publisher := sign(t, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, &Grants{Publish: []string{"s"}}))
	d := check(t, a, Request{Action: View, Stream: "s", Token: viewer}, 0, ViaJWT)
	if d.Subject != "alice" {
		t.Errorf("subject %q", d.Subject)
	}
	check(t, a, Request{Action: View, Stream: "other", Token: viewer}, 0, ViaOpen)
	check(t, a, Request{Action: View, Stream: "s", Token: publisher}, 0, ViaOpen)
	check(t, a, Request{Action: View, Stream: "s"}, 0, ViaOpen)
	check(t, a, Request{Action: View, Stream: "s", Token: "garbage"}, 0, ViaOpen)
	check(t, a, Request{Action: View, Stream: "s", Token: "a.b.c"}, 0, ViaOpen)
	check(t, a, Request{Action: View, Stream: "s", Token: strings.Repeat("x", MaxTokenLen+1)}, 0, ViaOpen)
	check(t, a, Request{Action: Publish, Stream: "s", Token: publisher}, 0, ViaJWT)
	check(t, a, Request{Action: Publish, Stream: "s", Token: viewer}, 403, "")
}
