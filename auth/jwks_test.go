package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/configs"
)

// jwksServer serves a JWK set that tests can change, counting requests.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	status   int
	requests atomic.Int64
	// firstDelay holds the first answer back this long.
	firstDelay time.Duration
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{status: http.StatusOK, body: []byte(`{"keys":[]}`)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		s.mu.Lock()
		status, body, delay := s.status, s.body, s.firstDelay
		s.mu.Unlock()
		if n == 1 && delay > 0 {
			time.Sleep(delay)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// serve makes the server answer with the public JWKs of keys (by kid).
func (s *jwksServer) serve(t *testing.T, keys map[string]any) {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, k := range keys {
		meta := jwkset.JWKMetadataOptions{KID: kid, USE: jwkset.UseSig}
		switch k.(type) {
		case noAlg:
			k = k.(noAlg).key
		case *rsa.PublicKey:
			meta.ALG = jwkset.AlgRS256
		case *ecdsa.PublicKey:
			meta.ALG = jwkset.AlgES256
		case ed25519.PublicKey:
			meta.ALG = jwkset.AlgEdDSA
		}
		jwk, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: meta})
		if err != nil {
			t.Fatalf("JWK of %s: %v", kid, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.body, s.status = b, http.StatusOK
	s.mu.Unlock()
}

// noAlg is a key served without "alg" (allowed: many JWKS omit it).
type noAlg struct{ key any }

func (s *jwksServer) fail(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

type testKeys struct {
	rsa1, rsa2 *rsa.PrivateKey
	ec         *ecdsa.PrivateKey
	ed         ed25519.PrivateKey
}

func genKeys(t *testing.T) testKeys {
	t.Helper()
	var k testKeys
	var err error
	if k.rsa1, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	return k
}

func jwksConfig(url string) configs.Auth {
	return configs.Auth{JWT: configs.JWT{JWKSURL: url, JWKSRefresh: time.Hour, Leeway: 10 * time.Second}}
}

// RS256, ES256 and EdDSA tokens verify with the JWKS keys; a token
// whose alg does not fit its key is refused.
func TestJWKSAlgorithms(t *testing.T) {
	keys := genKeys(t)
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"r1": &keys.rsa1.PublicKey, "e1": &keys.ec.PublicKey, "d1": keys.ed.Public()})
	a := newAuth(t, jwksConfig(srv.URL), Options{})
	now := time.Now()
	g := &Grants{View: []string{"*"}}
	for _, c := range []struct {
		name   string
		token  string
		status int
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, keys.rsa1, "r1", claimsAt(now, g)), 0},
		{"RS256 no kid", sign(t, jwt.SigningMethodRS256, keys.rsa1, "", claimsAt(now, g)), 0},
		{"ES256", sign(t, jwt.SigningMethodES256, keys.ec, "e1", claimsAt(now, g)), 0},
		{"ES256 no kid", sign(t, jwt.SigningMethodES256, keys.ec, "", claimsAt(now, g)), 0},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, keys.ed, "d1", claimsAt(now, g)), 0},
		{"RS256 by a key not in the set", sign(t, jwt.SigningMethodRS256, keys.rsa2, "r1", claimsAt(now, g)), 401},
		{"RS256 no kid, key not in the set", sign(t, jwt.SigningMethodRS256, keys.rsa2, "", claimsAt(now, g)), 401},
		{"ES256 naming the RSA key", sign(t, jwt.SigningMethodES256, keys.ec, "r1", claimsAt(now, g)), 401},
		{"PS256 naming an RS256 key", sign(t, jwt.SigningMethodPS256, keys.rsa1, "r1", claimsAt(now, g)), 401},
		{"HS256 when only a JWKS is configured", sign(t, jwt.SigningMethodHS256, []byte(secret1), "", claimsAt(now, g)), 401},
		{"no exp", sign(t, jwt.SigningMethodRS256, keys.rsa1, "r1", &Claims{Mseway: g}), 401},
	} {
		via := ViaJWT
		if c.status != 0 {
			via = ""
		}
		check(t, a, Request{Action: View, Stream: "s", Token: c.token}, c.status, via)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1 (known kids need no refresh)", n)
	}
}

