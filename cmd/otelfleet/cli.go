package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Exit codes.
const (
	exitOK          = 0
	exitRefused     = 1 // refused or invalid: stderr names what was wrong
	exitUsage       = 2
	exitUnreachable = 3 // NATS unreachable: stderr says where it tried
)

// command is one top-level command.
type command struct {
	name, summary string
	run           func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv carries what every command shares: output streams and the NATS client settings.
type cliEnv struct {
	stdout, stderr io.Writer
	nats           natsconn.Options
	root           string
	timeout        time.Duration
}

// exitError carries an exit code through a returned error.
type exitError struct {
	code int
	err  error
	// reported is true when the message was already printed (the flag package prints
	// its own parse errors above the usage text).
	reported bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError returns an error that exits with code 2.
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// refused returns an error that exits with code 1.
func refused(err error) error { return &exitError{code: exitRefused, err: err} }

func run(ctx context.Context, args []string) int {
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	return env.main(ctx, args)
}

func (env *cliEnv) main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("otelfleet", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	env.bindGlobals(knobs.New(fs))
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { env.printUsage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *version {
		return env.exitCode(runVersion(ctx, env, nil))
	}
	if fs.NArg() == 0 {
		env.printUsage(fs)
		return exitUsage
	}
	name := fs.Arg(0)
	if name == "help" {
		env.printUsage(fs)
		return exitOK
	}
	for _, c := range commands {
		if c.name == name {
			return env.exitCode(c.run(ctx, env, fs.Args()[1:]))
		}
	}
	fmt.Fprintf(env.stderr, "otelfleet: unknown command %q (see otelfleet help)\n", name)
	return exitUsage
}

func (env *cliEnv) exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) || !ee.reported {
		// Every line is prefixed: several problems joined with errors.Join come one a line.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(env.stderr, "otelfleet: %s\n", line)
		}
	}
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, natsconn.ErrUnreachable):
		return exitUnreachable
	case microapi.CodeOf(err) == microapi.CodeUnavailable:
		return exitUnreachable
	default:
		return exitRefused
	}
}

func (env *cliEnv) printUsage(fs *flag.FlagSet) {
	w := env.stderr
	fmt.Fprintln(w, "otelfleet — a control plane for fleets of OpenTelemetry collectors")
	fmt.Fprintln(w, "\nUsage: otelfleet [global flags] COMMAND [flags] [args]")
	fmt.Fprintln(w, "\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nGlobal flags (also accepted after the command):")
	fs.PrintDefaults()
	fmt.Fprintln(w, "\nExit codes: 0 ok, 1 refused or invalid, 2 usage, 3 NATS unreachable.")
}

// bindGlobals registers the client flags shared by every command.
func (env *cliEnv) bindGlobals(k *knobs.Set) {
	def := natsconn.OptionsFromEnv()
	k.String(&env.nats.URL, "nats", "", def.URL, "NATS server URL (env NATS_URL)")
	env.nats = def
	env.nats.URL = def.URL
	bindNATSAuth(k.FlagSet(), &env.nats)
	k.String(&env.root, "subject-root", "OTELFLEET_ROOT", events.DefaultRoot, "subject root")
	k.Duration(&env.timeout, "timeout", "", 5*time.Second, "how long to wait for NATS and for replies")
}

// bindNATSAuth registers the NATS identity and TLS flags of every command; their
// defaults come from the environment (NATS_USER, NATS_PASSWORD, NATS_CREDS, NATS_CA,
// NATS_CERT, NATS_KEY, NATS_INBOX_PREFIX), read by OptionsFromEnv.
func bindNATSAuth(fs *flag.FlagSet, o *natsconn.Options) {
	fs.StringVar(&o.User, "nats-user", o.User, "NATS user name, e.g. admin or viewer (env NATS_USER)")
	fs.StringVar(&o.Password, "nats-password", o.Password, "NATS password (env NATS_PASSWORD)")
	fs.StringVar(&o.CredsFile, "nats-creds", o.CredsFile, "NATS credentials file (env NATS_CREDS)")
	fs.StringVar(&o.CAFile, "nats-ca", o.CAFile, "extra root CA file for tls:// servers (env NATS_CA)")
	fs.StringVar(&o.CertFile, "nats-cert", o.CertFile, "client certificate file for NATS mutual TLS (env NATS_CERT)")
	fs.StringVar(&o.KeyFile, "nats-key", o.KeyFile, "client key file for NATS mutual TLS (env NATS_KEY)")
	fs.StringVar(&o.InboxPrefix, "nats-inbox-prefix", o.InboxPrefix, "subject prefix of reply inboxes (default _INBOX_<nats user> with --nats-user, else _INBOX; env NATS_INBOX_PREFIX)")
}

