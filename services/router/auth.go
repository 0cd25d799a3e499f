package routersvc

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// receiverAuth is what the OTLP receivers check before anything else: TLS (server
// certificate, optional client CA) and an optional bearer token.
type receiverAuth struct {
	tls   *tls.Config // nil: plaintext
	token []byte      // nil: no token check
}

// newReceiverAuth loads the TLS files and the bearer token of c (already validated).
func newReceiverAuth(c Config) (*receiverAuth, error) {
	a := &receiverAuth{}
	if c.TLSCertFile != "" {
		certs := &certFiles{cert: c.TLSCertFile, key: c.TLSKeyFile}
		if _, err := certs.get(nil); err != nil {
			return nil, err
		}
		a.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
		if c.TLSClientCAFile != "" {
			pem, err := os.ReadFile(c.TLSClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: --otlp-tls-client-ca %s: %v", ErrConfig, c.TLSClientCAFile, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: --otlp-tls-client-ca %s: no PEM certificate in it", ErrConfig, c.TLSClientCAFile)
			}
			a.tls.ClientCAs, a.tls.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	token := c.BearerToken
	if c.BearerTokenFile != "" {
		b, err := os.ReadFile(c.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --otlp-bearer-token-file %s: %v", ErrConfig, c.BearerTokenFile, err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("%w: --otlp-bearer-token-file %s: empty", ErrConfig, c.BearerTokenFile)
		}
	}
	if token != "" {
		a.token = []byte(token)
	}
	return a, nil
}

// authorized reports whether an Authorization header value carries the token (always
// true without a token check). The comparison takes the same time for every wrong token
// of a given length.
func (a *receiverAuth) authorized(header string) bool {
	if a.token == nil {
		return true
	}
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), a.token) == 1
}

// certFiles serves a certificate from its files and loads them again when either file
// changes (checked at most once a second), so a rotated certificate is used by new
// connections without a restart.
type certFiles struct {
	cert, key string
	mu        sync.Mutex
	loaded    *tls.Certificate
	modTimes  [2]time.Time
	checked   time.Time
}

func (f *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if f.loaded != nil && now.Sub(f.checked) < time.Second {
		return f.loaded, nil
	}
	f.checked = now
	var mt [2]time.Time
	for i, p := range []string{f.cert, f.key} {
		fi, err := os.Stat(p)
		if err != nil {
			if f.loaded != nil {
				return f.loaded, nil // keep serving the last good certificate
			}
			return nil, fmt.Errorf("%w: OTLP TLS file %s: %v", ErrConfig, p, err)
		}
		mt[i] = fi.ModTime()
	}
	if f.loaded != nil && mt == f.modTimes {
		return f.loaded, nil
	}
	c, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		if f.loaded != nil {
			return f.loaded, nil // a half-written rotation: keep the last good one
		}
		return nil, fmt.Errorf("%w: --otlp-tls-cert %s / --otlp-tls-key %s: %v", ErrConfig, f.cert, f.key, err)
	}
	f.loaded, f.modTimes = &c, mt
	return f.loaded, nil
}
