package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mseway/mseway/configs"
)

// acmeCerts obtains and renews certificates automatically for
// tls.acme_domains (certmagic with its own cache and file storage). The
// challenges are answered on the gateway's own listeners: TLS-ALPN on the
// main one (GetCertificate and the acme-tls/1 protocol), HTTP-01 on the
// redirect listener (httpChallenge); HTTP-01 is off without one.
type acmeCerts struct {
	log     *slog.Logger
	domains []string
	cache   *certmagic.Cache
	magic   *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	storage string

	ctx       context.Context // of obtaining; cancelled by Close
	cancel    context.CancelFunc
	startOnce sync.Once
	closeOnce sync.Once
}

// newACME sets up automatic certificates; start obtains them.
func newACME(cfg *configs.Config, log *slog.Logger) (*acmeCerts, error) {
	t := cfg.TLS
	dir, err := acmeStorageDir(t.ACMEStorage)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme_storage: %w", err)
	}
	var roots *x509.CertPool
	if t.ACMECARoot != "" {
		pem, err := os.ReadFile(t.ACMECARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme_ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme_ca_root: %s holds no PEM certificate", t.ACMECARoot)
		}
	}
	zl := zap.New(slogCore{log: log.With("part", "acme")})
	a := &acmeCerts{log: log, domains: t.ACMEDomains, storage: dir}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	var current atomic.Pointer[certmagic.Config]
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return current.Load(), nil },
		Logger:           zl,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: dir},
		Logger:  zl,
		OnEvent: a.onEvent,
	})
	current.Store(a.magic)
	// The solvers look for the challenge ports: taken (by these listeners)
	// means answered there.
	host, port, _ := net.SplitHostPort(cfg.Listen)
	tmpl := certmagic.ACMEIssuer{
		CA:                      t.ACMECA,
		Email:                   t.ACMEEmail,
		Agreed:                  true,
		TrustedRoots:            roots,
		ListenHost:              host,
		DisableHTTPChallenge:    t.RedirectHTTP == "",
		DisableTLSALPNChallenge: false,
		Logger:                  zl,
	}
	if p, err := strconv.Atoi(port); err == nil && p > 0 {
		tmpl.AltTLSALPNPort = p
	}
	if t.RedirectHTTP != "" {
		if _, rp, err := net.SplitHostPort(t.RedirectHTTP); err == nil {
			if p, err := strconv.Atoi(rp); err == nil && p > 0 {
				tmpl.AltHTTPPort = p
			}
		}
	}
	if tmpl.CA == "" {
		tmpl.CA = certmagic.LetsEncryptProductionCA
	}
	a.issuer = certmagic.NewACMEIssuer(a.magic, tmpl)
	a.magic.Issuers = []certmagic.Issuer{a.issuer}
	return a, nil
}

// acmeStorageDir is tls.acme_storage, or its default.
func acmeStorageDir(set string) (string, error) {
	if set != "" {
		return set, nil
	}
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("tls.acme_storage: not set, and no home directory for its default: %w", err)
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "mseway", "acme"), nil
}

// tlsConfig makes tc serve the managed certificates and answer TLS-ALPN
// challenges.
func (a *acmeCerts) tlsConfig(tc *tls.Config) {
	tc.GetCertificate = a.magic.GetCertificate
	tc.NextProtos = append(tc.NextProtos, acmez.ACMETLS1Protocol)
}

// start obtains (or loads from storage) the certificates in the background
// and keeps them renewed; once. Handshakes for a name whose certificate is
// not there yet fail until it is.
func (a *acmeCerts) start() {
	if a == nil {
		return
	}
	a.startOnce.Do(func() {
		a.log.Info("tls: automatic certificates", "domains", a.domains, "ca", a.issuer.CA, "storage", a.storage,
			"http_01", !a.issuer.DisableHTTPChallenge, "tls_alpn_01", true)
		if err := a.magic.ManageAsync(a.ctx, a.domains); err != nil {
			a.log.Error("tls: automatic certificates", "domains", a.domains, "err", err.Error())
		}
	})
}

// httpChallenge answers ACME HTTP-01 challenges and passes every other
// request to next. On a nil *acmeCerts it is next.
func (a *acmeCerts) httpChallenge(next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return a.issuer.HTTPChallengeHandler(next)
}

// Close stops obtaining and renewing. Safe on nil and more than once.
func (a *acmeCerts) Close() {
	if a == nil {
		return
	}
	a.closeOnce.Do(func() {
		a.cancel()
		a.cache.Stop()
	})
}

func (a *acmeCerts) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtaining":
		a.log.Info("tls: obtaining a certificate", "identifier", data["identifier"], "renewal", data["renewal"])
	case "cert_obtained":
		a.log.Info("tls: certificate obtained", "identifier", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		a.log.Error("tls: obtaining a certificate failed; retrying", "identifier", data["identifier"], "renewal", data["renewal"],
			"remaining", data["remaining"], "err", fmt.Sprint(data["error"]))
	}
	return nil
}

// slogCore passes certmagic's zap lines of level warn and up to slog.
type slogCore struct {
	log    *slog.Logger
	fields []zapcore.Field
}

func (c slogCore) Enabled(l zapcore.Level) bool { return l >= zapcore.WarnLevel }

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{log: c.log, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fields...) {
		f.AddTo(enc)
	}
	args := make([]any, 0, 2*len(enc.Fields)+2)
	args = append(args, "logger", e.LoggerName)
	for k, v := range enc.Fields {
		args = append(args, k, v)
	}
	level := slog.LevelWarn
	if e.Level >= zapcore.ErrorLevel {
		level = slog.LevelError
	}
	c.log.Log(context.Background(), level, e.Message, args...)
	return nil
}

func (c slogCore) Sync() error { return nil }
