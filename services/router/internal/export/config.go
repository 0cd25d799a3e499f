package export

import (
	"crypto/tls"
	"fmt"
	"time"
)

// Protocols and compressions a Config accepts.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http"

	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
)

// Defaults of DefaultConfig.
const (
	DefaultQueueBytes     = 64 << 20
	DefaultMaxBatchItems  = 8192
	DefaultMaxBatchBytes  = 3 << 20
	DefaultMaxWait        = 200 * time.Millisecond
	DefaultAckLinger      = 5 * time.Millisecond
	DefaultMaxRetries     = 3
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultTimeout        = 5 * time.Second
	DefaultSenders        = 4
)

// DefaultConfig is the config of a laptop deployment: gRPC with gzip, 64 MiB per backend.
func DefaultConfig() Config {
	return Config{
		Protocol:       ProtocolGRPC,
		Compression:    CompressionGzip,
		QueueBytes:     DefaultQueueBytes,
		MaxBatchItems:  DefaultMaxBatchItems,
		MaxBatchBytes:  DefaultMaxBatchBytes,
		MaxWait:        DefaultMaxWait,
		AckLinger:      DefaultAckLinger,
		MaxRetries:     DefaultMaxRetries,
		InitialBackoff: DefaultInitialBackoff,
		MaxBackoff:     DefaultMaxBackoff,
		Timeout:        DefaultTimeout,
		Senders:        DefaultSenders,
	}
}

// withDefaults fills zero fields from DefaultConfig (a zero Config is a usable one);
// MaxRetries keeps its zero (no retries).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.Protocol, d.Protocol)
	orDefault(&c.Compression, d.Compression)
	orDefault(&c.QueueBytes, d.QueueBytes)
	orDefault(&c.MaxBatchItems, d.MaxBatchItems)
	orDefault(&c.MaxBatchBytes, d.MaxBatchBytes)
	orDefault(&c.MaxWait, d.MaxWait)
	orDefault(&c.AckLinger, d.AckLinger)
	orDefault(&c.InitialBackoff, d.InitialBackoff)
	orDefault(&c.MaxBackoff, d.MaxBackoff)
	orDefault(&c.Timeout, d.Timeout)
	orDefault(&c.Senders, d.Senders)
	return c
}

func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Validate checks c after zero fields took their defaults; every error wraps ErrConfig
// and names the field.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTP:
	default:
		return fmt.Errorf("%w: protocol %q: want %q or %q", ErrConfig, c.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	switch c.Compression {
	case CompressionNone, CompressionGzip, CompressionZstd:
	default:
		return fmt.Errorf("%w: compression %q: want none, gzip or zstd", ErrConfig, c.Compression)
	}
	switch {
	case c.QueueBytes < 0:
		return fmt.Errorf("%w: queue bytes %d: must be > 0", ErrConfig, c.QueueBytes)
	case c.MaxBatchItems < 0:
		return fmt.Errorf("%w: max batch items %d: must be > 0", ErrConfig, c.MaxBatchItems)
	case c.MaxBatchBytes < 0:
		return fmt.Errorf("%w: max batch bytes %d: must be > 0", ErrConfig, c.MaxBatchBytes)
	case c.MaxWait < 0:
		return fmt.Errorf("%w: max wait %v: must be > 0", ErrConfig, c.MaxWait)
	case c.AckLinger < 0:
		return fmt.Errorf("%w: ack linger %v: must be > 0", ErrConfig, c.AckLinger)
	case c.MaxRetries < 0:
		return fmt.Errorf("%w: max retries %d: must be >= 0", ErrConfig, c.MaxRetries)
	case c.InitialBackoff < 0:
		return fmt.Errorf("%w: initial backoff %v: must be > 0", ErrConfig, c.InitialBackoff)
	case c.MaxBackoff < c.InitialBackoff:
		return fmt.Errorf("%w: max backoff %v: must be >= initial backoff %v", ErrConfig, c.MaxBackoff, c.InitialBackoff)
	case c.Timeout < 0:
		return fmt.Errorf("%w: timeout %v: must be > 0", ErrConfig, c.Timeout)
	case c.Senders < 0 || c.Senders > 64:
		return fmt.Errorf("%w: senders %d: must be in [1, 64]", ErrConfig, c.Senders)
	}
	return nil
}

// tlsConfig is the seam for TLS to backends: nil (today) means plaintext.
func (c Config) tlsConfig() *tls.Config { return c.TLS }
