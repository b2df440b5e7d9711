// Package testcert makes a throwaway certificate authority and a server
// certificate for loopback (127.0.0.1, ::1, localhost), so that tests and the
// load tool can serve and trust https/wss without files checked in. It is a
// test kit: production code never imports it.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Cert is a server certificate (ECDSA P-256) signed by its own CA, also
// usable as a client certificate (mutual TLS).
type Cert struct {
	CertFile, KeyFile string // PEM files of the leaf (with the CA after it) and its key
	CAFile            string // PEM file of the CA, for clients that take a file
	Pool              *x509.CertPool
	// SPKIHash is the base64 SHA-256 of the leaf's public key, as Chromium's
	// --ignore-certificate-errors-spki-list wants it.
	SPKIHash string
}

// ClientConfig returns a TLS client config that trusts only this CA.
func (c *Cert) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}

// Write makes a CA and a leaf for loopback names and writes them into dir.
func Write(dir string) (*Cert, error) { return WriteWith(dir, Options{}) }

// Options vary the leaf that WriteWith makes.
type Options struct {
	// Serial is the leaf's serial number; 0 = 2.
	Serial int64
	// Expired makes a leaf whose validity ended an hour ago.
	Expired bool
}

// WriteWith is Write with a leaf shaped by o (each call makes a new CA too).
func WriteWith(dir string, o Options) (*Cert, error) {
	if o.Serial == 0 {
		o.Serial = 2
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mseway test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(7*24*time.Hour)
	if o.Expired {
		notBefore, notAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(o.Serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Client auth too: the same leaf serves as a client certificate
		// in mutual TLS tests.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	c := &Cert{
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		CAFile:   filepath.Join(dir, "ca.pem"),
		Pool:     x509.NewCertPool(),
		SPKIHash: base64.StdEncoding.EncodeToString(sum[:]),
	}
	c.Pool.AddCert(ca)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), caPEM...)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{c.CertFile, chain, 0o644},
		{c.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{c.CAFile, caPEM, 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("testcert: %w", err)
		}
	}
	return c, nil
}
