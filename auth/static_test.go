package auth

import (
	"context"
	"testing"

	"github.com/mseway/mseway/configs"
)

const (
	pubTok   = "publish-secret-0123456789"
	viewTok  = "view-secret-0123456789"
	adminTok = "admin-secret-0123456789"
	wrongTok = "not-a-configured-token"
)

// Every action with every kind of token, for each combination of static
// tokens: open actions, required tokens, the admin fallback to the publish
// token, wrong tokens and tokens for another action.
func TestStaticTokens(t *testing.T) {
	const open, static = ViaOpen, ViaStatic
	type want struct {
		status int
		via    string
	}
	allow := func(via string) want { return want{0, via} }
	deny := func(status int) want { return want{status, ""} }
	for _, c := range []struct {
		name string
		cfg  configs.Auth
		// wants by action, then by token: none, publish, view, admin, wrong.
		wants map[Action][5]want
	}{
		{
			name: "nothing configured",
			cfg:  configs.Auth{},
			wants: map[Action][5]want{
				Publish: {allow(open), allow(open), allow(open), allow(open), allow(open)},
				View:    {allow(open), allow(open), allow(open), allow(open), allow(open)},
				Admin:   {allow(open), allow(open), allow(open), allow(open), allow(open)},
			},
		},
		{
			name: "publish token only: it is the admin token too",
			cfg:  configs.Auth{PublishToken: pubTok},
			wants: map[Action][5]want{
				Publish: {deny(401), allow(static), deny(403), deny(403), deny(403)},
				View:    {allow(open), allow(open), allow(open), allow(open), allow(open)},
				Admin:   {deny(401), allow(static), deny(403), deny(403), deny(403)},
			},
		},
		{
			name: "publish and admin tokens: no fallback",
			cfg:  configs.Auth{PublishToken: pubTok, AdminToken: adminTok},
			wants: map[Action][5]want{
				Publish: {deny(401), allow(static), deny(403), deny(403), deny(403)},
				View:    {allow(open), allow(open), allow(open), allow(open), allow(open)},
				Admin:   {deny(401), deny(403), deny(403), allow(static), deny(403)},
			},
		},
		{
			name: "publish and view tokens",
			cfg:  configs.Auth{PublishToken: pubTok, ViewToken: viewTok},
			wants: map[Action][5]want{
				Publish: {deny(401), allow(static), deny(403), deny(403), deny(403)},
				View:    {deny(401), deny(403), allow(static), deny(403), deny(403)},
				Admin:   {deny(401), allow(static), deny(403), deny(403), deny(403)},
			},
		},
		{
			name: "view token only: publishing is open",
			cfg:  configs.Auth{ViewToken: viewTok},
			wants: map[Action][5]want{
				Publish: {allow(open), allow(open), allow(open), allow(open), allow(open)},
				View:    {deny(401), deny(403), allow(static), deny(403), deny(403)},
				Admin:   {deny(401), deny(403), deny(403), deny(403), deny(403)},
			},
		},
		{
			name: "admin token only",
			cfg:  configs.Auth{AdminToken: adminTok},
			wants: map[Action][5]want{
				Publish: {allow(open), allow(open), allow(open), allow(open), allow(open)},
				View:    {allow(open), allow(open), allow(open), allow(open), allow(open)},
				Admin:   {deny(401), deny(403), deny(403), allow(static), deny(403)},
			},
		},
		{
			name: "all three",
			cfg:  configs.Auth{PublishToken: pubTok, ViewToken: viewTok, AdminToken: adminTok},
			wants: map[Action][5]want{
				Publish: {deny(401), allow(static), deny(403), deny(403), deny(403)},
				View:    {deny(401), deny(403), allow(static), deny(403), deny(403)},
				Admin:   {deny(401), deny(403), deny(403), allow(static), deny(403)},
			},
		},
		{
			name: "public view with a publish token",
			cfg:  configs.Auth{PublishToken: pubTok, PublicView: true},
			wants: map[Action][5]want{
				Publish: {deny(401), allow(static), deny(403), deny(403), deny(403)},
				View:    {allow(open), allow(open), allow(open), allow(open), allow(open)},
				Admin:   {deny(401), allow(static), deny(403), deny(403), deny(403)},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAuth(t, c.cfg, Options{})
			for action, wants := range c.wants {
				for i, tok := range []string{"", pubTok, viewTok, adminTok, wrongTok} {
					stream := "cam-1"
					if action == Admin {
						stream = ""
					}
					req := Request{Action: action, Stream: stream, Token: tok, RemoteIP: "192.0.2.1", Protocol: "whip"}
					check(t, a, req, wants[i].status, wants[i].via)
				}
				if got, want := a.Open(action), wants[0].via == open; got != want {
					t.Errorf("Open(%s) = %v, want %v", action, got, want)
				}
			}
		})
	}
}

