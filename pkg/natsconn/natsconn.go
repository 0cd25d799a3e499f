// Package natsconn connects otelfleet processes to NATS and provisions the JetStream
// streams and KV buckets of the contract.
//
// Services connect with Connect: the connection starts even when NATS is down, reconnects
// forever with exponential backoff and jitter, and logs every state change, so a service
// never exits because NATS went away. The CLI uses Dial, which fails fast and says where
// it tried.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
)

// DefaultURL is the NATS URL used when none is configured.
const DefaultURL = "nats://127.0.0.1:4222"

// ErrUnreachable is returned by Dial when no NATS server answered at the configured URLs.
var ErrUnreachable = errors.New("NATS unreachable")

// Options says where and how to connect. Exactly one authentication method may be set.
type Options struct {
	// URL is one or more comma-separated server URLs (env NATS_URL). tls:// URLs use TLS.
	URL string
	// CredsFile is a NATS credentials file (env NATS_CREDS).
	CredsFile string
	// User and Password authenticate with a user name (env NATS_USER, NATS_PASSWORD).
	User, Password string
	// Token authenticates with a token (env NATS_TOKEN).
	Token string
	// CAFile is an extra root CA for tls:// servers (env NATS_CA).
	CAFile string
	// CertFile and KeyFile are a client certificate and its key for servers that
	// verify clients (mutual TLS; env NATS_CERT, NATS_KEY). Both or neither.
	CertFile, KeyFile string
	// Name is the client connection name shown by the server (e.g. "otelfleet-config").
	Name string
	// InboxPrefix is the subject prefix of this client's reply inboxes (env
	// NATS_INBOX_PREFIX). Empty means _INBOX_<User> when a user name is set (each
	// identity of deploy/nats/auth.conf may subscribe only to its own _INBOX_<user>.>),
	// else nats.go's _INBOX.
	InboxPrefix string
}

// Inbox returns the reply-inbox prefix the connection uses (see InboxPrefix): "" for
// nats.go's default.
func (o Options) Inbox() string {
	if o.InboxPrefix != "" {
		return o.InboxPrefix
	}
	if o.User != "" {
		return "_INBOX_" + o.User
	}
	return ""
}

// OptionsFromEnv reads NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD, NATS_TOKEN,
// NATS_CA, NATS_CERT and NATS_KEY. A missing NATS_URL means DefaultURL.
func OptionsFromEnv() Options {
	o := Options{
		URL:       os.Getenv("NATS_URL"),
		CredsFile: os.Getenv("NATS_CREDS"),
		User:      os.Getenv("NATS_USER"),
		Password:  os.Getenv("NATS_PASSWORD"),
		Token:     os.Getenv("NATS_TOKEN"),
		CAFile:    os.Getenv("NATS_CA"),
		CertFile:  os.Getenv("NATS_CERT"),
		KeyFile:   os.Getenv("NATS_KEY"),

		InboxPrefix: os.Getenv("NATS_INBOX_PREFIX"),
	}
	if o.URL == "" {
		o.URL = DefaultURL
	}
	return o
}

// Validate reports conflicting or incomplete settings.
func (o Options) Validate() error {
	var errs []error
	if strings.TrimSpace(o.URL) == "" {
		errs = append(errs, errors.New("NATS_URL: empty"))
	}
	methods := 0
	if o.CredsFile != "" {
		methods++
	}
	if o.User != "" || o.Password != "" {
		methods++
		if o.User == "" {
			errs = append(errs, errors.New("NATS_USER: required with NATS_PASSWORD"))
		}
	}
	if o.Token != "" {
		methods++
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("NATS_CERT and NATS_KEY: set both or neither"))
	}
	if p := o.Inbox(); p != "" && !validInboxPrefix(p) {
		what := "NATS_INBOX_PREFIX"
		if o.InboxPrefix == "" {
			what = "NATS_USER (the default inbox prefix is _INBOX_<user>; set NATS_INBOX_PREFIX)"
		}
		errs = append(errs, fmt.Errorf("%s: inbox prefix %q: want subject tokens of letters, digits, '_' and '-', separated by '.'", what, p))
	}
	if methods > 1 {
		errs = append(errs, errors.New("NATS_CREDS, NATS_USER/NATS_PASSWORD and NATS_TOKEN: set at most one"))
	}
	return errors.Join(errs...)
}

func (o Options) natsOptions() []nats.Option {
	var opts []nats.Option
	if o.Name != "" {
		opts = append(opts, nats.Name(o.Name))
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if p := o.Inbox(); p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return opts
}

// Connect opens a long-lived service connection. It returns at once even when no server
// is reachable yet: the client keeps trying in the background (nats.RetryOnFailedConnect)
// and reconnects forever after every loss, waiting an exponentially growing, jittered
// delay (100ms up to 5s) between rounds. Every state change is logged on log.
// onState, if non-nil, is called with the connection status after every change.
func Connect(o Options, log *slog.Logger, onState func(nats.Status)) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	delay := newReconnectDelay()
	notify := func(nc *nats.Conn) {
		if onState != nil {
			onState(nc.Status())
		}
	}
	opts := append(o.natsOptions(),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(8<<20),
		nats.PingInterval(5*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.CustomReconnectDelay(delay.next),
		nats.ConnectHandler(func(nc *nats.Conn) {
			delay.reset()
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
			notify(nc)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			delay.reset()
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
			notify(nc)
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			} else {
				log.Info("nats disconnected")
			}
			notify(nc)
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Debug("nats reconnect attempt failed", "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			log.Info("nats connection closed")
			notify(nc)
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats async error", "subject", subject, "err", err)
		}),
	)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect to %s: %w", o.URL, err)
	}
	if !nc.IsConnected() {
		log.Warn("nats not reachable yet, retrying in the background", "url", o.URL)
	}
	return nc, nil
}

// Dial opens a short-lived connection for the CLI: it fails within timeout when no server
// answers, with an error wrapping ErrUnreachable that names the URL it tried.
func Dial(o Options, timeout time.Duration) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	opts := append(o.natsOptions(), nats.Timeout(timeout), nats.MaxReconnects(0))
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return nil, fmt.Errorf("nats at %s refused the credentials: %w", o.URL, err)
		}
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, o.URL, err)
	}
	return nc, nil
}

// reconnectDelay hands out backoff delays between reconnect rounds; the ConnectHandler
// and ReconnectHandler reset it once a connection is back.
type reconnectDelay struct {
	mu sync.Mutex
	b  *backoff.ExponentialBackOff
}

func newReconnectDelay() *reconnectDelay {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0 // never give up
	b.Reset()
	return &reconnectDelay{b: b}
}

func (d *reconnectDelay) next(int) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.b.NextBackOff()
}

func (d *reconnectDelay) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.b.Reset()
}

// WaitConnected blocks until nc is connected or ctx ends.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return nats.ErrConnectionClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// validInboxPrefix accepts dot-separated tokens of [A-Za-z0-9_-], which every identity's
// permission "<prefix>.>" can name.
func validInboxPrefix(p string) bool {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || len(tok) > 128 {
			return false
		}
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}
