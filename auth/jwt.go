package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mseway/mseway/httpapi"
)

// Grants are the rights a JWT carries in its "mseway" claim. A pattern is a
// stream name in which '*' matches any run of characters (see Match).
type Grants struct {
	Publish []string `json:"publish,omitempty"`
	View    []string `json:"view,omitempty"`
	Admin   bool     `json:"admin,omitempty"`
}

// Allows reports whether g grants action on stream (stream is ignored for
// Admin). A nil Grants allows nothing.
func (g *Grants) Allows(action Action, stream string) bool {
	if g == nil {
		return false
	}
	var patterns []string
	switch action {
	case Admin:
		return g.Admin
	case Publish:
		patterns = g.Publish
	case View:
		patterns = g.View
	default:
		return false
	}
	if stream == "" {
		return false
	}
	for i, p := range patterns {
		if i >= MaxPatterns {
			break
		}
		if Match(p, stream) {
			return true
		}
	}
	return false
}

// Claims are the claims of a gateway JWT: the registered ones and the
// grants.
type Claims struct {
	jwt.RegisteredClaims
	Mseway *Grants `json:"mseway,omitempty"`
}

// Reasons a JWT is refused (the 401 message is "invalid token: <reason>").
const (
	reasonMalformed    = "malformed"
	reasonTooLong      = "too long"
	reasonAlg          = "algorithm not accepted"
	reasonUnknownKey   = "signing key unknown"
	reasonBadSig       = "bad signature"
	reasonExpired      = "expired"
	reasonNotYetValid  = "not yet valid"
	reasonMissingExp   = "missing exp"
	reasonIssuer       = "wrong issuer"
	reasonAudience     = "wrong audience"
	reasonInvalid      = "invalid claims"
	reasonUnknownToken = "not a token of this gateway"
)

func invalidToken(reason string) error {
	return httpapi.Errorf(http.StatusUnauthorized, "invalid token: "+reason)
}

// Errors of the key lookup; they become the reasons above.
var (
	errUnknownKey = errors.New("signing key unknown")
	errAlg        = errors.New("algorithm not accepted")
	errMalformed  = errors.New("malformed")
)

// HMAC and JWKS algorithms accepted.
var (
	hmacAlgs = []string{"HS256"}
	jwksAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

func (a *Authorizer) newParser() *jwt.Parser {
	var methods []string
	if len(a.cfg.JWT.HS256) > 0 {
		methods = append(methods, hmacAlgs...)
	}
	if a.cfg.JWT.JWKSURL != "" {
		methods = append(methods, jwksAlgs...)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(a.cfg.JWT.Leeway),
		jwt.WithTimeFunc(a.now),
	}
	if a.cfg.JWT.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.cfg.JWT.Issuer))
	}
	if a.cfg.JWT.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.cfg.JWT.Audience))
	}
	return jwt.NewParser(opts...)
}

// parseJWT verifies tok and returns its claims, or a 401 *httpapi.Error
// with a short reason.
func (a *Authorizer) parseJWT(ctx context.Context, tok string) (*Claims, error) {
	if len(tok) > MaxTokenLen {
		return nil, invalidToken(reasonTooLong)
	}
	claims := &Claims{}
	t, err := a.parser.ParseWithClaims(tok, claims, a.keyfunc(ctx))
	if err != nil {
		return nil, invalidToken(a.reason(t, claims, err))
	}
	if !t.Valid {
		return nil, invalidToken(reasonInvalid)
	}
	if g := claims.Mseway; g != nil && (len(g.Publish) > MaxPatterns || len(g.View) > MaxPatterns) {
		return nil, invalidToken(reasonMalformed)
	}
	return claims, nil
}

// reason turns a jwt error into a short reason.
func (a *Authorizer) reason(t *jwt.Token, claims *Claims, err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, errMalformed):
		return reasonMalformed
	case errors.Is(err, errUnknownKey):
		return reasonUnknownKey
	case errors.Is(err, errAlg):
		return reasonAlg
	case t == nil || t.Method == nil:
		// No (known) alg in the header.
		if t != nil {
			if _, ok := t.Header["alg"].(string); ok {
				return reasonAlg
			}
		}
		return reasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if !slices.Contains(a.validMethods(), t.Method.Alg()) {
			return reasonAlg
		}
		return reasonBadSig
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return reasonUnknownKey
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reasonNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case claims.ExpiresAt == nil:
			return reasonMissingExp
		case a.cfg.JWT.Issuer != "" && claims.Issuer == "":
			return reasonIssuer
		default:
			return reasonAudience
		}
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reasonAudience
	case errors.Is(err, jwt.ErrInvalidType):
		return reasonMalformed
	}
	return reasonInvalid
}

func (a *Authorizer) validMethods() []string {
	var m []string
	if len(a.hmac) > 0 {
		m = append(m, hmacAlgs...)
	}
	if a.jwks != nil {
		m = append(m, jwksAlgs...)
	}
	return m
}

// keyfunc picks the verification key(s) of a token. HS256 only ever gets
// the configured secrets (so a JWKS public key can never be an HMAC
// secret); every other accepted algorithm only gets JWKS keys of the
// matching type.
func (a *Authorizer) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		kidv, hasKID := t.Header["kid"]
		kid, ok := kidv.(string)
		if hasKID && !ok {
			return nil, errMalformed
		}
		if alg == "HS256" {
			if len(a.hmac) == 0 {
				return nil, errAlg
			}
			if hasKID {
				for _, k := range a.hmac {
					if k.KID == kid {
						return []byte(k.Secret), nil
					}
				}
				return nil, errUnknownKey
			}
			keys := make([]jwt.VerificationKey, 0, len(a.hmac))
			for _, k := range a.hmac {
				keys = append(keys, []byte(k.Secret))
			}
			return jwt.VerificationKeySet{Keys: keys}, nil
		}
		if a.jwks == nil || !slices.Contains(jwksAlgs, alg) {
			return nil, errAlg
		}
		return a.jwks.key(ctx, t, alg, kid, hasKID)
	}
}

// grantErr is nil when the verified claims grant req, else a 403 naming the
// action and the stream.
func grantErr(c *Claims, req Request) error {
	if c.Mseway.Allows(req.Action, req.Stream) {
		return nil
	}
	if req.Action == Admin {
		return httpapi.Errorf(http.StatusForbidden, "this token may not admin")
	}
	return httpapi.Errorf(http.StatusForbidden, "this token may not "+string(req.Action)+" stream "+quote(req.Stream))
}

// quote quotes a stream name for a message; stream names are validated by
// callers, but a message stays printable whatever it gets.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			c = '?'
		}
		b = append(b, c)
	}
	return string(append(b, '"'))
}