// flags returns a flag set for a subcommand that also accepts the global flags.
func (env *cliEnv) flags(name, usage string) (*flag.FlagSet, *knobs.Set) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	k := knobs.New(fs)
	fs.StringVar(&env.nats.URL, "nats", env.nats.URL, "NATS server URL (env NATS_URL)")
	fs.DurationVar(&env.timeout, "timeout", env.timeout, "how long to wait for NATS and for replies")
	bindNATSAuth(fs, &env.nats)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: otelfleet %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs, k
}

// parse parses args with fs, mapping flag errors to usage errors. Flags may come after
// positional arguments too.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: exitUsage, err: err, reported: true}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// namespace returns the names for the configured subject root.
func (env *cliEnv) namespace() (events.Namespace, error) {
	ns, err := events.NewNamespace(env.root)
	if err != nil {
		return ns, usageError("--subject-root: %v", err)
	}
	return ns, nil
}

// dial connects to NATS, failing fast with exit code 3 when it is unreachable.
func (env *cliEnv) dial() (*nats.Conn, error) {
	env.nats.Name = "otelfleet-cli"
	nc, err := natsconn.Dial(env.nats, env.timeout)
	if err != nil {
		if errors.Is(err, natsconn.ErrUnreachable) {
			return nil, &exitError{code: exitUnreachable, err: err}
		}
		return nil, err
	}
	return nc, nil
}

// jetStream dials and returns a JetStream context; close the connection when done.
func (env *cliEnv) jetStream() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := env.dial()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// request calls a micro endpoint of service with a timeout.
func (env *cliEnv) request(ctx context.Context, nc *nats.Conn, service, op string, in, out any) error {
	ns, err := env.namespace()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	return microapi.Request(ctx, nc, ns.Endpoint(service, op), in, out)
}

// outputFlag registers -o with the allowed formats, the first being the default; any
// other value is a usage error when the flags are parsed.
func outputFlag(fs *flag.FlagSet, formats ...string) *string {
	v := &outputValue{val: formats[0], allowed: formats}
	fs.Var(v, "o", "output format: "+strings.Join(formats, ", "))
	return &v.val
}

type outputValue struct {
	val     string
	allowed []string
}

func (o *outputValue) String() string { return o.val }

func (o *outputValue) Set(s string) error {
	if !slices.Contains(o.allowed, s) {
		return fmt.Errorf("%q: want one of %s", s, strings.Join(o.allowed, ", "))
	}
	o.val = s
	return nil
}

// subcommand is one command of a group (config get, registry ls, ...).
type subcommand func(ctx context.Context, env *cliEnv, args []string) error

// dispatch runs the subcommand args[0] of group. With def set, arguments that do not
// name a subcommand (none, or flags first) run def, so `topology --region x` means
// `topology get --region x`.
func (env *cliEnv) dispatch(ctx context.Context, group, usage string, args []string, def string, subs map[string]subcommand) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(env.stderr, "Usage: otelfleet "+usage)
		return nil
	}
	if len(args) > 0 {
		if run, ok := subs[args[0]]; ok {
			return run(ctx, env, args[1:])
		}
	}
	if def != "" && (len(args) == 0 || strings.HasPrefix(args[0], "-")) {
		return subs[def](ctx, env, args)
	}
	fmt.Fprintln(env.stderr, "Usage: otelfleet "+usage)
	if len(args) == 0 {
		return usageError("%s: missing command", group)
	}
	names := slices.Sorted(maps.Keys(subs))
	return usageError("%s: unknown command %q (want %s)", group, args[0], strings.Join(names, ", "))
}

// printJSON writes v as indented JSON.
func (env *cliEnv) printJSON(v any) error {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a tab writer for aligned columns; call Flush when done.
func (env *cliEnv) table() *tabwriter.Writer {
	return tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
}

func runVersion(_ context.Context, env *cliEnv, _ []string) error {
	fmt.Fprintln(env.stdout, "otelfleet", platform.Version)
	return nil
}

// since formats an age for people.
func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
