// Package testcerts makes throw-away certificates for tests and local stacks: a CA and
// server and client certificates it signs (ECDSA P-256, crypto/x509), in memory or as
// PEM files. They are for real TLS in tests and for `make certs`; never for production.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ErrWrite wraps a failure to write a certificate or key file.
var ErrWrite = errors.New("testcerts: write")

// Pair is a certificate and its private key, in PEM.
type Pair struct {
	CertPEM, KeyPEM []byte
	cert            *x509.Certificate
	key             *ecdsa.PrivateKey
}

// TLS returns the pair as a tls.Certificate.
func (p Pair) TLS() (tls.Certificate, error) { return tls.X509KeyPair(p.CertPEM, p.KeyPEM) }

// CA is a self-signed certificate authority.
type CA struct{ Pair }

// Pool returns a certificate pool holding only the CA.
func (ca CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// NewCA makes a CA valid for validFor from now (minus a minute for clock skew).
func NewCA(name string, validFor time.Duration) (CA, error) {
	tmpl := template(name, validFor)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	p, err := sign(tmpl, nil)
	return CA{p}, err
}

// Server makes a server certificate for hosts (DNS names or IP addresses), signed by ca.
func (ca CA) Server(validFor time.Duration, hosts ...string) (Pair, error) {
	tmpl := template(firstOr(hosts, "server"), validFor)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return sign(tmpl, &ca.Pair)
}

// Client makes a client certificate with common name name, signed by ca.
func (ca CA) Client(name string, validFor time.Duration) (Pair, error) {
	tmpl := template(name, validFor)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return sign(tmpl, &ca.Pair)
}

func firstOr(xs []string, def string) string {
	if len(xs) > 0 {
		return xs[0]
	}
	return def
}

func template(cn string, validFor time.Duration) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"otelfleet throw-away"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// sign makes a key and a certificate from tmpl, signed by parent (self-signed if nil).
func sign(tmpl *x509.Certificate, parent *Pair) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("testcerts: key: %w", err)
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return Pair{}, fmt.Errorf("testcerts: certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Pair{}, fmt.Errorf("testcerts: certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("testcerts: key %s: %w", tmpl.Subject.CommonName, err)
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		cert:    cert, key: key,
	}, nil
}

// Write writes the pair as <dir>/<name>.crt and <dir>/<name>.key (key mode 0600) and
// returns the two paths.
func (p Pair) Write(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, p.CertPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", ErrWrite, certFile, err)
	}
	if err := os.WriteFile(keyFile, p.KeyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", ErrWrite, keyFile, err)
	}
	return certFile, keyFile, nil
}

// Set is a CA with one server and one client certificate, as files in Dir.
type Set struct {
	Dir                           string
	CA                            CA
	Server, Client                Pair
	CAFile                        string
	ServerCertFile, ServerKeyFile string
	ClientCertFile, ClientKeyFile string
}

// WriteSet makes a CA, a server certificate for hosts and a client certificate named
// client, valid for validFor, and writes them to dir as ca.crt (and ca.key), server.crt,
// server.key, client.crt, client.key.
func WriteSet(dir string, validFor time.Duration, client string, hosts ...string) (*Set, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrWrite, dir, err)
	}
	ca, err := NewCA("otelfleet throw-away CA", validFor)
	if err != nil {
		return nil, err
	}
	srv, err := ca.Server(validFor, hosts...)
	if err != nil {
		return nil, err
	}
	cl, err := ca.Client(client, validFor)
	if err != nil {
		return nil, err
	}
	s := &Set{Dir: dir, CA: ca, Server: srv, Client: cl}
	if s.CAFile, _, err = ca.Write(dir, "ca"); err != nil {
		return nil, err
	}
	if s.ServerCertFile, s.ServerKeyFile, err = srv.Write(dir, "server"); err != nil {
		return nil, err
	}
	if s.ClientCertFile, s.ClientKeyFile, err = cl.Write(dir, "client"); err != nil {
		return nil, err
	}
	return s, nil
}

// ServerTLS is a server tls.Config with the set's server certificate; with mutual, it
// requires and verifies client certificates signed by the CA.
func (s *Set) ServerTLS(mutual bool) (*tls.Config, error) {
	c, err := s.Server.TLS()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientCAs, cfg.ClientAuth = s.CA.Pool(), tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
