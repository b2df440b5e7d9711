package gateway_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/gateway"
	"github.com/mseway/mseway/internal/testkit/natstest"
)

// The two deployments of docs/CLUSTER.md, run from the text of the page:
// the gateway configs of each compose file (and, for the second, the
// nats.conf of its NATS servers, with its permission list) are read from
// the page, checked as a user's would be, and run on loopback. Only what
// cannot be the same on one host changes: addresses, ports, host names,
// store directories. Docker itself is not run.

// clusterDoc is docs/CLUSTER.md split into its two deployments.
type clusterDoc struct {
	embedded, external map[string]string // gateway configs by service name
	natsConf           string
}

func readClusterDoc(t *testing.T) clusterDoc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "CLUSTER.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	one := strings.Index(text, "## Deployment 1")
	two := strings.Index(text, "## Deployment 2")
	end := strings.Index(text[two+1:], "\n## ")
	if one < 0 || two < one || end < 0 {
		t.Fatal("docs/CLUSTER.md: no \"## Deployment 1\" and \"## Deployment 2\" sections")
	}
	d := clusterDoc{embedded: gatewayConfigs(text[one:two]), external: gatewayConfigs(text[two : two+1+end])}
	conf := regexp.MustCompile("(?s)```conf\n(.*?)```").FindStringSubmatch(text[two:])
	if conf == nil {
		t.Fatal("docs/CLUSTER.md, Deployment 2: no ```conf block")
	}
	d.natsConf = conf[1]
	for name, set := range map[string]map[string]string{"Deployment 1": d.embedded, "Deployment 2": d.external} {
		if len(set) != 3 {
			t.Fatalf("docs/CLUSTER.md, %s: %d gateway configs, want 3", name, len(set))
		}
	}
	return d
}

// gatewayConfigs returns the inline configs of a compose file's
// "configs:" section ("  gw-a:\n    content: |\n      ..."), dedented.
func gatewayConfigs(section string) map[string]string {
	out := map[string]string{}
	lines := strings.Split(section, "\n")
	for i := 0; i < len(lines); i++ {
		m := regexp.MustCompile(`^  (gw-[a-z]):$`).FindStringSubmatch(lines[i])
		if m == nil || i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "content: |" {
			continue
		}
		var body []string
		for j := i + 2; j < len(lines) && (strings.HasPrefix(lines[j], "      ") || strings.TrimSpace(lines[j]) == ""); j++ {
			body = append(body, strings.TrimPrefix(lines[j], "      "))
		}
		out[m[1]] = strings.Join(body, "\n")
	}
	return out
}

// onLoopback adapts a documented gateway config to this host: its own HTTP
// port (and public_url), ICE on 127.0.0.1, no drain delay.
func onLoopback(t *testing.T, name, yaml string) *configs.Config {
	t.Helper()
	cfg, err := configs.Parse("docs/CLUSTER.md "+name, []byte(yaml))
	if err != nil {
		t.Fatalf("the documented config of %s: %v", name, err)
	}
	lb := loopbackConfig()
	cfg.Listen = freeAddr(t)
	cfg.WebRTC = lb.WebRTC
	cfg.DrainDelay = 0
	cfg.Cluster.PublicURL = "http://" + cfg.Listen
	return cfg
}

