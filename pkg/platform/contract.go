package platform

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Contract provisions the contract's streams and buckets in the background, retrying with
// backoff until NATS accepts them, and hands the buckets to services once that is done.
type Contract struct {
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	layout natsconn.Layout

	ready   chan struct{}
	buckets *natsconn.Buckets

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewContract returns the provisioner; it starts with the app and adds a "jetstream"
// readiness check.
func NewContract(lc fx.Lifecycle, s Settings, log *slog.Logger, nc *nats.Conn, js jetstream.JetStream, r *Readiness) (*Contract, error) {
	layout, err := s.Layout()
	if err != nil {
		return nil, err
	}
	if err := layout.Validate(); err != nil {
		return nil, err
	}
	c := &Contract{log: log, nc: nc, js: js, layout: layout, ready: make(chan struct{}), stop: make(chan struct{})}
	r.Add("jetstream", func() error {
		select {
		case <-c.ready:
			return nil
		default:
			return errNotYet
		}
	})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			c.wg.Add(1)
			go c.run()
			return nil
		},
		OnStop: func(context.Context) error {
			close(c.stop)
			c.wg.Wait()
			return nil
		},
	})
	return c, nil
}

// Layout returns the stream and bucket layout being provisioned.
func (c *Contract) Layout() natsconn.Layout { return c.layout }

// JetStream returns the JetStream context.
func (c *Contract) JetStream() jetstream.JetStream { return c.js }

func (c *Contract) run() {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	op := func() error {
		if err := natsconn.WaitConnected(ctx, c.nc); err != nil {
			return backoff.Permanent(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		defer pcancel()
		buckets, err := natsconn.Provision(pctx, c.js, c.layout)
		if err != nil {
			if ctx.Err() != nil {
				return backoff.Permanent(ctx.Err())
			}
			if errors.Is(err, natsconn.ErrNotProvisioned) {
				c.log.Info("waiting for the streams and buckets to be provisioned", "err", err)
			} else {
				c.log.Warn("provisioning streams and buckets failed, retrying", "err", err)
			}
			return err
		}
		for _, d := range buckets.Differences {
			c.log.Warn("using the existing bucket's settings; set RECONCILE_BUCKETS=true on one process to change them", "difference", d)
		}
		c.buckets = buckets
		return nil
	}
	if err := backoff.Retry(op, backoff.WithContext(b, ctx)); err != nil {
		return
	}
	c.log.Info("streams and buckets ready", "registry_ttl", c.layout.RegistryTTL.String(), "lease_ttl", c.layout.LeaseTTL.String())
	close(c.ready)
}

// Buckets blocks until the streams and buckets are provisioned (or ctx ends) and returns
// the buckets.
func (c *Contract) Buckets(ctx context.Context) (*natsconn.Buckets, error) {
	select {
	case <-c.ready:
		return c.buckets, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
