package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// secretPrefix marks a Standard Webhooks secret: the rest is the key in base64.
const secretPrefix = "whsec_"

// DefaultTolerance is the clock difference Verify allows when given a
// tolerance of 0 or less (the Standard Webhooks libraries use 5 minutes).
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify (wrapped; test with errors.Is).
var (
	ErrSecret           = errors.New("webhooks: invalid secret")
	ErrMissingHeader    = errors.New("webhooks: missing webhook header")
	ErrTimestamp        = errors.New("webhooks: webhook-timestamp outside tolerance")
	ErrNoMatchSignature = errors.New("webhooks: no matching v1 signature")
)

// signingKey returns the HMAC key of a configured secret: with the "whsec_"
// prefix, the base64-decoded rest; otherwise the secret's bytes.
func signingKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: empty", ErrSecret)
	}
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		// Some issuers leave the padding out.
		key, err = base64.RawStdEncoding.DecodeString(rest)
	}
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("%w: the part after %q is not base64", ErrSecret, secretPrefix)
	}
	return key, nil
}

// signature returns the raw HMAC-SHA256 of id.timestamp.body under key.
func signature(key []byte, id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// sign returns the webhook-signature header value: "v1," + base64(HMAC).
func sign(key []byte, id, timestamp string, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(signature(key, id, timestamp, body))
}

// Verify checks a delivery's headers and body against secret, as a receiver
// would: the three webhook-* headers are present, |now - webhook-timestamp|
// is at most tolerance (DefaultTolerance when tolerance <= 0), and one of the
// space-separated "v1,<base64>" signatures of webhook-signature is the
// HMAC-SHA256 of "id.timestamp.body" (compared in constant time; signatures
// of other versions are ignored). secret is as configured: "whsec_" + base64
// key, or any other string used as the key's bytes.
func Verify(secret string, header http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	key, err := signingKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: need %s, %s and %s", ErrMissingHeader, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not unix seconds", ErrTimestamp, ts)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	// Compare in seconds: a Duration of |now - ts| could overflow for absurd ts.
	diff := now.Unix() - sec
	if diff < 0 {
		diff = -diff
	}
	if diff < 0 || diff > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: %s is %ds from now", ErrTimestamp, ts, now.Unix()-sec)
	}
	want := signature(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		b64, ok := strings.CutPrefix(s, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoMatchSignature
}