// Alg confusion: an HS256 token whose secret is the JWKS's RSA public key
// (as PEM or DER) is refused, with or without the kid of that key, even
// with HS256 secrets configured.
func TestJWKSAlgConfusion(t *testing.T) {
	keys := genKeys(t)
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"r1": &keys.rsa1.PublicKey})
	cfg := jwksConfig(srv.URL)
	cfg.JWT.HS256 = []configs.HMACKey{{Secret: secret1, KID: "h1"}}
	a := newAuth(t, cfg, Options{})
	der, err := x509.MarshalPKIXPublicKey(&keys.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&keys.rsa1.PublicKey)})
	now := time.Now()
	g := &Grants{Publish: []string{"*"}, View: []string{"*"}, Admin: true}
	for _, secret := range [][]byte{pemKey, pkcs1, der} {
		for _, kid := range []string{"r1", "", "h1"} {
			tok := sign(t, jwt.SigningMethodHS256, secret, kid, claimsAt(now, g))
			check(t, a, Request{Action: Publish, Stream: "s", Token: tok}, 401, "")
			check(t, a, Request{Action: Admin, Token: tok}, 401, "")
		}
	}
	// The real keys still work.
	check(t, a, Request{Action: Admin, Token: sign(t, jwt.SigningMethodRS256, keys.rsa1, "r1", claimsAt(now, g))}, 0, ViaJWT)
	check(t, a, Request{Action: Admin, Token: sign(t, jwt.SigningMethodHS256, []byte(secret1), "h1", claimsAt(now, g))}, 0, ViaJWT)
	check(t, a, Request{Action: Admin, Token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "r1", claimsAt(now, g))}, 401, "")
}

// A key rotation is picked up by the unknown-kid refresh at once; a key
// gone from the set is revoked; a burst of unknown kids causes at most one
// more fetch.
func TestJWKSRotation(t *testing.T) {
	keys := genKeys(t)
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &keys.rsa1.PublicKey})
	now := time.Now()
	g := &Grants{View: []string{"*"}}
	t1 := sign(t, jwt.SigningMethodRS256, keys.rsa1, "k1", claimsAt(now, g))
	t2 := sign(t, jwt.SigningMethodRS256, keys.rsa2, "k2", claimsAt(now, g))
	// The first check comes while the first fetch is under way: it waits
	// for it, and that is no unknown-kid refresh.
	srv.firstDelay = 200 * time.Millisecond
	a := newAuth(t, jwksConfig(srv.URL), Options{})
	check(t, a, Request{Action: View, Stream: "s", Token: t1}, 0, ViaJWT)

	srv.serve(t, map[string]any{"k2": &keys.rsa2.PublicKey})
	check(t, a, Request{Action: View, Stream: "s", Token: t2}, 0, ViaJWT)
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (start, unknown kid k2)", n)
	}
	// k1 is gone from the set: revoked.
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: t1}, 401, "invalid token: signing key unknown")

	burst(t, a, keys.rsa1, 50)
	if n := srv.requests.Load(); n > 2 {
		t.Errorf("%d JWKS fetches after a burst of unknown kids, want at most 2", n)
	}
	check(t, a, Request{Action: View, Stream: "s", Token: t2}, 0, ViaJWT)
}

// A burst of tokens naming random unknown kids on a fresh Authorizer
// causes one fetch besides the first.
func TestJWKSUnknownKIDBurst(t *testing.T) {
	keys := genKeys(t)
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"k1": &keys.rsa1.PublicKey})
	a := newAuth(t, jwksConfig(srv.URL), Options{})
	// Wait for the first fetch (a known kid waits for it, or causes it).
	check(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodRS256, keys.rsa1, "k1", claimsAt(time.Now(), &Grants{View: []string{"*"}}))}, 0, ViaJWT)
	burst(t, a, keys.rsa1, 100)
	if n := srv.requests.Load(); n > 2 {
		t.Errorf("%d JWKS fetches, want at most 2", n)
	}
}

// A JWK without "alg" serves every algorithm of its key type, and no
// other.
func TestJWKSKeyWithoutAlg(t *testing.T) {
	keys := genKeys(t)
	srv := newJWKSServer(t)
	srv.serve(t, map[string]any{"r": noAlg{&keys.rsa1.PublicKey}, "e": noAlg{&keys.ec.PublicKey}})
	a := newAuth(t, jwksConfig(srv.URL), Options{})
	now := time.Now()
	g := &Grants{View: []string{"*"}}
	check(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodRS256, keys.rsa1, "r", claimsAt(now, g))}, 0, ViaJWT)
	check(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodPS384, keys.rsa1, "r", claimsAt(now, g))}, 0, ViaJWT)
	check(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodES256, keys.ec, "e", claimsAt(now, g))}, 0, ViaJWT)
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodES256, keys.ec, "r", claimsAt(now, g))}, 401, "invalid token: algorithm not accepted")
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodEdDSA, keys.ed, "e", claimsAt(now, g))}, 401, "invalid token: algorithm not accepted")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// ES384 naming a P-256 key.
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodES384, p384, "e", claimsAt(now, g))}, 401, "invalid token: algorithm not accepted")
}

func burst(t *testing.T, a *Authorizer, key *rsa.PrivateKey, n int) {
	t.Helper()
	now := time.Now()
	toks := make([]string, n)
	for i := range toks {
		toks[i] = sign(t, jwt.SigningMethodRS256, key, fmt.Sprintf("random-%d-%d", i, now.UnixNano()), claimsAt(now, &Grants{View: []string{"*"}}))
	}
	var wg sync.WaitGroup
	for _, tok := range toks {
		wg.Go(func() {
			d, err := a.Check(context.Background(), Request{Action: View, Stream: "s", Token: tok})
			expect(t, Request{Action: View, Stream: "s", Token: tok}, d, err, 401, "")
		})
	}
	wg.Wait()
}

