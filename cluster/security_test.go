package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mseway/mseway/internal/testkit/logbuf"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/natstest"
	"github.com/mseway/mseway/internal/testkit/testcert"
)

// writeCert makes a CA and a loopback certificate (server and client auth)
// in a new directory.
func writeCert(t *testing.T) *testcert.Cert {
	t.Helper()
	c, err := testcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serverTLS(t *testing.T, c *testcert.Cert, verify bool) *tls.Config {
	t.Helper()
	o := &server.TLSConfigOpts{CertFile: c.CertFile, KeyFile: c.KeyFile}
	if verify {
		o.CaFile, o.Verify = c.CAFile, true
	}
	tc, err := server.GenTLSConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkAccess starts a node with good, which must join the directory, and
// a node with each of bad, which must stay out as with a wrong password:
// unhealthy, its directory unavailable, still retrying.
func checkAccess(t *testing.T, wantTLS bool, good configs.Cluster, bad ...configs.Cluster) {
	t.Helper()
	a := startNode(t, good, Options{})
	var bs []*Node
	for _, cfg := range bad {
		bs = append(bs, startNode(t, cfg, Options{}))
	}
	waitHealthy(t, 10*time.Second, a)
	announceEventually(t, a, "cam", StreamInfo{})
	if _, err := a.nc.TLSConnectionState(); (err == nil) != wantTLS {
		t.Fatalf("the good node's connection: TLS %v, want %v", err == nil, wantTLS)
	}
	time.Sleep(time.Second) // a few reconnection attempts
	for _, b := range bs {
		if b.Healthy() {
			t.Fatalf("%s healthy", b.ID())
		}
		if err := b.Announce("cam2", StreamInfo{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s announces: %v, want ErrUnavailable", b.ID(), err)
		}
		if b.nc.IsClosed() {
			t.Fatalf("%s gave up reconnecting", b.ID())
		}
		if slices.Contains(nodeIDs(a), b.ID()) {
			t.Fatalf("%s is in the directory", b.ID())
		}
	}
}

// Each way of securing an external NATS server that the config offers,
// against a real server secured that way; the wrong credentials or CA
// leave the node out.
func TestNATSSecurity(t *testing.T) {
	t.Run("tls_ca", func(t *testing.T) {
		t.Parallel()
		certA, certB := writeCert(t), writeCert(t)
		s := natstest.Start(t, server.Options{JetStream: true, TLS: true, TLSConfig: serverTLS(t, certA, false), TLSTimeout: 2})
		good := testConfig("good", s.ClientURL())
		good.TLSCA = certA.CAFile
		wrongCA := testConfig("wrong-ca", s.ClientURL())
		wrongCA.TLSCA = certB.CAFile
		noCA := testConfig("no-ca", s.ClientURL()) // the system's roots
		checkAccess(t, true, good, wrongCA, noCA)
	})
	t.Run("mutual TLS", func(t *testing.T) {
		t.Parallel()
		certA, certB := writeCert(t), writeCert(t)
		s := natstest.Start(t, server.Options{JetStream: true, TLS: true, TLSVerify: true, TLSConfig: serverTLS(t, certA, true), TLSTimeout: 2})
		good := testConfig("good", s.ClientURL())
		good.TLSCA, good.TLSCert, good.TLSKey = certA.CAFile, certA.CertFile, certA.KeyFile
		noCert := testConfig("no-cert", s.ClientURL())
		noCert.TLSCA = certA.CAFile
		otherCA := testConfig("other-ca-cert", s.ClientURL()) // a client certificate the server does not trust
		otherCA.TLSCA, otherCA.TLSCert, otherCA.TLSKey = certA.CAFile, certB.CertFile, certB.KeyFile
		checkAccess(t, true, good, noCert, otherCA)
	})
	t.Run("token", func(t *testing.T) {
		t.Parallel()
		s := natstest.Start(t, server.Options{JetStream: true, Authorization: "t0ken-s3cret"})
		good := testConfig("good", s.ClientURL())
		good.Token = "t0ken-s3cret"
		wrong := testConfig("wrong", s.ClientURL())
		wrong.Token = "t0ken-wrong"
		none := testConfig("none", s.ClientURL())
		checkAccess(t, false, good, wrong, none)
	})
	t.Run("nkey_file", func(t *testing.T) {
		t.Parallel()
		seed := func() (string, string) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := kp.PublicKey()
			sd, _ := kp.Seed()
			return pub, writeFile(t, "user.nk", sd)
		}
		pub, file := seed()
		_, otherFile := seed()
		s := natstest.Start(t, server.Options{JetStream: true, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
		good := testConfig("good", s.ClientURL())
		good.NKeyFile = file
		other := testConfig("other-key", s.ClientURL())
		other.NKeyFile = otherFile
		checkAccess(t, false, good, other)
	})
	t.Run("creds_file", func(t *testing.T) {
		t.Parallel()
		op := newOperator(t)
		acc := op.account(t, "mseway", true, true)
		stranger := op.account(t, "stranger", true, false) // signed by the operator, unknown to the resolver
		noJS := op.account(t, "no-jetstream", false, true)
		s := natstest.Start(t, op.options())
		good := testConfig("good", s.ClientURL())
		good.CredsFile = acc.creds(t)
		other := testConfig("unknown-account", s.ClientURL())
		other.CredsFile = stranger.creds(t)
		// Connected, but the account has no JetStream: no directory.
		withoutJS := testConfig("no-jetstream", s.ClientURL())
		withoutJS.CredsFile = noJS.creds(t)
		checkAccess(t, false, good, other, withoutJS)
	})
}

// operator is an operator key with its JWT, its system account and a
// memory resolver of its accounts, for a server in operator mode.
type operator struct {
	kp       nkeys.KeyPair
	claims   *jwt.OperatorClaims
	system   string // the system account's public key
	resolver *server.MemAccResolver
}

type account struct{ kp nkeys.KeyPair }

func newOperator(t *testing.T) *operator {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	o := &operator{kp: kp, resolver: &server.MemAccResolver{}}
	sys := o.account(t, "SYS", false, true)
	o.system, _ = sys.kp.PublicKey()
	oc := jwt.NewOperatorClaims(pub)
	oc.Name, oc.SystemAccount = "mseway-test", o.system
	tok, err := oc.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	if o.claims, err = jwt.DecodeOperatorClaims(tok); err != nil {
		t.Fatal(err)
	}
	return o
}

// options are a server's in operator mode.
func (o *operator) options() server.Options {
	return server.Options{JetStream: true, TrustedOperators: []*jwt.OperatorClaims{o.claims}, SystemAccount: o.system, AccountResolver: o.resolver}
}

// account makes an account signed by the operator, with JetStream when
// asked, in the resolver when stored.
func (o *operator) account(t *testing.T, name string, js, stored bool) account {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if js {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	tok, err := ac.Encode(o.kp)
	if err != nil {
		t.Fatal(err)
	}
	if stored {
		if err := o.resolver.Store(pub, tok); err != nil {
			t.Fatal(err)
		}
	}
	return account{kp: kp}
}

// creds writes a creds file of a new user of the account.
func (a account) creds(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	tok, err := jwt.NewUserClaims(pub).Encode(a.kp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	b, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", b)
}

// startErr starts a node that must not start, and returns its error.
func startErr(t *testing.T, cfg configs.Cluster) error {
	t.Helper()
	n, err := Start(context.Background(), cfg, Options{Logger: testLogger(t)})
	if err == nil {
		_ = n.Close(context.Background())
		t.Fatalf("%s started", cfg.NodeID)
	}
	return err
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q should name %q", err, p)
		}
	}
}

// The embedded server's client port requires the node's own credentials,
// and is not opened beyond loopback without them.
func TestEmbeddedClientAuth(t *testing.T) {
	open := testConfig("open")
	open.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "0.0.0.0:0"}
	wantErr(t, startErr(t, open), "cluster.embedded.listen", "cluster.user", "cluster.token")

	t.Run("user", func(t *testing.T) {
		cfgA := testConfig("a")
		cfgA.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "127.0.0.1:0"}
		cfgA.User, cfgA.Password = "gw", "s3cret-pw"
		a := startNode(t, cfgA, Options{})
		good := testConfig("good", a.emb.clients)
		good.User, good.Password = "gw", "s3cret-pw"
		wrong := testConfig("wrong", a.emb.clients)
		wrong.User, wrong.Password = "gw", "wrong"
		checkAccess(t, false, good, wrong)
		waitHealthy(t, 10*time.Second, a)
		if _, err := nats.Connect(a.emb.clients); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("a client without credentials: %v, want an authorization error", err)
		}
	})
	t.Run("token", func(t *testing.T) {
		cfgA := testConfig("a")
		cfgA.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "0.0.0.0:0"} // allowed with credentials
		cfgA.Token = "t0ken-s3cret"
		a := startNode(t, cfgA, Options{})
		waitHealthy(t, 10*time.Second, a)
		if _, err := nats.Connect(a.emb.clients); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("a client without the token: %v, want an authorization error", err)
		}
		nc, err := nats.Connect(a.emb.clients, nats.Token("t0ken-s3cret"))
		if err != nil {
			t.Fatalf("a client with the token: %v", err)
		}
		nc.Close()
	})
}

