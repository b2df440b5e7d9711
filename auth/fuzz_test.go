package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/httpapi"
)

// fuzzConfig: HS256 secrets (one with a kid, one without) and static
// tokens; no JWKS and no hook, so nothing can be a 503.
func fuzzConfig() configs.Auth {
	return configs.Auth{
		PublishToken: pubTok,
		ViewToken:    viewTok,
		JWT: configs.JWT{
			HS256:  []configs.HMACKey{{Secret: secret1, KID: "k1"}, {Secret: secret2}},
			Leeway: 10 * time.Second,
		},
	}
}

// The fuzz clock: 2030-01-02; the seed JWTs expire in 2100.
var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// FuzzCheck: no token makes Check panic or answer anything but a decision
// by a credential or a 401/403 *httpapi.Error that does not repeat it.
func FuzzCheck(f *testing.F) {
	exp := jwt.NewNumericDate(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	g := &Grants{Publish: []string{"cam-*"}, View: []string{"*"}, Admin: true}
	for _, s := range []string{
		"", pubTok, viewTok, "a.b.c", "..", "x.y", strings.Repeat(".", 3),
		sign(f, jwt.SigningMethodHS256, []byte(secret1), "k1", &Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: exp, Subject: "s"}, Mseway: g}),
		sign(f, jwt.SigningMethodHS256, []byte(secret2), "", &Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: exp}, Mseway: g}),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", &Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: exp}, Mseway: g}),
	} {
		f.Add(s)
	}
	a, err := New(context.Background(), fuzzConfig(), Options{Now: func() time.Time { return fuzzNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	f.Fuzz(func(t *testing.T, token string) {
		for _, req := range []Request{
			{Action: Publish, Stream: "cam-1", Token: token},
			{Action: View, Stream: "lobby", Token: token},
			{Action: Admin, Token: token},
		} {
			d, err := a.Check(context.Background(), req)
			if err == nil {
				if !d.Credential || (d.Via != ViaStatic && d.Via != ViaJWT) {
					t.Fatalf("%s allowed with %+v", req.Action, d)
				}
				continue
			}
			var he *httpapi.Error
			if !errors.As(err, &he) || (he.Status != 401 && he.Status != 403) {
				t.Fatalf("%s: %T %v, want a 401 or 403 *httpapi.Error", req.Action, err, err)
			}
			if d != (Decision{}) {
				t.Fatalf("%s refused with a decision %+v", req.Action, d)
			}
		}
		Match(token, "cam-1")
		Match("cam-*", token)
	})
}
