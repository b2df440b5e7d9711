package auth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
)

// What one decision costs: it runs once per publish, viewer socket and API
// request, never per packet or fragment.
func BenchmarkCheck(b *testing.B) {
	now := time.Now()
	hs := hsConfig()
	hs.PublishToken = "a-static-publish-token"
	a, err := New(context.Background(), hs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	tok := sign(b, jwt.SigningMethodHS256, []byte(secret1), "k1", good(now, allGrants))
	open, err := New(context.Background(), configs.Auth{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer open.Close()
	for _, c := range []struct {
		name string
		a    *Authorizer
		req  Request
	}{
		{"open", open, Request{Action: View, Stream: "cam-1"}},
		{"static", a, Request{Action: Publish, Stream: "cam-1", Token: "a-static-publish-token"}},
		{"jwt-hs256", a, Request{Action: Publish, Stream: "cam-1", Token: tok}},
		{"jwt-hs256-no-grant", a, Request{Action: Publish, Stream: "other", Token: tok}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = c.a.Check(context.Background(), c.req)
			}
		})
	}
}
