package testcerts_test

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/testcerts"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMutualHandshake: the set's server and client certificates complete a mutual TLS
// handshake on a real socket; a client without a certificate is refused.
func TestMutualHandshake(t *testing.T) {
	s, err := testcerts.WriteSet(t.TempDir(), time.Hour, "agent", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.ServerKeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server key file %s: mode %v, err %v; want 0600", s.ServerKeyFile, fi.Mode().Perm(), err)
	}
	scfg, err := s.ServerTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	cert, err := tls.LoadX509KeyPair(s.ClientCertFile, s.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(certs []tls.Certificate) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), &tls.Config{RootCAs: s.CA.Pool(), Certificates: certs, ServerName: "127.0.0.1"})
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err == nil && string(b) != "ok" {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if err := dial([]tls.Certificate{cert}); err != nil {
		t.Errorf("client with its certificate: %v", err)
	}
	if err := dial(nil); err == nil {
		t.Error("client without a certificate was accepted")
	}
}
