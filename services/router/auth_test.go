package routersvc

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/testcerts"
)

const traceExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// TestReceiversMutualTLSAndBearerToken: with a server certificate, a client CA and a
// bearer token, both receivers serve TLS; a client with its certificate and the token is
// accepted and its spans reach the backend; a wrong or missing token is 401 /
// UNAUTHENTICATED; a client without a certificate cannot connect.
func TestReceiversMutualTLSAndBearerToken(t *testing.T) {
	set, err := testcerts.WriteSet(t.TempDir(), time.Hour, "sdk", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile, cfg.BearerTokenFile = set.ServerCertFile, set.ServerKeyFile, set.CAFile, tokenFile
	e := startRouter(t, cfg)
	b := e.addBackend("c1")
	e.putDecision(1)

	clientCert, err := set.Client.TLS()
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: set.CA.Pool(), Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1"}

	// OTLP/HTTP.
	httpsURL := "https://" + strings.TrimPrefix(e.httpURL(), "http://") + "/v1/traces"
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	defer hc.CloseIdleConnections()
	send := func(c *http.Client, auth string, body []byte) (int, string) {
		code, hdr, _, err := postWith(c, httpsURL, map[string]string{"Content-Type": contentProto, "Authorization": auth}, body)
		if err != nil {
			return 0, err.Error()
		}
		return code, hdr.Get("WWW-Authenticate")
	}
	if code, _ := send(hc, "Bearer s3cret-token", traceRequest(t, "svc", [16]byte{1, 1}, 3)); code != http.StatusOK {
		t.Fatalf("HTTPS with certificate and token: %d", code)
	}
	for _, auth := range []string{"", "Bearer wrong", "Basic s3cret-token", "Bearer s3cret-tokenX"} {
		if code, hdr := send(hc, auth, traceRequest(t, "svc", [16]byte{1, 2}, 1)); code != http.StatusUnauthorized || !strings.HasPrefix(hdr, "Bearer") {
			t.Errorf("HTTPS with Authorization %q: %d (WWW-Authenticate %q), want 401 with a Bearer challenge", auth, code, hdr)
		}
	}
	if got := testutil.ToFloat64(e.r.m.requests.WithLabelValues("traces", outcomeUnauthenticated)); got != 4 {
		t.Errorf("requests_total{outcome=unauthenticated}: %v, want 4", got)
	}
	if got := testutil.ToFloat64(e.r.m.requests.WithLabelValues("traces", outcomeMalformed)); got != 0 {
		t.Errorf("requests_total{outcome=malformed}: %v after only 401s, want 0 (a 401 counted twice)", got)
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: set.CA.Pool(), ServerName: "127.0.0.1"}}}
	defer noCert.CloseIdleConnections()
	if code, _ := send(noCert, "Bearer s3cret-token", traceRequest(t, "svc", [16]byte{1, 3}, 1)); code != 0 {
		t.Errorf("HTTPS without a client certificate: status %d, want no connection", code)
	}
	if code, _ := send(&http.Client{Timeout: 10 * time.Second}, "Bearer s3cret-token", nil); code != 0 {
		t.Errorf("HTTPS with an unknown CA: status %d, want no connection", code)
	}

	// OTLP/gRPC.
	cc, err := grpc.NewClient(e.grpcAddr(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	invoke := func(token string, body []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", token)
		}
		var out rawMsg
		return cc.Invoke(ctx, traceExport, &rawMsg{b: body}, &out, grpc.ForceCodecV2(rawCodec{}))
	}
	if err := invoke("Bearer s3cret-token", traceRequest(t, "svc", [16]byte{2, 1}, 4)); err != nil {
		t.Fatalf("gRPC with certificate and token: %v", err)
	}
	for _, tok := range []string{"", "Bearer nope"} {
		if err := invoke(tok, traceRequest(t, "svc", [16]byte{2, 2}, 1)); status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC with authorization %q: %v, want UNAUTHENTICATED", tok, err)
		}
	}
	// The tap refuses before the handler runs; the signal comes from the method name.
	if got := testutil.ToFloat64(e.r.m.requests.WithLabelValues("traces", outcomeUnauthenticated)); got != 4+2 {
		t.Errorf("requests_total{signal=traces,outcome=unauthenticated}: %v after 4 HTTP and 2 gRPC refusals, want 6", got)
	}
	if got := testutil.ToFloat64(e.r.m.requests.WithLabelValues("any", outcomeUnauthenticated)); got != 0 {
		t.Errorf("requests_total{signal=any,outcome=unauthenticated}: %v, want 0", got)
	}
	// Accepted: two traces of 3 and 4 spans; the refused ones had other trace IDs.
	natstest.Eventually(t, 10*time.Second, func() bool { return total(b) == 7 }, "the 7 accepted spans reach the backend")
	if got, _ := b.counts(); len(got) != 2 || got[[16]byte{1, 1}] != 3 || got[[16]byte{2, 1}] != 4 {
		t.Errorf("backend saw %v, want the two accepted traces only", got)
	}
}

// TestReceiverAuthConfig: incomplete TLS and token settings are refused naming the flag.
func TestReceiverAuthConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*Config)
		flag string
	}{
		"cert without key":  {func(c *Config) { c.TLSCertFile = "x.crt" }, "--otlp-tls-key"},
		"client CA alone":   {func(c *Config) { c.TLSClientCAFile = "ca.crt" }, "--otlp-tls-client-ca"},
		"token twice":       {func(c *Config) { c.BearerToken, c.BearerTokenFile = "a", "f" }, "--otlp-bearer-token-file"},
		"token with spaces": {func(c *Config) { c.BearerToken = "a b" }, "--otlp-bearer-token"},
	} {
		c := testConfig()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.flag)
		}
	}
	c := testConfig()
	c.TLSCertFile, c.TLSKeyFile = filepath.Join(t.TempDir(), "missing.crt"), "missing.key"
	if _, err := newReceiverAuth(c); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing certificate file: %v", err)
	}
	c = testConfig()
	c.BearerTokenFile = filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(c.BearerTokenFile, []byte("\n"), 0o600)
	if _, err := newReceiverAuth(c); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: %v", err)
	}
}

// FuzzAuthorized: any Authorization header value is accepted exactly when it is
// "Bearer" (any case) and the token, and never panics.
func FuzzAuthorized(f *testing.F) {
	for _, s := range []string{"", "Bearer tok", "bearer tok", "Bearer  tok ", "Basic tok", "Bearer", "Bearer tok2", "\x00\xff"} {
		f.Add(s)
	}
	a := &receiverAuth{token: []byte("tok")}
	f.Fuzz(func(t *testing.T, h string) {
		scheme, cred, _ := strings.Cut(h, " ")
		want := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(cred) == "tok"
		if got := a.authorized(h); got != want {
			t.Errorf("authorized(%q) = %v, want %v", h, got, want)
		}
		if !(&receiverAuth{}).authorized(h) {
			t.Errorf("without a token, %q was refused", h)
		}
	})
}

// BenchmarkAuthorized is the per-request cost of the bearer token check.
func BenchmarkAuthorized(b *testing.B) {
	a := &receiverAuth{token: []byte("0123456789abcdef0123456789abcdef")}
	h := "Bearer 0123456789abcdef0123456789abcdef"
	b.ReportAllocs()
	for b.Loop() {
		if !a.authorized(h) {
			b.Fatal("refused")
		}
	}
}
