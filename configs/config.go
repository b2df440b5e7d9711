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
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration file.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Config is the whole gateway configuration.
type Config struct {
	Listen   string `yaml:"listen"`
	TLSCert  string `yaml:"tls_cert"`
	TLSKey   string `yaml:"tls_key"`
	LogLevel string `yaml:"log_level"`
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
	// Sources are local capture sources (devices or test patterns) published
	// straight into a stream of this gateway, by stream name.
	Sources    map[string]Source `yaml:"-"`
	RawSources yaml.Node         `yaml:"sources"`
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
	UDPPort             int           `yaml:"udp_port"`
	UDPAddress          string        `yaml:"udp_address"`
	NAT1To1IPs          []string      `yaml:"nat_1to1_ips"`
	IncludeLoopback     bool          `yaml:"include_loopback"`
	ICEServers          []ICEServer   `yaml:"ice_servers"`
	DisconnectedTimeout time.Duration `yaml:"disconnected_timeout"`
	FailedTimeout       time.Duration `yaml:"failed_timeout"`
}

// ICEServer is one STUN or TURN server.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
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
}

// Auth holds the optional bearer tokens.
type Auth struct {
	PublishToken string `yaml:"publish_token"`
	ViewToken    string `yaml:"view_token"`
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
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key must be set together")
	}
	if c.DrainDelay < 0 || c.DrainDelay > 5*time.Minute {
		return fmt.Errorf("drain_delay: %v is not between 0 and 5m", c.DrainDelay)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	w := c.WebRTC
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
	return nil
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
