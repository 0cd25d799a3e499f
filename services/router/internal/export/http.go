package export

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// maxResponseBytes bounds what is read of a backend's HTTP response.
const maxResponseBytes = 1 << 20

var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// httpClient is one backend's OTLP/HTTP client.
type httpClient struct {
	base        string
	compression string
	hc          *http.Client
}

func newHTTPClient(addr string, cfg Config) *httpClient {
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.Senders,
		IdleConnTimeout:     90 * time.Second,
		TLSClientConfig:     cfg.tlsConfig(),
		ForceAttemptHTTP2:   cfg.tlsConfig() != nil,
	}
	scheme := "http://"
	if cfg.tlsConfig() != nil {
		scheme = "https://"
	}
	return &httpClient{base: scheme + addr, compression: cfg.Compression, hc: &http.Client{Transport: tr}}
}

func httpPath(sig otlpwire.Signal) string {
	switch sig {
	case otlpwire.Logs:
		return "/v1/logs"
	case otlpwire.Metrics:
		return "/v1/metrics"
	}
	return "/v1/traces"
}

func (c *httpClient) export(ctx context.Context, sig otlpwire.Signal, payload []byte) outcome {
	bp := bodyBuffers.Get().(*[]byte)
	defer bodyBuffers.Put(bp)
	body, err := compressBody((*bp)[:0], c.compression, payload)
	if err != nil {
		return outcome{err: fmt.Errorf("compress: %w", err)}
	}
	*bp = body
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+httpPath(sig), bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if c.compression != CompressionNone {
		req.Header.Set("Content-Encoding", c.compression)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return outcome{err: err, retryable: true}
	}
	defer resp.Body.Close()
	rb, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode/100 == 2 {
		if rerr != nil {
			return outcome{message: rerr.Error()}
		}
		return tookResponse(rb)
	}
	o := outcome{err: fmt.Errorf("HTTP %d from %s: %s", resp.StatusCode, req.URL.Path, bytes.TrimSpace(rb[:min(len(rb), 256)]))}
	o.message = o.err.Error()
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		o.retryable = true
		o.throttle = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return o
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date (0 if absent or bad).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func (c *httpClient) close() error {
	c.hc.CloseIdleConnections()
	return nil
}