// TestDocumentedEmbeddedCluster runs Deployment 1: three gateways whose
// embedded NATS servers route to each other with the documented route
// credentials. A publish on gw-a plays on gw-c.
func TestDocumentedEmbeddedCluster(t *testing.T) {
	doc := readClusterDoc(t)
	routePort := map[string]int{}
	for name := range doc.embedded {
		routePort[name] = freePortNum(t)
	}
	var gws = map[string]*testGateway{}
	for _, name := range []string{"gw-a", "gw-b", "gw-c"} {
		cfg := onLoopback(t, name, doc.embedded[name])
		e := &cfg.Cluster.Embedded
		if !e.Enabled || e.RouteUser == "" || e.RoutePassword == "" {
			t.Fatalf("%s: the documented embedded server has no route credentials: %+v", name, *e)
		}
		e.Listen = "127.0.0.1:0"
		e.ClusterListen = fmt.Sprintf("127.0.0.1:%d", routePort[name])
		e.StoreDir = t.TempDir()
		for i, r := range e.Routes {
			u, err := url.Parse(r)
			if err != nil {
				t.Fatal(err)
			}
			peer := u.Hostname()
			if routePort[peer] == 0 {
				t.Fatalf("%s: route %s names no gateway of the page", name, r)
			}
			u.Host = fmt.Sprintf("127.0.0.1:%d", routePort[peer])
			e.Routes[i] = u.String()
		}
		gws[name] = startGatewayConfig(t, cfg, gateway.Options{LoopbackOnly: true})
	}
	checkDocumentedCluster(t, gws)
}

// TestDocumentedExternalCluster runs Deployment 2: three nats-servers from
// the page's nats.conf (its user and permission list) and three gateways
// connecting as that user. A publish on gw-a plays on gw-c, so the
// permissions cover the directory and the relay.
func TestDocumentedExternalCluster(t *testing.T) {
	doc := readClusterDoc(t)
	names := []string{"nats-1", "nats-2", "nats-3"}
	clientPort, routePort := map[string]int{}, map[string]int{}
	for _, n := range names {
		clientPort[n], routePort[n] = freePortNum(t), freePortNum(t)
	}
	var urls []string
	for _, n := range names {
		conf := doc.natsConf
		conf = strings.Replace(conf, "port: 4222", fmt.Sprintf("host: 127.0.0.1\nport: %d", clientPort[n]), 1)
		conf = strings.Replace(conf, "  port: 6222", fmt.Sprintf("  host: 127.0.0.1\n  port: %d", routePort[n]), 1)
		for _, peer := range names {
			conf = strings.ReplaceAll(conf, peer+":6222", fmt.Sprintf("127.0.0.1:%d", routePort[peer]))
		}
		path := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("the documented nats.conf: %v", err)
		}
		// What the page's command line adds: --name, -js, --store_dir.
		opts.ServerName, opts.JetStream, opts.StoreDir = n, true, t.TempDir()
		s := natstest.Start(t, *opts)
		urls = append(urls, s.ClientURL())
	}
	gws := map[string]*testGateway{}
	for _, name := range []string{"gw-a", "gw-b", "gw-c"} {
		cfg := onLoopback(t, name, doc.external[name])
		if cfg.Cluster.User == "" || cfg.Cluster.Password == "" || len(cfg.Cluster.NATSURLs) != 3 {
			t.Fatalf("%s: the documented config does not connect as a NATS user to three servers: %+v", name, cfg.Cluster)
		}
		cfg.Cluster.NATSURLs = urls
		gws[name] = startGatewayConfig(t, cfg, gateway.Options{LoopbackOnly: true})
	}
	checkDocumentedCluster(t, gws)
}

// checkDocumentedCluster publishes on gw-a with the documented publish
// token and watches on gw-c, once the directory has formed.
func checkDocumentedCluster(t *testing.T, gws map[string]*testGateway) {
	t.Helper()
	a, c := gws["gw-a"], gws["gw-c"]
	waitFor(t, "gw-c lists three nodes", 90*time.Second, func() bool {
		var nodes []struct{ ID string }
		getJSON(t, c.base+"/api/nodes?stream=documented", &nodes) // viewing is open there
		return len(nodes) == 3
	})
	video, audio := testMedia(t)
	publish(t, a, "documented", video, audio)
	v := watch(t, c, "documented")
	_, init := v.expectInit(60 * time.Second)
	segs, _ := v.collect(2 * time.Second)
	if n := checkPlayable(t, "a stream of gw-a on gw-c", init, segs); n < 20 {
		t.Fatalf("%d video samples in 2 s", n)
	}
}
