package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"
)

// The Standard Webhooks test vector (the spec's and every reference
// library's): a receiver library verifies what we send only if we reproduce it.
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = "1614265330"
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vecHeader(sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, vecID)
	h.Set(HeaderTimestamp, vecTS)
	h.Set(HeaderSignature, sig)
	return h
}

var vecNow = time.Unix(1614265330, 0)

func TestSignStandardWebhooksVector(t *testing.T) {
	key, err := signingKey(vecSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := sign(key, vecID, vecTS, []byte(vecBody)); got != vecSig {
		t.Fatalf("sign = %s, want %s", got, vecSig)
	}
	if err := Verify(vecSecret, vecHeader(vecSig), []byte(vecBody), time.Minute, vecNow); err != nil {
		t.Fatalf("Verify of the spec vector: %v", err)
	}
	// The same characters without the prefix are a plain secret: another key.
	if err := Verify(vecSecret[len("whsec_"):], vecHeader(vecSig), []byte(vecBody), time.Minute, vecNow); !errors.Is(err, ErrNoMatchSignature) {
		t.Fatalf("Verify with the unprefixed secret = %v, want ErrNoMatchSignature", err)
	}
}

// TestSignPlainSecret checks a plain (non-whsec_) secret against an HMAC
// computed here with crypto/hmac, independently of the package.
func TestSignPlainSecret(t *testing.T) {
	const secret, id, ts, body = "a plain secret, 32 bytes long!!!", "msg_abc", "1700000000", `{"type":"publish.started"}`
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id + "." + ts + "." + body))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))

	key, err := signingKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := sign(key, id, ts, []byte(body)); got != want {
		t.Fatalf("sign = %s, want %s", got, want)
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, want)
	if err := Verify(secret, h, []byte(body), time.Minute, time.Unix(1700000000, 0)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	body := []byte(vecBody)
	for _, c := range []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		tol    time.Duration
		now    time.Time
		want   error
	}{
		{"tampered body", vecSecret, vecHeader(vecSig), []byte(`{"test": 2432232315}`), time.Minute, vecNow, ErrNoMatchSignature},
		{"wrong secret", "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key of some length")), vecHeader(vecSig), body, time.Minute, vecNow, ErrNoMatchSignature},
		{"too old", vecSecret, vecHeader(vecSig), body, time.Minute, vecNow.Add(61 * time.Second), ErrTimestamp},
		{"from the future", vecSecret, vecHeader(vecSig), body, time.Minute, vecNow.Add(-61 * time.Second), ErrTimestamp},
		{"default tolerance is 5 minutes", vecSecret, vecHeader(vecSig), body, 0, vecNow.Add(5*time.Minute + time.Second), ErrTimestamp},
		{"other versions only", vecSecret, vecHeader("v2," + vecSig[3:] + " v1a," + vecSig[3:]), body, time.Minute, vecNow, ErrNoMatchSignature},
		{"bad base64", vecSecret, vecHeader("v1,!!!"), body, time.Minute, vecNow, ErrNoMatchSignature},
		{"missing id", vecSecret, func() http.Header { h := vecHeader(vecSig); h.Del(HeaderID); return h }(), body, time.Minute, vecNow, ErrMissingHeader},
		{"missing signature", vecSecret, func() http.Header { h := vecHeader(vecSig); h.Del(HeaderSignature); return h }(), body, time.Minute, vecNow, ErrMissingHeader},
		{"timestamp not a number", vecSecret, func() http.Header { h := vecHeader(vecSig); h.Set(HeaderTimestamp, "1614265330.5"); return h }(), body, time.Minute, vecNow, ErrTimestamp},
		{"secret not base64", "whsec_%%%", vecHeader(vecSig), body, time.Minute, vecNow, ErrSecret},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.secret, c.header, c.body, c.tol, c.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	body := []byte(vecBody)
	for _, c := range []struct {
		name   string
		header http.Header
		tol    time.Duration
		now    time.Time
	}{
		{"several signatures", vecHeader("v1,bm9wZQ== v2,abc " + vecSig), time.Minute, vecNow},
		{"at the edge of tolerance", vecHeader(vecSig), time.Minute, vecNow.Add(60 * time.Second)},
		{"default tolerance", vecHeader(vecSig), 0, vecNow.Add(-5 * time.Minute)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := Verify(vecSecret, c.header, body, c.tol, c.now); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestSigningKey(t *testing.T) {
	raw := []byte("0123456789abcdefghij") // 20 bytes: padded base64
	for _, s := range []string{
		"whsec_" + base64.StdEncoding.EncodeToString(raw),
		"whsec_" + base64.RawStdEncoding.EncodeToString(raw),
	} {
		key, err := signingKey(s)
		if err != nil || string(key) != string(raw) {
			t.Errorf("signingKey(%q) = %q, %v; want %q", s, key, err, raw)
		}
	}
	if key, err := signingKey("plain-secret-value"); err != nil || string(key) != "plain-secret-value" {
		t.Errorf("plain secret: %q, %v", key, err)
	}
	for _, s := range []string{"", "whsec_", "whsec_not base64!"} {
		if _, err := signingKey(s); !errors.Is(err, ErrSecret) {
			t.Errorf("signingKey(%q) = %v, want ErrSecret", s, err)
		}
	}
}
