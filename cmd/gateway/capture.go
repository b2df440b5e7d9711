package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mseway/mseway/agent"
	"github.com/mseway/mseway/devices"
)

// runCapture is `gateway capture`: the headless capture agent. It returns
// when ctx is done (SIGINT/SIGTERM in main), after the WHIP DELETE.
func runCapture(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway capture", flag.ContinueOnError)
	fs.SetOutput(stderr)
	whipURL := fs.String("url", "", "WHIP endpoint to publish to, e.g. http://gateway:8080/whip/cam1 (required)")
	var fallbacks urlsFlag
	fs.Var(&fallbacks, "fallback", "another WHIP endpoint of the stream, e.g. another node of a cluster (repeat the flag); after a failed publish or a lost connection the agent moves on to the next one")
	token := fs.String("token", "", "bearer token for the gateway's publish auth (or env MSEWAY_TOKEN)")
	video := fs.String("video", devices.Camera, "video device: camera, screen, videotest, a name/label from -list, or none")
	audio := fs.String("audio", devices.Microphone, "audio device: microphone, audiotest, a name/label from -list, or none")
	videoCodec := fs.String("codec", devices.H264, "video codec: h264, or vp9 (a build with -tags vpx)")
	width := fs.Int("width", devices.DefaultWidth, "video width (a camera uses its closest mode)")
	height := fs.Int("height", devices.DefaultHeight, "video height")
	fps := fs.Int("fps", devices.DefaultFPS, "video frame rate")
	bitrate := bitsFlag(devices.DefaultVideoBitrate)
	fs.Var(&bitrate, "bitrate", "video bitrate in bits/s (k and M suffixes: 800k, 2M)")
	audioBitrate := bitsFlag(devices.DefaultAudioBitrate)
	fs.Var(&audioBitrate, "audio-bitrate", "Opus bitrate in bits/s")
	keyint := fs.Duration("keyint", 2*time.Second, "time between keyframes; 0 = only when the gateway asks (PLI)")
	list := fs.Bool("list", false, "list the capture devices and exit")
	wait := fs.Bool("wait", false, "keep retrying when the first publish fails (agent started before its gateway)")
	loopback := fs.Bool("loopback", false, "ICE over 127.0.0.1 only (agent and gateway on one machine)")
	connectTimeout := fs.Duration("connect-timeout", 10*time.Second, "limit for one publish attempt (HTTP, ICE, DTLS)")
	maxBackoff := fs.Duration("max-backoff", 10*time.Second, "longest wait between reconnects")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: gateway capture -url http://HOST:8080/whip/STREAM [flags]
       gateway capture -list

Captures local devices (camera, microphone, screen, test patterns), encodes
H.264 (%s) or VP9 (-codec vp9: %s) and Opus, and publishes them to a
gateway over WHIP. Reconnects with backoff when the gateway or the network
goes away; Ctrl-C ends the publish (WHIP DELETE).

Flags:
`, devices.H264Encoder, vp9EncoderName())
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr, "gateway capture"); code >= 0 {
		return code
	}
	if *list {
		printDevices(stdout)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "gateway capture: -log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "gateway capture: -log-format %q: want text or json\n", *logFormat)
		return 2
	}
	if *whipURL == "" {
		fmt.Fprintln(stderr, "gateway capture: -url is required (e.g. -url http://localhost:8080/whip/cam1); -list shows devices")
		return 2
	}
	if u, err := url.Parse(*whipURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "gateway capture: -url %q: want http(s)://HOST[:PORT]/whip/STREAM\n", *whipURL)
		return 2
	}
	for _, f := range fallbacks {
		if err := agent.CheckURL(f); err != nil {
			fmt.Fprintf(stderr, "gateway capture: -fallback: %v\n", err)
			return 2
		}
	}
	if *width <= 0 || *height <= 0 || *fps <= 0 {
		fmt.Fprintf(stderr, "gateway capture: -width %d -height %d -fps %d: each must be positive\n", *width, *height, *fps)
		return 2
	}
	if *connectTimeout <= 0 || *maxBackoff <= 0 {
		fmt.Fprintln(stderr, "gateway capture: -connect-timeout and -max-backoff must be positive")
		return 2
	}
	cfg := devices.Config{
		Video: *video, Audio: *audio, VideoCodec: *videoCodec, Width: *width, Height: *height, FPS: *fps,
		VideoBitrate: int(bitrate), AudioBitrate: int(audioBitrate), KeyframeInterval: *keyint,
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "gateway capture: %v\n", err)
		return 2
	}
	if cfg.VideoCodec == devices.VP9 && cfg.Video != devices.None && devices.VP9Encoder == "" {
		fmt.Fprintf(stderr, "gateway capture: -codec vp9: this build lacks vpx, it has no VP9 encoder (build with -tags vpx, which needs cgo and apt libvpx-dev; or use -codec h264)\n")
		return 2
	}
	if *token == "" {
		*token = lookupEnv("MSEWAY_TOKEN")
	}
	cfg.Logger = log
	capture, err := devices.Open(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "gateway capture: %v\n", err)
		return 1
	}
	defer capture.Close()
	ag, err := agent.New(capture, agent.Config{
		URL: *whipURL, Fallbacks: fallbacks, Token: *token, Wait: *wait, LoopbackOnly: *loopback,
		ConnectTimeout: *connectTimeout, MaxBackoff: *maxBackoff, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "gateway capture: %v\n", err)
		return 2
	}
	if err := ag.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "gateway capture: %v\n", err)
		return 1
	}
	return 0
}

func printDevices(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tTYPE\tNAME (-video / -audio)\tLABEL")
	for _, d := range devices.List() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Kind, d.Type, d.Name, d.Label)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nH.264 encoder: %s. VP9 encoder (-codec vp9): %s. Also accepted: -video camera (first camera), -video screen, -audio microphone (default input), none.\n",
		devices.H264Encoder, vp9EncoderName())
}

func vp9EncoderName() string {
	if devices.VP9Encoder == "" {
		return "none (build with -tags vpx)"
	}
	return devices.VP9Encoder
}

// urlsFlag collects a repeated URL flag.
type urlsFlag []string

func (u *urlsFlag) String() string { return strings.Join(*u, ",") }

func (u *urlsFlag) Set(s string) error {
	*u = append(*u, s)
	return nil
}

// bitsFlag is a bit rate flag accepting k and M suffixes.
type bitsFlag int

func (b *bitsFlag) String() string { return strconv.Itoa(int(*b)) }

func (b *bitsFlag) Set(s string) error {
	mult := 1.0
	t := strings.TrimSpace(s)
	switch {
	case strings.HasSuffix(t, "k"), strings.HasSuffix(t, "K"):
		mult, t = 1e3, t[:len(t)-1]
	case strings.HasSuffix(t, "M"), strings.HasSuffix(t, "m"):
		mult, t = 1e6, t[:len(t)-1]
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a bit rate (e.g. 800000, 800k, 2M)", s)
	}
	*b = bitsFlag(v * mult)
	return nil
}