// The messages of the refusals (v1 wording for static tokens).
func TestStaticMessages(t *testing.T) {
	a := newAuth(t, configs.Auth{PublishToken: pubTok, ViewToken: viewTok}, Options{})
	expectMsg(t, a, Request{Action: Publish, Stream: "x"}, 401, "publish token required (Authorization: Bearer <token>, or ?token= on a WebSocket)")
	expectMsg(t, a, Request{Action: View, Stream: "x"}, 401, "view token required")
	expectMsg(t, a, Request{Action: Publish, Stream: "x", Token: wrongTok}, 403, "wrong publish token")
	expectMsg(t, a, Request{Action: View, Stream: "x", Token: pubTok + "x"}, 403, "wrong view token")
	expectMsg(t, a, Request{Action: Publish, Stream: "x", Token: viewTok}, 403, "this token may not publish")
	expectMsg(t, a, Request{Action: Admin, Token: viewTok}, 403, "this token may not admin")
	// A prefix of a token is not the token.
	expectMsg(t, a, Request{Action: Publish, Stream: "x", Token: pubTok[:len(pubTok)-1]}, 403, "wrong publish token")
	expectMsg(t, a, Request{Action: "delete", Stream: "x", Token: pubTok}, 403, "unknown action")
	if a.Open("delete") {
		t.Error("an unknown action is open")
	}
}

// One string configured as two tokens has both rights.
func TestStaticSameTokenTwice(t *testing.T) {
	a := newAuth(t, configs.Auth{PublishToken: pubTok, ViewToken: pubTok}, Options{})
	check(t, a, Request{Action: Publish, Stream: "a", Token: pubTok}, 0, ViaStatic)
	check(t, a, Request{Action: View, Stream: "a", Token: pubTok}, 0, ViaStatic)
}

// A nil Authorizer allows everything.
func TestNilAuthorizer(t *testing.T) {
	var a *Authorizer
	for _, action := range []Action{Publish, View, Admin} {
		d, err := a.Check(context.Background(), Request{Action: action, Stream: "x", Token: "whatever"})
		if err != nil || d != (Decision{Via: ViaOpen}) || !a.Open(action) {
			t.Errorf("%s on nil: %+v %v", action, d, err)
		}
	}
	a.Close()
}

// New refuses configs that cannot be used safely.
func TestNewRefusesUnsafeConfig(t *testing.T) {
	for name, cfg := range map[string]configs.Auth{
		"empty secret":  {JWT: configs.JWT{HS256: []configs.HMACKey{{Secret: ""}}}},
		"short secret":  {JWT: configs.JWT{HS256: []configs.HMACKey{{Secret: "short"}}}},
		"kid twice":     {JWT: configs.JWT{HS256: []configs.HMACKey{{Secret: secret1, KID: "a"}, {Secret: secret2, KID: "a"}}}},
		"jwks not http": {JWT: configs.JWT{JWKSURL: "file:///etc/passwd"}},
		"hook no host":  {HTTPHook: configs.HTTPHook{URL: "http://"}},
	} {
		if a, err := New(context.Background(), cfg, Options{}); err == nil {
			a.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}