// An unreachable JWKS does not fail New; tokens are refused (401) until it
// answers, then work without waiting for the periodic refresh.
func TestJWKSDownAtStart(t *testing.T) {
	keys := genKeys(t)
	srv := newJWKSServer(t)
	srv.fail(http.StatusServiceUnavailable)
	var logs logBuf
	a := newAuth(t, jwksConfig(srv.URL+"/keys?api_key=hunter2"), Options{Logger: testLogger(&logs)})
	tok := sign(t, jwt.SigningMethodRS256, keys.rsa1, "k1", claimsAt(time.Now(), &Grants{View: []string{"*"}}))
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: tok}, 401, "invalid token: signing key unknown")

	srv.serve(t, map[string]any{"k1": &keys.rsa1.PublicKey})
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := a.Check(context.Background(), Request{Action: View, Stream: "s", Token: tok})
		if err == nil && d.Via == ViaJWT {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after the JWKS came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, "JWKS fetch failed") {
		t.Errorf("no warning about the JWKS: %q", out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, tok) {
		t.Errorf("the log has a secret: %q", out)
	}
}

// A JWKS that hangs does not block New.
func TestJWKSHangingAtStart(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a, err := New(context.Background(), jwksConfig(srv.URL), Options{Logger: testLogger(&logBuf{})})
		if err != nil {
			t.Errorf("New: %v", err)
			return
		}
		a.Close()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("New (and Close) blocked on a hanging JWKS")
	}
}

// Cancelling New's context stops the refresh loop as Close does.
func TestJWKSContextEndsRefresh(t *testing.T) {
	srv := newJWKSServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, jwksConfig(srv.URL), Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	a.Close()
}

func TestKeyFits(t *testing.T) {
	keys := genKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		alg  string
		key  any
		want bool
	}{
		{"RS256", &keys.rsa1.PublicKey, true},
		{"PS512", &keys.rsa1.PublicKey, true},
		{"ES256", &keys.rsa1.PublicKey, false},
		{"ES256", &keys.ec.PublicKey, true},
		{"ES384", &keys.ec.PublicKey, false},
		{"ES384", &p384.PublicKey, true},
		{"ES256", &p384.PublicKey, false},
		{"EdDSA", keys.ed.Public(), true},
		{"RS256", keys.ed.Public(), false},
		{"HS256", []byte("secret"), false},
		{"RS256", keys.rsa1, false}, // a private key is not a verification key
	} {
		if got := keyFits(c.alg, c.key); got != c.want {
			t.Errorf("keyFits(%s, %T) = %v", c.alg, c.key, got)
		}
	}
}

// Symmetric keys and encryption keys of a JWKS are never used: an HS256
// token signed with an "oct" key of the JWKS is refused, and so is an
// RS256 token naming a "use": "enc" key.
func TestJWKSIgnoresUnusableKeys(t *testing.T) {
	keys := genKeys(t)
	octSecret := []byte("an-oct-key-published-in-the-jwks-32b+")
	enc, err := jwkset.NewJWKFromKey(&keys.rsa1.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "x", USE: jwkset.UseEnc}})
	if err != nil {
		t.Fatal(err)
	}
	encJSON, err := json.Marshal(enc.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	srv := newJWKSServer(t)
	srv.mu.Lock()
	srv.body = fmt.Appendf(nil, `{"keys":[{"kty":"oct","kid":"o","alg":"HS256","k":%q},%s]}`, base64.RawURLEncoding.EncodeToString(octSecret), encJSON)
	srv.mu.Unlock()
	var logs logBuf
	cfg := jwksConfig(srv.URL)
	cfg.JWT.HS256 = []configs.HMACKey{{Secret: secret1, KID: "h"}}
	a := newAuth(t, cfg, Options{Logger: testLogger(&logs)})
	now := time.Now()
	g := &Grants{View: []string{"*"}}
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodHS256, octSecret, "o", claimsAt(now, g))}, 401, "signing key unknown")
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodHS256, octSecret, "", claimsAt(now, g))}, 401, "bad signature")
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodRS256, keys.rsa1, "x", claimsAt(now, g))}, 401, "signing key unknown")
	expectMsg(t, a, Request{Action: View, Stream: "s", Token: sign(t, jwt.SigningMethodRS256, keys.rsa1, "", claimsAt(now, g))}, 401, "signing key unknown")
	if !strings.Contains(logs.String(), "no usable signing key") {
		t.Errorf("no warning about a JWKS without usable keys: %q", logs.String())
	}
}
