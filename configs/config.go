// Package configs owns the gateway configuration: its schema, the default
// config embedded in the binary (default.yaml), loading and validation.
package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole gateway configuration.
type Config struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLS holds the rest of the HTTPS settings: reloading tls_cert/tls_key,
	// the HTTP -> HTTPS redirect listener, automatic certificates (ACME).
	TLS      TLS    `yaml:"tls"`
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (slog's key=value lines) or json.
	LogFormat string `yaml:"log_format"`
	// DrainDelay is how long a stopping gateway keeps serving with /readyz
	// answering 503 before it sends viewers goaway and closes (a load
	// balancer's health check notices in that time).
	DrainDelay     time.Duration        `yaml:"drain_delay"`
	WebRTC         WebRTC               `yaml:"webrtc"`
	StreamDefaults Stream               `yaml:"stream_defaults"`
	Streams        map[string]Stream    `yaml:"-"`
	RawStreams     map[string]yaml.Node `yaml:"streams"`
	Auth           Auth                 `yaml:"auth"`
	Limits         Limits               `yaml:"limits"`
	// TrustedProxies are the CIDRs of reverse proxies whose X-Forwarded-For
	// and Forwarded headers are believed (for per-address limits and logs).
	TrustedProxies []string  `yaml:"trusted_proxies"`
	Webhooks       []Webhook `yaml:"webhooks"`
	Web            Web       `yaml:"web"`
	// Cluster joins several gateways into one namespace of streams over
	// NATS; off (a single node) when NATSURLs is empty and Embedded is off.
	Cluster Cluster `yaml:"cluster"`
	// Sources are local capture sources (devices or test patterns) published
	// straight into a stream of this gateway, by stream name.
	Sources    map[string]Source `yaml:"-"`
	RawSources yaml.Node         `yaml:"sources"`
	// Admin is the operator listener: off unless Admin.Listen is set.
	Admin Admin `yaml:"admin"`
	// Metrics shapes the Prometheus metrics of /metrics.
	Metrics Metrics `yaml:"metrics"`
	// Record says where and how recordings are kept; which streams are
	// recorded is stream_defaults.record and streams.NAME.record.
	Record Record `yaml:"record"`
}

// Record configures recordings (package record).
type Record struct {
	// Path is the file pattern: %stream, and the start time as %Y %m %d %H
	// %M %S %f (UTC; %f microseconds), each once.
	Path string `yaml:"path"`
	// SegmentDuration: a file is cut at the first keyframe this long after
	// it started (and at every new init).
	SegmentDuration time.Duration `yaml:"segment_duration"`
	// MaxAge deletes files that ended longer ago; 0 = kept.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes deletes the oldest files while all recordings take more; 0 =
	// no limit.
	MaxBytes int64 `yaml:"max_bytes"`
	// SyncInterval: how often a file being written is synced to disk.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// QueueBytes bounds what waits for the disk per stream; past it that
	// stream's recording stops (the disk does not keep up).
	QueueBytes int `yaml:"queue_bytes"`
	// Node, in a cluster, is the node that records (its cluster.node_id):
	// it follows every recorded stream of the other nodes and records it;
	// the others record nothing. Empty: each stream is recorded by the node
	// its publisher feeds.
	Node string `yaml:"node"`
}

// TLS holds the HTTPS settings beyond tls_cert and tls_key (which stay at
// the top level).
type TLS struct {
	// ReloadInterval is how often tls_cert and tls_key are looked at (their
	// modification time and size) and re-read when either changed; 0 = only
	// on SIGHUP.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// RedirectHTTP is the address of a plain-HTTP listener (e.g. ":80")
	// that answers every request with 308 to https on the same host and
	// path (and the ACME HTTP-01 challenges when ACMEDomains is set); empty
	// = none. It needs TLS on the main listener.
	RedirectHTTP string `yaml:"redirect_http"`
	// HTTPSPort is the port the redirects name; 0 = the main listener's
	// (left out of the URL when 443). Set it when clients reach the main
	// listener on another port (a port forward, 443 -> 8443).
	HTTPSPort int `yaml:"https_port"`
	// ACMEDomains turns on automatic certificates (ACME, with certmagic)
	// for these DNS names, instead of tls_cert/tls_key: obtained at start
	// and renewed before they expire, through the TLS-ALPN challenge on the
	// main listener and the HTTP-01 challenge on the redirect listener.
	// Setting it agrees to the CA's terms of service.
	ACMEDomains []string `yaml:"acme_domains"`
	// ACMEEmail is the ACME account's contact (expiry notices); optional.
	ACMEEmail string `yaml:"acme_email"`
	// ACMECA is the CA's directory URL; empty = Let's Encrypt production
	// (staging: https://acme-staging-v02.api.letsencrypt.org/directory).
	ACMECA string `yaml:"acme_ca"`
	// ACMECARoot is a PEM file of roots to trust for the CA's own https
	// (a private CA); empty = the system's.
	ACMECARoot string `yaml:"acme_ca_root"`
	// ACMEStorage is the directory of the account, keys and certificates;
	// empty = $XDG_DATA_HOME/mseway/acme, or ~/.local/share/mseway/acme.
	ACMEStorage string `yaml:"acme_storage"`
}

// TLSEnabled reports whether the main listener serves TLS: certificate
// files or automatic certificates.
func (c *Config) TLSEnabled() bool { return c.TLSCert != "" || len(c.TLS.ACMEDomains) > 0 }

// Admin is the operator listener: /metrics, /debug/pprof/ and /readyz,
// without access control (bind it to loopback or a private network).
type Admin struct {
	// Listen is its host:port, e.g. 127.0.0.1:9090; empty = off, and
	// /metrics stays on the main listener (for the admin grant).
	Listen string `yaml:"listen"`
}

