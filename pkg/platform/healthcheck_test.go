package platform_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/platform"
)

func TestProbeURL(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{":8080", "http://127.0.0.1:8080/readyz"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080/readyz"},
		{"[::]:8080", "http://127.0.0.1:8080/readyz"},
		{"10.0.0.7:9090", "http://10.0.0.7:9090/readyz"},
	} {
		got, err := platform.ProbeURL(tc.addr, "/readyz")
		if err != nil || got != tc.want {
			t.Errorf("ProbeURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	if _, err := platform.ProbeURL("8080", "/readyz"); !errors.Is(err, platform.ErrUnhealthy) {
		t.Errorf("ProbeURL without a port separator: %v, want ErrUnhealthy", err)
	}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, `{"ready":false}`, http.StatusServiceUnavailable)
			return
		}
	}))
	defer srv.Close()
	if err := platform.Probe(context.Background(), srv.URL+"/healthz", time.Second); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	err := platform.Probe(context.Background(), srv.URL+"/readyz", time.Second)
	if !errors.Is(err, platform.ErrUnhealthy) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), `"ready":false`) {
		t.Fatalf("not ready: %v", err)
	}
}
