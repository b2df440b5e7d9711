package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/nats-io/nats.go"

	"github.com/mseway/mseway/configs"
	"github.com/mseway/mseway/devices"
	"github.com/mseway/mseway/record"
)

// Check runs the checks a start makes on a loaded config beyond what
// configs validates, without binding a port or starting anything: the TLS
// certificate and key load, the cluster's credential and TLS files read
// and parse, and every local source can be encoded by this build and names
// devices that exist. A source this build cannot encode at all (no cgo) is
// a warning, as it is at start (the source is skipped). Devices are not
// opened, and nothing reaches the network (JWKS, hook, NATS, webhooks).
func Check(cfg *configs.Config) (warnings []string, err error) {
	if cfg.TLSCert != "" {
		if _, err := ServerTLS(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, err
		}
	}
	if err := record.CheckPath(cfg.Record.Path); err != nil {
		return nil, err
	}
	if cfg.Cluster.Enabled() {
		if err := checkClusterFiles(cfg.Cluster); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(cfg.Sources))
	for name := range cfg.Sources {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := cfg.Sources[name]
		dc := devices.Config{
			Video: s.Video, Audio: s.Audio, VideoCodec: s.VideoCodec, Width: s.Width, Height: s.Height, FPS: s.FPS,
			VideoBitrate: s.VideoBitrate, AudioBitrate: s.AudioBitrate, KeyframeInterval: s.KeyframeInterval,
		}
		if err := dc.Validate(); err != nil {
			return nil, fmt.Errorf("sources.%s: %w", name, err)
		}
		if err := dc.CheckBuild(); errors.Is(err, devices.ErrNoEncoder) {
			warnings = append(warnings, fmt.Sprintf("sources.%s: skipped at start: %v", name, err))
			continue
		} else if err != nil {
			return nil, fmt.Errorf("sources.%s: %w", name, err)
		}
		if err := dc.CheckDevices(); err != nil {
			return nil, fmt.Errorf("sources.%s: %w", name, err)
		}
	}
	return warnings, nil
}

// checkClusterFiles reads the cluster's credential and TLS files the way
// the NATS connection and the embedded server will.
func checkClusterFiles(c configs.Cluster) error {
	if c.CredsFile != "" {
		if _, err := os.ReadFile(c.CredsFile); err != nil {
			return fmt.Errorf("cluster.creds_file: %w", err)
		}
	}
	if c.NKeyFile != "" {
		if _, err := nats.NkeyOptionFromSeed(c.NKeyFile); err != nil {
			return fmt.Errorf("cluster.nkey_file: %w", err)
		}
	}
	for _, ca := range []struct{ key, path string }{{"cluster.tls_ca", c.TLSCA}, {"cluster.embedded.tls_ca", c.Embedded.TLSCA}} {
		if ca.path == "" {
			continue
		}
		pem, err := os.ReadFile(ca.path)
		if err != nil {
			return fmt.Errorf("%s: %w", ca.key, err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: %s holds no PEM certificate", ca.key, ca.path)
		}
	}
	for _, kp := range []struct{ key, cert, priv string }{
		{"cluster.tls_cert / cluster.tls_key", c.TLSCert, c.TLSKey},
		{"cluster.embedded.tls_cert / cluster.embedded.tls_key", c.Embedded.TLSCert, c.Embedded.TLSKey},
	} {
		if kp.cert == "" {
			continue
		}
		if _, err := tls.LoadX509KeyPair(kp.cert, kp.priv); err != nil {
			return fmt.Errorf("%s: %w", kp.key, err)
		}
	}
	return nil
}