// Metrics shapes the Prometheus metrics.
type Metrics struct {
	// PerStream adds series labelled by stream name for the live streams
	// (at most limits.max_streams of them).
	PerStream bool `yaml:"per_stream"`
}

// Source is a local capture source: a device or a test pattern captured,
// encoded (H.264 or VP9, and Opus) and published into the stream of its name without a
// WebRTC hop. Keys left out get the values of DefaultSource.
type Source struct {
	// Video: videotest, camera, screen, a device name/label from
	// `gateway capture -list`, or none. Audio: audiotest, microphone, a
	// device name/label, or none.
	Video string `yaml:"video"`
	Audio string `yaml:"audio"`
	// VideoCodec: h264 (openh264, or x264 with the x264 build tag) or vp9
	// (libvpx, needs the vpx build tag). Never vp8: the gateway does not
	// accept VP8.
	VideoCodec       string        `yaml:"video_codec"`
	Width            int           `yaml:"width"`
	Height           int           `yaml:"height"`
	FPS              int           `yaml:"fps"`
	VideoBitrate     int           `yaml:"video_bitrate"`
	AudioBitrate     int           `yaml:"audio_bitrate"`
	KeyframeInterval time.Duration `yaml:"keyframe_interval"`
	// OnDemand: capture only while someone watches (the stream is not live
	// until a viewer waits on it); stop Linger after the last viewer left.
	OnDemand bool          `yaml:"on_demand"`
	Linger   time.Duration `yaml:"linger"`
}

// DefaultSource holds the values of the keys a sources entry leaves out.
var DefaultSource = Source{
	Video: "videotest", Audio: "audiotest", VideoCodec: "h264", Width: 640, Height: 480, FPS: 30,
	VideoBitrate: 1_000_000, AudioBitrate: 64_000, KeyframeInterval: 2 * time.Second,
	OnDemand: false, Linger: 10 * time.Second,
}

// WebRTC holds the ICE and transport settings of the Pion API.
type WebRTC struct {
	UDPPort         int      `yaml:"udp_port"`
	UDPAddress      string   `yaml:"udp_address"`
	NAT1To1IPs      []string `yaml:"nat_1to1_ips"`
	IncludeLoopback bool     `yaml:"include_loopback"`
	// DenyRemoteNetworks are CIDRs (or "private": every private,
	// link-local, loopback and shared range) that publishers' ICE
	// candidates may not name; a public node sets "private".
	DenyRemoteNetworks  []string      `yaml:"deny_remote_networks"`
	ICEServers          []ICEServer   `yaml:"ice_servers"`
	DisconnectedTimeout time.Duration `yaml:"disconnected_timeout"`
	FailedTimeout       time.Duration `yaml:"failed_timeout"`
}

// PrivateNetworks are the ranges "private" stands for in
// webrtc.deny_remote_networks: RFC 1918, shared address space (RFC 6598),
// loopback, link-local, and IPv6 unique-local, link-local and loopback.
var PrivateNetworks = []string{
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"fc00::/7", "fe80::/10", "::1/128",
}

