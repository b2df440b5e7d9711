package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/internal/testkit/apitest"
)

// dashboardExprs reads configs/grafana/mseway.json and returns every PromQL
// expression of its panels and variables, failing on what would keep
// Grafana from provisioning it.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "configs/grafana/mseway.json"))
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		ID      int      `json:"id"`
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("mseway.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 || len(d.Panels) == 0 {
		t.Fatalf("mseway.json: uid %q, title %q, schemaVersion %d, %d panels", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	var exprs []string
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q: an empty expr", p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				exprs = append(exprs, s)
			}
		}
	}
	return exprs
}

var (
	promBraces   = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promStrings  = regexp.MustCompile(`"[^"]*"`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// promKeywords are the PromQL words that are neither functions (followed
// by a parenthesis) nor metric names.
var promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "le": true, "instance": true}

// promMetricNames pulls the metric names out of a PromQL expression (and
// out of a Grafana label_values(metric, label) query).
func promMetricNames(expr string) []string {
	e := promStrings.ReplaceAllString(expr, "")
	e = promBraces.ReplaceAllString(e, "")
	e = promRanges.ReplaceAllString(e, "")
	e = promGrouping.ReplaceAllString(e, "")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " ")
		if promKeywords[id] || strings.HasPrefix(rest, "(") || (loc[0] > 0 && e[loc[0]-1] == '$') {
			continue // a keyword, a function, a Grafana variable
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // the exponent or unit of a number
		}
		names = append(names, id)
	}
	return names
}

func TestPromMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.95, sum by (le) (rate(gateway_viewer_ttff_seconds_bucket{instance=~"$instance"}[$__rate_interval])))`: {"gateway_viewer_ttff_seconds_bucket"},
		`8 * sum by (dir) (rate(gateway_relay_bytes_total{instance=~"$instance"}[5m])) / on (instance) go_goroutines`:               {"gateway_relay_bytes_total", "go_goroutines"},
		`label_values(gateway_viewers, instance)`: {"gateway_viewers"},
		`topk(20, gateway_stream_viewers)`:        {"gateway_stream_viewers"},
	} {
		if got := promMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", expr, got, want)
		}
	}
}

// TestGrafanaDashboard: every metric a query of the dashboard names is
// exported by real gateways (two nodes of a cluster, a webhook receiver),
// scraped after a real publish on one and watches on both; and the
// provisioning files point Grafana at it.
func TestGrafanaDashboard(t *testing.T) {
	exprs := dashboardExprs(t)
	var prov struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "configs/grafana/provisioning/dashboards/mseway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &prov); err != nil || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Fatalf("provisioning/dashboards/mseway.yaml: %v %+v", err, prov)
	}

	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hooks.Close()
	nats := startNATS(t)
	withHook := func(c *configs.Config) {
		c.Webhooks = []configs.Webhook{{URL: hooks.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
		c.Auth.PublishToken, c.Auth.PublicView = "pub-token-0123456789", true
	}
	a := clusterNode(t, nats, "node-a", withHook)
	b := clusterNode(t, nats, "node-b", withHook)
	video, audio := testMedia(t)
	publish(t, a, "dash", video, audio)
	for _, n := range []*testGateway{a, b} { // a refusal, counted by the refusal metrics
		if r := apitest.Do(t, testHTTP, "POST", n.base+"/whip/dash2", "application/sdp", "v=0", bearer("wrong")); r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
			t.Fatalf("a publish with a wrong token: %d", r.Status)
		}
	}
	for _, n := range []*testGateway{a, b} {
		v := watch(t, n, "dash")
		v.expectInit(20 * time.Second)
		v.collect(1 * time.Second)
		if err := v.c.SendText(`{"type":"stats","latency":0.5,"buffered":0.4,"decodedFrames":30,"droppedFrames":1}`); err != nil {
			t.Fatal(err)
		}
		v.collect(500 * time.Millisecond)
	}
	named := map[string]bool{}
	for _, e := range exprs {
		names := promMetricNames(e)
		if len(names) == 0 {
			t.Errorf("no metric in %q", e)
		}
		for _, name := range names {
			named[name] = true
		}
	}
	// Some series come with the first measurement: the publisher's jitter
	// with the first receiver report (1 s), its round-trip time with the
	// first ICE check answered.
	exported := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, n := range []*testGateway{a, b} {
			series, _ := scrape(t, n.base+"/metrics", bearer(n.token))
			for s := range series {
				name, _, _ := strings.Cut(s, "{")
				exported[name] = true
			}
		}
		missing := 0
		for name := range named {
			if !exported[name] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, e := range exprs {
		for _, name := range promMetricNames(e) {
			if !exported[name] {
				t.Errorf("the dashboard queries %s, which the gateway does not export (%s)", name, e)
			}
		}
	}
	t.Logf("%d queries over %d metrics, all exported", len(exprs), len(named))
}
