package loadreport

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Follower reads the load stream for a consumer of load reports (topology, sampler).
type Follower struct {
	NC  *nats.Conn
	JS  jetstream.JetStream
	NS  events.Namespace
	Log *slog.Logger
}

// Follow reads the OTLP_LOAD stream with an ephemeral ordered consumer that starts at the
// last report of every collector and then delivers new ones, calling handle for each
// message from one goroutine. caughtUp, if set, is called (possibly more than once) when
// the replay of the stored reports is done. The consumer is re-created after every
// reconnect (the ordered consumer is slow to notice a restarted server) and after a
// consumer failure. Follow blocks until ctx ends.
func (f Follower) Follow(ctx context.Context, handle func(jetstream.Msg), caughtUp func()) {
	if caughtUp == nil {
		caughtUp = func() {}
	}
	reconnected := f.NC.StatusChanged(nats.CONNECTED)
	defer f.NC.RemoveStatusListener(reconnected)
	wrapped := func(msg jetstream.Msg) {
		handle(msg)
		if md, err := msg.Metadata(); err == nil && md.NumPending == 0 {
			caughtUp()
		}
	}
	for ctx.Err() == nil {
		// Creating a consumer while disconnected would only wait out its timeout.
		if err := natsconn.WaitConnected(ctx, f.NC); err != nil {
			return
		}
		select { // a reconnect before this consumer exists needs no restart
		case <-reconnected:
		default:
		}
		failed := make(chan error, 1)
		cc, err := f.start(ctx, wrapped, caughtUp, failed)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.Log.Warn("load stream consumer could not start, retrying", "stream", f.NS.LoadStream(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-reconnected:
		case err := <-failed:
			f.Log.Warn("load stream consumer failed, restarting", "err", err)
			cc.Stop()
			// The connection may not have noticed yet that the server is gone: give it a
			// moment (or the reconnect) before creating the next consumer.
			select {
			case <-ctx.Done():
				return
			case <-reconnected:
			case <-time.After(time.Second):
			}
			continue
		}
		cc.Stop()
	}
}

func (f Follower) start(ctx context.Context, handle jetstream.MessageHandler, caughtUp func(), failed chan<- error) (jetstream.ConsumeContext, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := f.JS.OrderedConsumer(cctx, f.NS.LoadStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.NS.LoadSubjects()},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrServerShutdown) {
			select {
			case failed <- err:
			default:
			}
		}
	}))
	if err == nil {
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			caughtUp() // nothing to replay
		}
	}
	return cc, err
}
