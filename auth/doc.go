// Package auth owns access control (PROTOCOL.md, "Access control"): it
// decides whether a request may publish a stream, view a stream or use the
// operator endpoints (admin), from the token the request presents and the
// auth section of the config.
//
// A token is one of the static tokens of the config (publish_token,
// view_token, admin_token), a JWT whose "mseway" claim grants the action
// (signed with a configured HS256 secret or a key of a JWKS URL), or
// whatever an HTTP hook says about it. Unprotected actions are open to
// anyone. Refusals are *httpapi.Error values (401 without a valid
// credential, 403 with a valid one lacking the right, 503 when the hook
// cannot be asked), ready for httpapi.Fail.
//
// Tokens never appear in anything this package logs or returns. The package
// is quiet: refusals are for the caller to log; only JWKS and hook failures
// are logged here, rate-limited.
package auth
