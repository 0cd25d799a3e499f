package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestHealthExitsByStatus(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			http.Error(w, `{"ready":false,"checks":[{"name":"nats"}]}`, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}))
	defer srv.Close()
	if code, out, stderr := runCLI(t, "health", "--url", srv.URL+"/readyz"); code != exitOK || strings.TrimSpace(out) != "ok" {
		t.Fatalf("ready: exit %d, %q, %s", code, out, stderr)
	}
	ready = false
	code, _, stderr := runCLI(t, "health", "--url", srv.URL+"/readyz")
	if code != exitRefused || !strings.Contains(stderr, "503") || !strings.Contains(stderr, `"nats"`) {
		t.Fatalf("not ready: exit %d, stderr %q; want 1 naming the status and the body", code, stderr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if code, _, stderr := runCLI(t, "--timeout", "1s", "health", "--url", "http://"+addr+"/readyz"); code != exitRefused || !strings.Contains(stderr, addr) {
		t.Fatalf("nothing listening: exit %d, %q", code, stderr)
	}
}

// TestProxyForwardsToEveryAddress runs `otelfleet proxy` in front of a local HTTP
// server named by its host name, and checks a request through it and its /readyz.
func TestProxyForwardsToEveryAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "backend\n") }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	listen, admin := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCLIContext(ctx, t, "proxy", "--forward", listen+"=localhost:"+port, "--admin-addr", admin, "--resolve-interval", "50ms")
		done <- code
	}()
	var body string
	natstest.Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + listen + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return true
	}, "the proxy never forwarded a request")
	if body != "backend\n" {
		t.Fatalf("through the proxy: %q", body)
	}
	if code, _, stderr := runCLI(t, "health", "--url", "http://"+admin+"/readyz"); code != exitOK {
		t.Fatalf("proxy /readyz: exit %d, %s", code, stderr)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("proxy exited %d", code)
	}
	if code, _, stderr := runCLI(t, "proxy", "--forward", "4317"); code != exitUsage || !strings.Contains(stderr, "LISTEN=HOST:PORT") {
		t.Fatalf("bad --forward: exit %d, %q", code, stderr)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runCLIContext is runCLI with a context the test cancels (long-running commands).
func runCLIContext(ctx context.Context, t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errb}
	code := env.main(ctx, args)
	return code, out.String(), errb.String()
}