// The route port is not opened beyond loopback without route credentials,
// unless insecure_routes says so.
func TestEmbeddedOpenRoutes(t *testing.T) {
	cfg := testConfig("a")
	cfg.Embedded = configs.EmbeddedNATS{Enabled: true, Listen: "127.0.0.1:0", ClusterListen: "0.0.0.0:0", Routes: []string{fmt.Sprintf("nats-route://127.0.0.1:%d", freePort(t))}}
	wantErr(t, startErr(t, cfg), "cluster.embedded.cluster_listen", "route_user", "route_password", "insecure_routes")
	cfg.Embedded.RouteUser = "r"
	wantErr(t, startErr(t, cfg), "route_user and cluster.embedded.route_password")
	cfg.Embedded.RouteUser, cfg.Embedded.InsecureRoutes = "", true
	a := startNode(t, cfg, Options{})
	if a.emb == nil {
		t.Fatal("no embedded server")
	}
}

// syncBuffer is a log sink for several goroutines (internal/testkit/logbuf).
type syncBuffer = logbuf.Buffer

// Three embedded servers with route authentication form a cluster (one
// with the credentials in its route URLs, two with them put in by the
// node); a fourth with the wrong route password is refused, and a fifth with
// none. No log line shows a password. (Every server of the cluster must
// require the route credentials: one that does not lets any server in, and
// the others then route to that server too.)
func TestEmbeddedClusterRouteAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-server JetStream cluster takes seconds to form")
	}
	const user, pass, wrongPass = "mseway-route", "route-s3cret-PW", "route-wr0ng-PW"
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})

	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports[:3] {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var nodes []*Node
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		cfg := testConfig(id)
		cfg.Embedded = configs.EmbeddedNATS{
			Enabled: true, Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes: routes, StoreDir: t.TempDir(), RouteUser: user, RoutePassword: pass,
		}
		switch id {
		case "c": // credentials in the URLs too: kept as they are
			cfg.Embedded.Routes = nil
			for _, p := range ports[:3] {
				cfg.Embedded.Routes = append(cfg.Embedded.Routes, fmt.Sprintf("nats-route://%s:%s@127.0.0.1:%d", user, pass, p))
			}
		case "d":
			cfg.Embedded.RoutePassword = wrongPass
		case "e":
			cfg.Embedded.RouteUser, cfg.Embedded.RoutePassword = "", ""
		}
		nodes = append(nodes, startNode(t, cfg, Options{Logger: logger}))
		if id == "c" {
			a, b, c := nodes[0], nodes[1], nodes[2]
			waitHealthy(t, 60*time.Second, a, b, c)
		}
	}
	a, b, c, d, e := nodes[0], nodes[1], nodes[2], nodes[3], nodes[4]
	announceEventually(t, a, "cam", StreamInfo{})
	for _, n := range []*Node{a, b, c} {
		eventually(t, 10*time.Second, n.ID()+" sees cam and a, b, c", func() bool {
			_, ok := n.Lookup("cam")
			return ok && slices.Equal(nodeIDs(n), []string{"a", "b", "c"})
		})
		if n.emb.srv.NumRoutes() == 0 {
			t.Fatalf("%s's server has no route", n.ID())
		}
	}
	time.Sleep(2 * time.Second) // route attempts of d and e
	// d and e may route to each other (e asks no password), not to a, b, c.
	for _, n := range []*Node{d, e} {
		if peers := routePeers(t, n); slices.ContainsFunc(peers, func(p string) bool { return p == "a" || p == "b" || p == "c" }) {
			t.Fatalf("%s's server routes to %v", n.ID(), peers)
		}
		if _, ok := n.Lookup("cam"); ok || n.Healthy() {
			t.Fatalf("%s joined the directory", n.ID())
		}
	}
	for i, n := range []*Node{a, b, c} {
		want := slices.Delete([]string{"a", "b", "c"}, i, i+1)
		if peers := routePeers(t, n); !slices.Equal(peers, want) {
			t.Fatalf("%s's server routes to %v, want %v", n.ID(), peers, want)
		}
		if ids := nodeIDs(n); !slices.Equal(ids, []string{"a", "b", "c"}) {
			t.Fatalf("%s's nodes: %v", n.ID(), ids)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "nats-server") {
		t.Fatal("no log of the servers captured")
	}
	for _, secret := range []string{pass, wrongPass} {
		if strings.Contains(out, secret) {
			t.Fatalf("a route password is in the log")
		}
	}
}

