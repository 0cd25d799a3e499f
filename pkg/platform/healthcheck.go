package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ErrUnhealthy is returned by Probe when the endpoint answers with a status other than
// 200 or cannot be reached.
var ErrUnhealthy = errors.New("unhealthy")

// ProbeURL is the readiness URL of a process whose admin server listens on adminAddr
// (":8080", "0.0.0.0:8080", "[::]:8080" or "host:port"): an unspecified host becomes
// 127.0.0.1, so the probe runs inside the process's own container.
func ProbeURL(adminAddr, path string) (string, error) {
	host, port, err := net.SplitHostPort(adminAddr)
	if err != nil {
		return "", fmt.Errorf("%w: admin address %q: %v", ErrUnhealthy, adminAddr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// Probe GETs url and returns nil on 200; anything else is an error wrapping ErrUnhealthy
// that names the URL and carries the start of the body (a /readyz body lists its checks).
// It is what the scratch images run as their container healthcheck: no shell or curl.
func Probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnhealthy, url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnhealthy, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: %s: %s", ErrUnhealthy, url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
