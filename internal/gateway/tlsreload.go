package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// certReloader serves a certificate and key file pair (tls_cert, tls_key)
// through tls.Config.GetCertificate and re-reads them without a restart:
// when either file changes on disk (poll, every tls.reload_interval) and
// when asked (SIGHUP, Gateway.Reload). A new pair that does not load (a file
// unreadable, the key not the certificate's, the certificate expired or not
// yet valid) is refused with a log line naming the files and the reason, and
// the old certificate stays. Connections already open keep the certificate
// of their handshake; new handshakes get the new one.
type certReloader struct {
	log  *slog.Logger
	cert atomic.Pointer[tls.Certificate]

	mu                sync.Mutex // guards what follows; held while a pair is read
	certFile, keyFile string
	loaded            pairStamp // the files as they were when last read (loaded or refused)
	seen              pairStamp // the files as the previous poll saw them

	stop, done chan struct{} // the poller's; nil without one
	closeOnce  sync.Once
}

// newCertReloader reads the pair; it fails as a start should on a pair
// that does not load. An expired pair is served (with a warning) at start:
// there is no other to serve.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{log: log, certFile: certFile, keyFile: keyFile}
	st := stampPair(certFile, keyFile)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls_cert %s / tls_key %s: %w", certFile, keyFile, err)
	}
	if err := checkValidity(&cert, time.Now()); err != nil {
		log.Warn("tls: serving a certificate that is not valid now; replace the files (they are re-read when they change)",
			"tls_cert", certFile, "tls_key", keyFile, "reason", err.Error())
	}
	r.cert.Store(&cert)
	r.loaded, r.seen = st, st
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// start polls the files every interval until Close; 0 = no polling.
func (r *certReloader) start(every time.Duration) {
	if every <= 0 {
		return
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.poll()
			}
		}
	}()
}

// Close stops the poller and waits for it. Safe to call more than once.
func (r *certReloader) Close() {
	if r == nil {
		return
	}
	r.closeOnce.Do(func() {
		if r.stop != nil {
			close(r.stop)
			<-r.done
		}
	})
}

// poll re-reads the pair when it changed since it was last read and has
// stayed the same for one poll (a pair being written, the certificate
// before the key, is not read half-way).
func (r *certReloader) poll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := stampPair(r.certFile, r.keyFile)
	prev := r.seen
	r.seen = now
	if now.equal(r.loaded) || !now.equal(prev) {
		return
	}
	_ = r.reloadLocked("changed on disk")
}

// Reload re-reads the pair now (SIGHUP); on error the old certificate stays.
func (r *certReloader) Reload(why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked(why)
}

func (r *certReloader) reloadLocked(why string) error {
	cert, st, err := loadPair(r.certFile, r.keyFile, time.Now())
	r.loaded, r.seen = st, st
	if err != nil {
		old := r.cert.Load()
		r.log.Error("tls: new certificate refused, still serving the old one",
			"tls_cert", r.certFile, "tls_key", r.keyFile, "why", why, "reason", err.Error(),
			"serving_serial", serialOf(old), "serving_not_after", notAfterOf(old))
		return err
	}
	r.install(cert, why)
	return nil
}

// set serves cert, read by loadPair from other files (a config reload that
// names new ones).
func (r *certReloader) set(certFile, keyFile string, cert *tls.Certificate, st pairStamp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.certFile, r.keyFile = certFile, keyFile
	r.loaded, r.seen = st, st
	r.install(cert, "config reloaded")
}

func (r *certReloader) install(cert *tls.Certificate, why string) {
	r.cert.Store(cert)
	r.log.Info("tls: certificate loaded", "tls_cert", r.certFile, "tls_key", r.keyFile, "why", why,
		"serial", serialOf(cert), "not_after", notAfterOf(cert), "names", cert.Leaf.DNSNames)
}

// files returns the pair's paths.
func (r *certReloader) files() (string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.certFile, r.keyFile
}

// loadPair reads and checks a pair for serving now: it loads, the key is
// the certificate's, and the certificate is valid at now. The stamp is the
// files' as they were just before they were read.
func loadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, pairStamp, error) {
	st := stampPair(certFile, keyFile)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil {
		err = checkValidity(&cert, now)
	}
	if err != nil {
		return nil, st, fmt.Errorf("tls_cert %s / tls_key %s: %w", certFile, keyFile, err)
	}
	return &cert, st, nil
}

// checkValidity reports a leaf that is expired or not yet valid at now.
func checkValidity(cert *tls.Certificate, now time.Time) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
		cert.Leaf = leaf
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("certificate serial %s expired at %s", leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("certificate serial %s is not valid before %s", leaf.SerialNumber, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

func serialOf(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.SerialNumber.String()
}

func notAfterOf(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.NotAfter.UTC().Format(time.RFC3339)
}

// pairStamp is what the poll compares: each file's identity, size and
// modification time (or why it could not be looked at).
type pairStamp struct{ cert, key fileStamp }

type fileStamp struct {
	info os.FileInfo
	err  string
}

func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	return fileStamp{info: fi}
}

func stampPair(certFile, keyFile string) pairStamp {
	return pairStamp{stampFile(certFile), stampFile(keyFile)}
}

func (a fileStamp) equal(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil && a.err == b.err
	}
	return os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime())
}

func (a pairStamp) equal(b pairStamp) bool { return a.cert.equal(b.cert) && a.key.equal(b.key) }