// routePeers are the names of the servers n's embedded server has routes
// to, sorted, once each.
func routePeers(t *testing.T, n *Node) []string {
	t.Helper()
	rz, err := n.emb.srv.Routez(&server.RoutezOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	for _, r := range rz.Routes {
		peers = append(peers, r.RemoteName)
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// Embedded servers with TLS: clients need the CA, routes are mutual TLS
// against the CA, and a server with a certificate of another CA, or none,
// does not join even with the right route password.
func TestEmbeddedTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("a JetStream cluster takes seconds to form")
	}
	grace := replicasGrace
	replicasGrace = 0
	t.Cleanup(func() { replicasGrace = grace })
	certA, certB := writeCert(t), writeCert(t)
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t)}
	routes := []string{fmt.Sprintf("nats-route://127.0.0.1:%d", ports[0]), fmt.Sprintf("nats-route://127.0.0.1:%d", ports[1])}
	var nodes []*Node
	for i, id := range []string{"a", "b", "other-ca", "no-tls"} {
		cfg := testConfig(id)
		cfg.Embedded = configs.EmbeddedNATS{
			Enabled: true, Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes: routes, StoreDir: t.TempDir(), RouteUser: "r", RoutePassword: "rp",
			TLSCert: certA.CertFile, TLSKey: certA.KeyFile, TLSCA: certA.CAFile,
		}
		switch id {
		case "other-ca":
			cfg.Embedded.TLSCert, cfg.Embedded.TLSKey, cfg.Embedded.TLSCA = certB.CertFile, certB.KeyFile, certB.CAFile
		case "no-tls":
			cfg.Embedded.TLSCert, cfg.Embedded.TLSKey, cfg.Embedded.TLSCA = "", "", ""
		}
		nodes = append(nodes, startNode(t, cfg, Options{}))
	}
	a, b, otherCA, noTLS := nodes[0], nodes[1], nodes[2], nodes[3]
	waitHealthy(t, 60*time.Second, a, b)
	if !strings.HasPrefix(a.emb.clients, "tls://") {
		t.Fatalf("a's client URL %s", a.emb.clients)
	}
	if _, err := a.nc.TLSConnectionState(); err != nil {
		t.Fatalf("a's connection to its server: %v", err)
	}
	announceEventually(t, a, "cam", StreamInfo{})
	eventually(t, 10*time.Second, "b sees cam and a, b", func() bool {
		_, ok := b.Lookup("cam")
		return ok && slices.Equal(nodeIDs(b), []string{"a", "b"})
	})
	// The client port: TLS, checked against the CA.
	if nc, err := nats.Connect(a.emb.clients); err == nil {
		nc.Close()
		t.Fatal("a client that does not trust the CA connected")
	}
	x := startNode(t, testConfig("x", a.emb.clients), Options{})
	time.Sleep(time.Second)
	if x.Healthy() {
		t.Fatal("a node without the CA joined")
	}
	cfgY := testConfig("y", a.emb.clients)
	cfgY.TLSCA = certA.CAFile
	y := startNode(t, cfgY, Options{})
	waitHealthy(t, 10*time.Second, y)

	if peers := routePeers(t, a); !slices.Equal(peers, []string{"b"}) {
		t.Fatalf("a's server routes to %v", peers)
	}
	// A route without a client certificate is refused at the handshake.
	if err := routeWithoutCert(ports[0]); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a route without a client certificate: %v, want a certificate error", err)
	}
	for _, n := range []*Node{otherCA, noTLS} {
		if peers := routePeers(t, n); len(peers) != 0 {
			t.Fatalf("%s's server routes to %v", n.ID(), peers)
		}
		if n.Healthy() {
			t.Fatalf("%s joined the directory", n.ID())
		}
	}
	if ids := nodeIDs(a); !slices.Equal(ids, []string{"a", "b", "y"}) {
		t.Fatalf("a's nodes: %v", ids)
	}
}