// DenyRemote parses deny_remote_networks.
func (w WebRTC) DenyRemote() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range w.DenyRemoteNetworks {
		if s == "private" {
			for _, p := range PrivateNetworks {
				out = append(out, netip.MustParsePrefix(p))
			}
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("webrtc.deny_remote_networks[%d]: %w (or \"private\")", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ICEServer is one STUN or TURN server.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
	// Secret makes the credentials time-limited ("TURN REST API", coturn's
	// use-auth-secret): each publisher gets username "<expiry>:<stream>" and
	// credential base64(HMAC-SHA1(secret, username)), valid for TTL. Such a
	// server is advertised to publishers only, not used by the gateway.
	Secret string        `yaml:"secret"`
	TTL    time.Duration `yaml:"ttl"`
}

// Stream holds the settings of one stream (or the defaults of all).
type Stream struct {
	GOPCache            bool          `yaml:"gop_cache"`
	GOPCacheMaxBytes    int           `yaml:"gop_cache_max_bytes"`
	KeyframeInterval    time.Duration `yaml:"keyframe_interval"`
	ViewerQueueMessages int           `yaml:"viewer_queue_messages"`
	ViewerQueueBytes    int           `yaml:"viewer_queue_bytes"`
	ViewerMaxSkips      int           `yaml:"viewer_max_skips"`
	AllowTakeover       bool          `yaml:"allow_takeover"`
	WaitForPublisher    bool          `yaml:"wait_for_publisher"`
	// Record keeps the stream in files while it is published here (not on
	// a node that relays it from another).
	Record bool `yaml:"record"`
}

// Auth says who may publish, view and administer (PROTOCOL.md, "Access
// control"). With nothing set the gateway is open to anyone.
type Auth struct {
	// Static tokens: the publish token grants publishing every stream (and
	// admin when no admin token is set), the view token viewing every stream.
	PublishToken string `yaml:"publish_token"`
	ViewToken    string `yaml:"view_token"`
	AdminToken   string `yaml:"admin_token"`
	// PublicView lets anyone view, even when JWTs or the hook protect
	// publishing.
	PublicView bool     `yaml:"public_view"`
	JWT        JWT      `yaml:"jwt"`
	HTTPHook   HTTPHook `yaml:"http_hook"`
	// AllowedOrigins, when set, are the only browser origins
	// (scheme://host[:port]) whose WebSocket upgrades and CORS requests are
	// answered; the gateway's own origin is always allowed.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// JWT configures signed tokens with grants in the "mseway" claim.
type JWT struct {
	HS256 []HMACKey `yaml:"hs256"`
	// JWKSURL is fetched at start and every JWKSRefresh (RS256, ES256,
	// EdDSA keys); a token with an unknown kid refetches it, rate-limited.
	JWKSURL     string        `yaml:"jwks_url"`
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	Issuer      string        `yaml:"issuer"`
	Audience    string        `yaml:"audience"`
	// Leeway is the clock skew allowed on exp and nbf.
	Leeway time.Duration `yaml:"leeway"`
}

// HMACKey is one HS256 secret, named by kid (optional).
type HMACKey struct {
	Secret string `yaml:"secret"`
	KID    string `yaml:"kid"`
}

// HTTPHook asks an outside service whether a request is allowed.
type HTTPHook struct {
	URL      string        `yaml:"url"`
	Timeout  time.Duration `yaml:"timeout"`
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// Configured reports whether any credential is configured; without one
// the gateway is open to anyone.
func (a Auth) Configured() bool {
	return a.PublishToken != "" || a.ViewToken != "" || a.AdminToken != "" || a.JWT.Configured() || a.HTTPHook.URL != ""
}

// Configured reports whether JWTs are accepted.
func (j JWT) Configured() bool { return len(j.HS256) > 0 || j.JWKSURL != "" }

// Webhook is one receiver of signed event notifications (Standard Webhooks).
type Webhook struct {
	URL string `yaml:"url"`
	// Secret signs every delivery: "whsec_" + base64, or any string.
	Secret string `yaml:"secret"`
	// Events to send (publish.started, publish.ended, publish.takeover,
	// viewers.changed, auth.refused); empty or "*" = all.
	Events []string `yaml:"events"`
}

// Cluster configures the cluster over NATS (docs/CLUSTER.md).
type Cluster struct {
	// NATSURLs are the NATS servers to connect to (nats://, tls://).
	NATSURLs []string `yaml:"nats_urls"`
	// NodeID names this node (default: the host name); PublicURL is how
	// browsers reach it (https://node-a.example:8443), for goaway and the
	// directory.
	NodeID    string `yaml:"node_id"`
	PublicURL string `yaml:"public_url"`
	// Credentials, as nats.go takes them: a creds file (JWT + NKEY seed),
	// an NKEY seed file, a user/password or a token.
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	Token     string `yaml:"token"`
	// TLS to the NATS servers: a CA to trust, and a client certificate.
	TLSCA   string `yaml:"tls_ca"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Heartbeat is how often this node renews its directory entries;
	// entries of a node that stops are gone after TTL.
	Heartbeat time.Duration `yaml:"heartbeat"`
	TTL       time.Duration `yaml:"ttl"`
	// Embedded runs a NATS server with JetStream inside this gateway.
	Embedded EmbeddedNATS `yaml:"embedded"`
	// Relay tunes the media between nodes.
	Relay Relay `yaml:"relay"`
}

// Relay tunes the media relay between the nodes of a cluster (docs/CLUSTER.md,
// "Relay"). Give every node the same interest_period.
type Relay struct {
	// InterestPeriod: an edge says it wants a stream this often; an origin
	// stops relaying a stream nobody wanted for 3 periods.
	InterestPeriod time.Duration `yaml:"interest_period"`
	// SnapshotTimeout: an edge joining a stream asks the origin again for
	// the init and GOP when no answer came within it.
	SnapshotTimeout time.Duration `yaml:"snapshot_timeout"`
	// GOPBytes bounds the GOP an origin keeps per stream for joining edges.
	GOPBytes int `yaml:"gop_bytes"`
	// QueueBytes and QueueMessages bound an origin's publish queue per
	// stream (what does not fit is dropped: edges skip to a keyframe).
	QueueBytes    int `yaml:"queue_bytes"`
	QueueMessages int `yaml:"queue_messages"`
	// PendingBytes bounds the live messages an edge buffers per stream
	// while it waits for a snapshot.
	PendingBytes int `yaml:"pending_bytes"`
}

// EmbeddedNATS is an in-process NATS server for small clusters.
type EmbeddedNATS struct {
	Enabled bool `yaml:"enabled"`
	// Listen is the client port (other gateways may connect to it); Routes
	// are the peers' cluster ports (nats-route://host:6222), ClusterListen
	// this node's.
	Listen        string   `yaml:"listen"`
	ClusterListen string   `yaml:"cluster_listen"`
	Routes        []string `yaml:"routes"`
	// StoreDir holds JetStream's data (the directory bucket).
	StoreDir string `yaml:"store_dir"`
	// RouteUser and RoutePassword (both or neither) are required of the
	// peers' routes on the cluster port, and sent on this node's routes
	// (put into each route URL that has no user of its own).
	RouteUser     string `yaml:"route_user"`
	RoutePassword string `yaml:"route_password"`
	// InsecureRoutes allows a route port on a non-loopback address without
	// RouteUser/RoutePassword: for private networks only.
	InsecureRoutes bool `yaml:"insecure_routes"`
	// TLS of the client port and the routes: this server's certificate and
	// key, and the CA that routes' peers are checked against (mutual TLS).
	// All three or none.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	TLSCA   string `yaml:"tls_ca"`
}

// TLS reports whether the embedded server's ports use TLS.
func (e EmbeddedNATS) TLS() bool { return e.TLSCert != "" }

// RouteHost is the host the embedded server listens on for routes, and
// whether it listens for them at all: ClusterListen's host, or, when only
// Routes are set, Listen's host (nats-server then takes a random port).
func (e EmbeddedNATS) RouteHost() (string, bool) {
	hp := e.ClusterListen
	if hp == "" {
		if len(e.Routes) == 0 {
			return "", false
		}
		hp = e.Listen
	}
	h, _, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, true
	}
	return h, true
}

// IsLoopback reports whether a listen host only takes connections from this
// machine: localhost or a loopback IP. An empty host (every address) is not.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// RedactURL hides a URL's user information (user:password@), for logs and
// error messages; a string that does not parse is hidden whole when it has
// an @.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return "<redacted>"
		}
		return s
	}
	if u.User == nil {
		return s
	}
	u.User = url.User("redacted")
	return u.String()
}

// Enabled reports whether this node joins a cluster.
func (c Cluster) Enabled() bool { return len(c.NATSURLs) > 0 || c.Embedded.Enabled }

// Web configures the embedded browser UI.
type Web struct {
	// FrameAncestors are the origins that may embed the pages in a frame
	// (CSP frame-ancestors); default 'self'.
	FrameAncestors []string `yaml:"frame_ancestors"`
	// TestPages serves the measuring pages under /test/ (tests only).
	TestPages bool `yaml:"test_pages"`
}

// Limits bound what clients can make the gateway hold.
type Limits struct {
	MaxStreams          int `yaml:"max_streams"`
	MaxViewers          int `yaml:"max_viewers"`
	MaxViewersPerStream int `yaml:"max_viewers_per_stream"`
	// MaxViewersPerIP bounds the viewer sockets of one client address, so
	// that one client cannot take every viewer slot; 0 = no cap. Behind a
	// reverse proxy every viewer has the proxy's address.
	MaxViewersPerIP int `yaml:"max_viewers_per_ip"`
	MaxBodyBytes    int `yaml:"max_body_bytes"`
	// MaxConns bounds open client connections (0 = derived from the file
	// limit); MaxConnsPerIP those of one client address (0 = no cap; trusted
	// proxies are exempt).
	MaxConns      int `yaml:"max_conns"`
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
	// RequestsPerSecondPerIP and RequestBurstPerIP bound one address's
	// request rate (a token bucket); 0 = no limit.
	RequestsPerSecondPerIP float64 `yaml:"requests_per_second_per_ip"`
	RequestBurstPerIP      int     `yaml:"request_burst_per_ip"`
	// Publishes that are negotiated but not yet connected (ICE/DTLS), in
	// all and from one address. They hold no stream until they connect.
	MaxPendingPublishes      int `yaml:"max_pending_publishes"`
	MaxPendingPublishesPerIP int `yaml:"max_pending_publishes_per_ip"`
}

// StreamSettings returns the settings for the named stream.
func (c *Config) StreamSettings(name string) Stream {
	if s, ok := c.Streams[name]; ok {
		return s
	}
	return c.StreamDefaults
}

var streamNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidStreamName reports whether name is a valid stream name (PROTOCOL.md):
// 1-64 characters of [A-Za-z0-9._-], and not "." or ".." (in a URL path
// they name another resource: /whip/../ID is /ID).
func ValidStreamName(name string) bool {
	return streamNameRE.MatchString(name) && name != "." && name != ".."
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := parse("default.yaml", defaultYAML, nil)
	if err != nil {
		panic("embedded default config is invalid: " + err.Error())
	}
	return c
}

// Load reads the config file at path on top of the embedded defaults: keys the
// file leaves out keep their default values.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, data, Default())
}

// Parse parses config text (name is used in error messages) on top of the
// embedded defaults.
func Parse(name string, data []byte) (*Config, error) { return parse(name, data, Default()) }

func parse(name string, data []byte, base *Config) (*Config, error) {
	c := &Config{}
	if base != nil {
		*c = *base
		c.WebRTC.NAT1To1IPs = nil
		c.WebRTC.ICEServers = nil
		c.RawStreams = nil
		c.Streams = nil
		c.RawSources = yaml.Node{}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %s", name, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	c.Streams = make(map[string]Stream, len(c.RawStreams))
	for sname, node := range c.RawStreams {
		if !ValidStreamName(sname) {
			return nil, fmt.Errorf("config %s: streams.%s: invalid stream name (1-64 chars of [A-Za-z0-9._-])", name, sname)
		}
		s := c.StreamDefaults
		if err := decodeStrict(&node, &s); err != nil {
			return nil, fmt.Errorf("config %s: streams.%s: %s", name, sname, err)
		}
		c.Streams[sname] = s
	}
	if c.RawSources.Kind != 0 || base == nil {
		// A file that has a sources key replaces the default sources.
		sources := map[string]yaml.Node{}
		if c.RawSources.Kind != 0 {
			if err := decodeStrict(&c.RawSources, &sources); err != nil {
				return nil, fmt.Errorf("config %s: sources: %s", name, err)
			}
		}
		c.Sources = make(map[string]Source, len(sources))
		for sname, node := range sources {
			if !ValidStreamName(sname) {
				return nil, fmt.Errorf("config %s: sources.%s: invalid stream name (1-64 chars of [A-Za-z0-9._-])", name, sname)
			}
			s := DefaultSource
			if err := decodeStrict(&node, &s); err != nil {
				return nil, fmt.Errorf("config %s: sources.%s: %s", name, sname, err)
			}
			c.Sources[sname] = s
		}
	} else {
		c.Sources = maps.Clone(base.Sources)
	}
	c.RawSources = yaml.Node{}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return c, nil
}

// decodeStrict decodes a node rejecting unknown keys (yaml.Node.Decode does not
// honour KnownFields, so re-encode and decode strictly).
func decodeStrict(node *yaml.Node, out any) error {
	raw, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return nil
}

func (c *Config) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port: %w", c.Listen, err)
	}
	if a := c.Admin.Listen; a != "" {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("admin.listen: %q is not host:port: %w", a, err)
		}
		if _, lport, _ := net.SplitHostPort(c.Listen); port == lport && port != "0" {
			return fmt.Errorf("admin.listen: %q has the port of listen (%q): the admin listener needs a port of its own", a, c.Listen)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key must be set together")
	}
	if err := c.TLS.validate(c); err != nil {
		return err
	}
	if c.DrainDelay < 0 || c.DrainDelay > 5*time.Minute {
		return fmt.Errorf("drain_delay: %v is not between 0 and 5m", c.DrainDelay)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: %q is not text or json", c.LogFormat)
	}
	w := c.WebRTC
	if _, err := w.DenyRemote(); err != nil {
		return err
	}
	if w.UDPPort < 0 || w.UDPPort > 65535 {
		return fmt.Errorf("webrtc.udp_port: %d out of range 0-65535", w.UDPPort)
	}
	if w.UDPAddress != "" {
		if _, err := netip.ParseAddr(w.UDPAddress); err != nil {
			return fmt.Errorf("webrtc.udp_address: %q is not an IP address", w.UDPAddress)
		}
	}
	for i, ip := range w.NAT1To1IPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("webrtc.nat_1to1_ips[%d]: %q is not an IP address", i, ip)
		}
	}
	for i, s := range w.ICEServers {
		if len(s.URLs) == 0 {
			return fmt.Errorf("webrtc.ice_servers[%d].urls: at least one URL is required", i)
		}
		for j, u := range s.URLs {
			if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") &&
				!strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				return fmt.Errorf("webrtc.ice_servers[%d].urls[%d]: %q is not a stun:, stuns:, turn: or turns: URL", i, j, u)
			}
		}
		if s.Secret != "" && (s.Username != "" || s.Credential != "") {
			return fmt.Errorf("webrtc.ice_servers[%d]: secret (time-limited credentials) and username/credential exclude each other", i)
		}
		if s.TTL < 0 || (s.Secret != "" && s.TTL > 0 && s.TTL < time.Minute) {
			return fmt.Errorf("webrtc.ice_servers[%d].ttl: %v: at least 1m (0 = 24h)", i, s.TTL)
		}
	}
	if w.DisconnectedTimeout <= 0 || w.FailedTimeout <= 0 {
		return errors.New("webrtc.disconnected_timeout and webrtc.failed_timeout must be positive")
	}
	if err := validateStream("stream_defaults", c.StreamDefaults); err != nil {
		return err
	}
	for name, s := range c.Streams {
		if err := validateStream("streams."+name, s); err != nil {
			return err
		}
	}
	if err := c.validateSources(); err != nil {
		return err
	}
	if err := c.Record.validate(); err != nil {
		return err
	}
	if c.Record.Node != "" && !c.Cluster.Enabled() {
		return fmt.Errorf("record.node: %q names a node of a cluster, and the cluster is off (cluster.nats_urls, cluster.embedded)", c.Record.Node)
	}
	l := c.Limits
	for _, f := range []struct {
		key string
		v   int
	}{
		{"limits.max_streams", l.MaxStreams},
		{"limits.max_viewers", l.MaxViewers},
		{"limits.max_viewers_per_stream", l.MaxViewersPerStream},
		{"limits.max_body_bytes", l.MaxBodyBytes},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%s: must be positive, got %d", f.key, f.v)
		}
	}
	if l.MaxViewersPerIP < 0 {
		return fmt.Errorf("limits.max_viewers_per_ip: must be 0 (no cap) or positive, got %d", l.MaxViewersPerIP)
	}
	if l.MaxBodyBytes > 16<<20 {
		return fmt.Errorf("limits.max_body_bytes: %d is over 16 MiB", l.MaxBodyBytes)
	}
	for _, f := range []struct {
		key string
		v   int
	}{
		{"limits.max_conns", l.MaxConns},
		{"limits.max_conns_per_ip", l.MaxConnsPerIP},
		{"limits.request_burst_per_ip", l.RequestBurstPerIP},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s: must be 0 or positive, got %d", f.key, f.v)
		}
	}
	if l.RequestsPerSecondPerIP < 0 || l.RequestsPerSecondPerIP > 1e6 {
		return fmt.Errorf("limits.requests_per_second_per_ip: %v is not between 0 and 1000000", l.RequestsPerSecondPerIP)
	}
	if l.RequestsPerSecondPerIP > 0 && l.RequestBurstPerIP < 1 {
		return errors.New("limits.request_burst_per_ip: must be at least 1 when requests_per_second_per_ip is set")
	}
	if l.MaxPendingPublishes <= 0 || l.MaxPendingPublishesPerIP <= 0 {
		return errors.New("limits.max_pending_publishes and max_pending_publishes_per_ip must be positive")
	}
	for i, p := range c.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			return fmt.Errorf("trusted_proxies[%d]: %w", i, err)
		}
	}
	if err := c.Auth.validate(); err != nil {
		return err
	}
	if err := c.Cluster.validate(); err != nil {
		return err
	}
	for i, w := range c.Webhooks {
		if err := w.validate(); err != nil {
			return fmt.Errorf("webhooks[%d]: %w", i, err)
		}
	}
	for i, fa := range c.Web.FrameAncestors {
		if fa == "" || strings.ContainsAny(fa, ";,\r\n\"") {
			return fmt.Errorf("web.frame_ancestors[%d]: %q is not a CSP source ('self', 'none', https://host, *)", i, fa)
		}
	}
	return nil
}

func (t TLS) validate(c *Config) error {
	if t.ReloadInterval != 0 && (t.ReloadInterval < 100*time.Millisecond || t.ReloadInterval > time.Hour) {
		return fmt.Errorf("tls.reload_interval: %v is not 0 (only on SIGHUP) or between 100ms and 1h", t.ReloadInterval)
	}
	if t.RedirectHTTP != "" {
		_, port, err := net.SplitHostPort(t.RedirectHTTP)
		if err != nil {
			return fmt.Errorf("tls.redirect_http: %q is not host:port: %w", t.RedirectHTTP, err)
		}
		if !c.TLSEnabled() {
			return errors.New("tls.redirect_http: the main listener serves no TLS (set tls_cert and tls_key, or tls.acme_domains): the redirects would lead nowhere")
		}
		if _, lport, _ := net.SplitHostPort(c.Listen); port == lport && port != "0" {
			return fmt.Errorf("tls.redirect_http: %q has the port of listen (%q): the redirect listener needs a port of its own", t.RedirectHTTP, c.Listen)
		}
	}
	if t.HTTPSPort < 0 || t.HTTPSPort > 65535 {
		return fmt.Errorf("tls.https_port: %d out of range 0-65535", t.HTTPSPort)
	}
	if len(t.ACMEDomains) == 0 {
		if t.ACMEEmail != "" || t.ACMECA != "" || t.ACMECARoot != "" || t.ACMEStorage != "" {
			return errors.New("tls.acme_email, acme_ca, acme_ca_root and acme_storage need tls.acme_domains")
		}
		return nil
	}
	if c.TLSCert != "" {
		return errors.New("tls.acme_domains and tls_cert/tls_key: certificates come from one of them; set one")
	}
	for i, d := range t.ACMEDomains {
		if !validDNSName(d) {
			return fmt.Errorf("tls.acme_domains[%d]: %q is not a DNS name (no scheme, port, IP address or wildcard)", i, d)
		}
	}
	if t.ACMEEmail != "" && (!strings.Contains(t.ACMEEmail, "@") || strings.ContainsAny(t.ACMEEmail, " \t\r\n<>")) {
		return fmt.Errorf("tls.acme_email: %q is not an email address", t.ACMEEmail)
	}
	if t.ACMECA != "" {
		u, err := url.Parse(t.ACMECA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("tls.acme_ca: %q is not an https URL of an ACME directory", t.ACMECA)
		}
	}
	return nil
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validDNSName reports whether s is a lower-case DNS name of two labels or
// more (not an IP address).
func validDNSName(s string) bool {
	if len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func (c Cluster) validate() error {
	for i, u := range c.NATSURLs {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || (p.Scheme != "nats" && p.Scheme != "tls" && p.Scheme != "ws" && p.Scheme != "wss") {
			return fmt.Errorf("cluster.nats_urls[%d]: %q is not a nats://, tls://, ws:// or wss:// URL", i, RedactURL(u))
		}
	}
	if c.PublicURL != "" {
		p, err := url.Parse(c.PublicURL)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || (p.Path != "" && p.Path != "/") {
			return fmt.Errorf("cluster.public_url: %q is not http(s)://host[:port]", c.PublicURL)
		}
	}
	if c.NodeID != "" && !ValidStreamName(c.NodeID) {
		return fmt.Errorf("cluster.node_id: %q: 1-64 characters of [A-Za-z0-9._-]", c.NodeID)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("cluster.tls_cert and cluster.tls_key must be set together")
	}
	if c.Heartbeat <= 0 || c.TTL < 2*c.Heartbeat || c.TTL > 5*time.Minute {
		return fmt.Errorf("cluster.heartbeat %v and ttl %v: want heartbeat > 0 and 2*heartbeat <= ttl <= 5m", c.Heartbeat, c.TTL)
	}
	if err := c.Relay.validate(); err != nil {
		return err
	}
	if c.Embedded.Enabled {
		return c.ValidateEmbedded()
	}
	return nil
}

func (r Relay) validate() error {
	const mib = 1 << 20
	switch {
	case r.InterestPeriod < 250*time.Millisecond || r.InterestPeriod > 30*time.Second:
		return fmt.Errorf("cluster.relay.interest_period %v: want 250ms to 30s", r.InterestPeriod)
	case r.SnapshotTimeout < 100*time.Millisecond || r.SnapshotTimeout > 30*time.Second:
		return fmt.Errorf("cluster.relay.snapshot_timeout %v: want 100ms to 30s", r.SnapshotTimeout)
	case r.GOPBytes < mib || r.GOPBytes > 1024*mib:
		return fmt.Errorf("cluster.relay.gop_bytes %d: want 1 MiB to 1 GiB", r.GOPBytes)
	case r.QueueBytes < mib || r.QueueBytes > 1024*mib:
		return fmt.Errorf("cluster.relay.queue_bytes %d: want 1 MiB to 1 GiB", r.QueueBytes)
	case r.QueueMessages < 16 || r.QueueMessages > 1_000_000:
		return fmt.Errorf("cluster.relay.queue_messages %d: want 16 to 1000000", r.QueueMessages)
	case r.PendingBytes < mib || r.PendingBytes > 1024*mib:
		return fmt.Errorf("cluster.relay.pending_bytes %d: want 1 MiB to 1 GiB", r.PendingBytes)
	}
	return nil
}

// ValidateEmbedded checks the embedded server's settings: addresses, routes,
// TLS files, and that no port open beyond loopback is left without
// authentication. cluster.Start checks it again before it starts the server.
func (c Cluster) ValidateEmbedded() error {
	e := c.Embedded
	lh, _, err := net.SplitHostPort(e.Listen)
	if err != nil {
		return fmt.Errorf("cluster.embedded.listen: %q is not host:port", e.Listen)
	}
	if e.ClusterListen != "" {
		if _, _, err := net.SplitHostPort(e.ClusterListen); err != nil {
			return fmt.Errorf("cluster.embedded.cluster_listen: %q is not host:port", e.ClusterListen)
		}
		if len(e.Routes) == 0 {
			// nats-server refuses to start clustered JetStream then.
			return errors.New("cluster.embedded.cluster_listen is set but cluster.embedded.routes is empty: a clustered JetStream needs routes to its peers")
		}
	}
	for i, r := range e.Routes {
		if p, err := url.Parse(r); err != nil || p.Scheme != "nats-route" || p.Host == "" {
			return fmt.Errorf("cluster.embedded.routes[%d]: %q is not a nats-route://host:port URL", i, RedactURL(r))
		}
	}

	// The client port: the server requires the node's own credentials.
	if c.User != "" && c.Password == "" {
		return errors.New("cluster.password: must be set with cluster.user when the embedded server is enabled (it requires them of its clients)")
	}
	if c.User != "" && c.Token != "" {
		return errors.New("cluster.user and cluster.token: the embedded server takes one of them, not both")
	}
	if !IsLoopback(lh) && c.User == "" && c.Token == "" {
		return fmt.Errorf("cluster.embedded.listen: %q is not a loopback address, and neither cluster.user/cluster.password nor cluster.token is set: "+
			"the NATS client port would be open to the network without authentication; set them (the embedded server then requires them) or listen on 127.0.0.1", e.Listen)
	}

	// The route port.
	if (e.RouteUser == "") != (e.RoutePassword == "") {
		return errors.New("cluster.embedded.route_user and cluster.embedded.route_password must be set together")
	}
	if rh, ok := e.RouteHost(); ok && !IsLoopback(rh) && e.RouteUser == "" && !e.InsecureRoutes {
		what := fmt.Sprintf("cluster.embedded.cluster_listen: %q", e.ClusterListen)
		if e.ClusterListen == "" {
			what = fmt.Sprintf("cluster.embedded.routes without cluster_listen: the route port is on listen's host %q, which", rh)
		}
		return fmt.Errorf("%s is not a loopback address, and cluster.embedded.route_user/route_password are not set: "+
			"anyone who reaches the route port could join the NATS cluster; set them on every node "+
			"(or cluster.embedded.insecure_routes: true, on a private network only)", what)
	}

	// TLS.
	if (e.TLSCert == "") != (e.TLSKey == "") {
		return errors.New("cluster.embedded.tls_cert and cluster.embedded.tls_key must be set together")
	}
	if (e.TLSCert == "") != (e.TLSCA == "") {
		return errors.New("cluster.embedded.tls_ca must be set with cluster.embedded.tls_cert and tls_key (routes check their peers against it)")
	}
	for _, f := range []struct{ key, path string }{
		{"cluster.embedded.tls_cert", e.TLSCert},
		{"cluster.embedded.tls_key", e.TLSKey},
		{"cluster.embedded.tls_ca", e.TLSCA},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	return nil
}

// ParsePrefix parses a CIDR, or a bare IP as its own /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// WebhookEvents are the event types webhooks can ask for.
var WebhookEvents = []string{"publish.started", "publish.ended", "publish.takeover", "viewers.changed", "auth.refused"}

func (w Webhook) validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url: %q is not an http(s) URL", w.URL)
	}
	if len(w.Secret) < 16 {
		return errors.New("secret: at least 16 characters (whsec_ + base64, as Standard Webhooks, or any string)")
	}
	for _, e := range w.Events {
		if e != "*" && !slices.Contains(WebhookEvents, e) {
			return fmt.Errorf("events: %q is not one of %s or *", e, strings.Join(WebhookEvents, ", "))
		}
	}
	return nil
}

func (a Auth) validate() error {
	if a.PublicView && a.ViewToken != "" {
		return errors.New("auth.public_view and auth.view_token: a view token means nothing when anyone may view; set one of them")
	}
	if err := a.ValidateKeys(); err != nil {
		return err
	}
	if a.JWT.JWKSRefresh < time.Minute || a.JWT.JWKSRefresh > 7*24*time.Hour {
		return fmt.Errorf("auth.jwt.jwks_refresh: %v is not between 1m and 168h", a.JWT.JWKSRefresh)
	}
	if a.JWT.Leeway < 0 || a.JWT.Leeway > 5*time.Minute {
		return fmt.Errorf("auth.jwt.leeway: %v is not between 0 and 5m", a.JWT.Leeway)
	}
	if a.HTTPHook.Timeout <= 0 || a.HTTPHook.Timeout > 30*time.Second {
		return fmt.Errorf("auth.http_hook.timeout: %v is not between 0 and 30s", a.HTTPHook.Timeout)
	}
	if a.HTTPHook.CacheTTL < 0 || a.HTTPHook.CacheTTL > time.Hour {
		return fmt.Errorf("auth.http_hook.cache_ttl: %v is not between 0 and 1h", a.HTTPHook.CacheTTL)
	}
	for i, o := range a.AllowedOrigins {
		if !validOrigin(o) {
			return fmt.Errorf("auth.allowed_origins[%d]: %q is not an origin (scheme://host[:port], no path)", i, o)
		}
	}
	return nil
}

// ValidateKeys checks what makes access control unsafe or unusable
// whatever the other settings: HS256 secrets shorter than 32 bytes (one
// token lets anyone guess them offline), a kid used twice, a JWKS or hook
// URL that is not http(s). The auth package checks it again.
func (a Auth) ValidateKeys() error {
	kids := map[string]bool{}
	for i, k := range a.JWT.HS256 {
		if len(k.Secret) < 32 {
			return fmt.Errorf("auth.jwt.hs256[%d].secret: at least 32 bytes (a short HMAC secret can be guessed offline from one token)", i)
		}
		if kids[k.KID] {
			return fmt.Errorf("auth.jwt.hs256[%d].kid: %q is used twice", i, k.KID)
		}
		kids[k.KID] = true
	}
	for _, u := range []struct{ key, url string }{{"auth.jwt.jwks_url", a.JWT.JWKSURL}, {"auth.http_hook.url", a.HTTPHook.URL}} {
		if u.url == "" {
			continue
		}
		p, err := url.Parse(u.url)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", u.key, u.url)
		}
	}
	return nil
}

// validOrigin reports whether o is a serialized origin: scheme://host[:port].
func validOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil && o == u.Scheme+"://"+u.Host
}

func validateStream(key string, s Stream) error {
	switch {
	case s.GOPCacheMaxBytes <= 0:
		return fmt.Errorf("%s.gop_cache_max_bytes: must be positive, got %d", key, s.GOPCacheMaxBytes)
	case s.KeyframeInterval < 0:
		return fmt.Errorf("%s.keyframe_interval: must not be negative", key)
	case s.ViewerQueueMessages < 2:
		return fmt.Errorf("%s.viewer_queue_messages: must be at least 2, got %d", key, s.ViewerQueueMessages)
	case s.ViewerQueueBytes < 64<<10:
		return fmt.Errorf("%s.viewer_queue_bytes: must be at least 65536, got %d", key, s.ViewerQueueBytes)
	case s.ViewerMaxSkips < 1:
		return fmt.Errorf("%s.viewer_max_skips: must be at least 1, got %d", key, s.ViewerMaxSkips)
	}
	return nil
}

// validate checks the numbers; the path pattern is checked by the
// recorder (gateway.Check, and at start).
func (r Record) validate() error {
	switch {
	case r.Path == "" || !strings.Contains(r.Path, "%stream"):
		return fmt.Errorf("record.path: %q must name the stream with %%stream", r.Path)
	case r.SegmentDuration < time.Second || r.SegmentDuration > 24*time.Hour:
		return fmt.Errorf("record.segment_duration: %v is not between 1s and 24h", r.SegmentDuration)
	case r.MaxAge < 0:
		return errors.New("record.max_age: must not be negative")
	case r.MaxBytes < 0:
		return errors.New("record.max_bytes: must not be negative")
	case r.SyncInterval <= 0 || r.SyncInterval > time.Minute:
		return fmt.Errorf("record.sync_interval: %v is not between 1ns and 1m", r.SyncInterval)
	case r.QueueBytes < 1<<20:
		return fmt.Errorf("record.queue_bytes: %d is under 1 MiB (1048576)", r.QueueBytes)
	}
	return nil
}

func (c *Config) validateSources() error {
	names := make([]string, 0, len(c.Sources))
	for name := range c.Sources {
		names = append(names, name)
	}
	sort.Strings(names)
	usedBy := map[string]string{}
	for _, name := range names {
		s := c.Sources[name]
		key := "sources." + name
		if s.Video == "" {
			return fmt.Errorf("%s.video: empty (use none for no video)", key)
		}
		if s.Audio == "" {
			return fmt.Errorf("%s.audio: empty (use none for no audio)", key)
		}
		if s.Video == "none" && s.Audio == "none" {
			return fmt.Errorf("%s: video and audio are both none", key)
		}
		switch s.VideoCodec {
		case "h264", "vp9":
		case "vp8", "VP8":
			return fmt.Errorf("%s.video_codec: %q: VP8 is not supported (the gateway never accepts VP8); want h264 or vp9", key, s.VideoCodec)
		default:
			return fmt.Errorf("%s.video_codec: %q: want h264 or vp9", key, s.VideoCodec)
		}
		for _, dev := range []struct{ kind, name string }{{"video", s.Video}, {"audio", s.Audio}} {
			if dev.name == "none" {
				continue
			}
			// A device can be opened by one capture at a time.
			id := dev.kind + ":" + strings.ToLower(dev.name)
			if other, ok := usedBy[id]; ok {
				return fmt.Errorf("%s.%s: device %q is already used by sources.%s", key, dev.kind, dev.name, other)
			}
			usedBy[id] = name
		}
		switch {
		case s.Width < 16 || s.Width > 7680 || s.Width%2 != 0:
			return fmt.Errorf("%s.width: %d: want an even number in 16-7680", key, s.Width)
		case s.Height < 16 || s.Height > 4320 || s.Height%2 != 0:
			return fmt.Errorf("%s.height: %d: want an even number in 16-4320", key, s.Height)
		case s.FPS < 1 || s.FPS > 120:
			return fmt.Errorf("%s.fps: %d: want 1-120", key, s.FPS)
		case s.VideoBitrate < 10_000 || s.VideoBitrate > 100_000_000:
			return fmt.Errorf("%s.video_bitrate: %d: want 10000-100000000 bits/s", key, s.VideoBitrate)
		case s.AudioBitrate < 6_000 || s.AudioBitrate > 510_000:
			return fmt.Errorf("%s.audio_bitrate: %d: want 6000-510000 bits/s", key, s.AudioBitrate)
		case s.KeyframeInterval < 0:
			return fmt.Errorf("%s.keyframe_interval: must not be negative", key)
		case s.Linger <= 0:
			return fmt.Errorf("%s.linger: must be positive", key)
		}
		if s.OnDemand && !c.StreamSettings(name).WaitForPublisher {
			return fmt.Errorf("%s.on_demand: needs streams.%s.wait_for_publisher: true (on-demand sources start when a viewer waits)", key, name)
		}
	}
	return nil
}