func TestRouteURLs(t *testing.T) {
	us, err := routeURLs(configs.EmbeddedNATS{
		Routes:    []string{"nats-route://gw-b:6222", "nats-route://own:pw@gw-c:6222"},
		RouteUser: "r", RoutePassword: "p@ss/word",
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := us[0].User.Password(); us[0].User.Username() != "r" || p != "p@ss/word" || us[0].Host != "gw-b:6222" {
		t.Fatalf("injected: %v", us[0].Redacted())
	}
	if p, _ := us[1].User.Password(); us[1].User.Username() != "own" || p != "pw" {
		t.Fatalf("kept: %v", us[1].Redacted())
	}
	us, _ = routeURLs(configs.EmbeddedNATS{Routes: []string{"nats-route://gw-b:6222"}})
	if us[0].User != nil {
		t.Fatal("a user without route credentials")
	}
}

func TestLogRedaction(t *testing.T) {
	var buf syncBuffer
	g := newNATSLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "p@ss/word", "", "t0ken")
	g.Noticef("route %s", "nats-route://r:p%40ss%2Fword@gw-b:6222")
	g.Errorf("connect to %v failed", "nats-route://u:other@gw-c:6222/x")
	g.Warnf("token %q and password %s", "t0ken", "p@ss/word")
	out := buf.String()
	for _, s := range []string{"p@ss", "p%40ss", "other", "t0ken"} {
		if strings.Contains(out, s) {
			t.Errorf("%q in the log:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "nats-route://redacted@gw-b:6222") || !strings.Contains(out, "nats-route://redacted@gw-c:6222/x") {
		t.Errorf("the redacted URLs are missing:\n%s", out)
	}
}

// routeWithoutCert opens a route to a TLS cluster port (the handshake
// comes first) with no client certificate, checking nothing of the
// server's: the error of the handshake or of the first read after it.
func routeWithoutCert(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // a test of the server's check
	if err := tc.Handshake(); err != nil {
		return err
	}
	_, err = tc.Read(make([]byte, 1))
	return err
}
