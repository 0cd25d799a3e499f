package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lock"
)

const lockUsage = `lock NAME [--id ID] [--wait D] [--ttl D] -- CMD [ARGS...]

Runs CMD while holding the distributed lock NAME (key lock.NAME in otlp_leases) and exits
with CMD's status, like etcdctl lock. CMD gets OTELFLEET_LOCK_NAME and
OTELFLEET_LOCK_TOKEN (the fencing token: pass it along with every write CMD makes).
If the lock is lost while CMD runs (renewals not confirmed in time), CMD's process group
is killed at once and lock exits 1 with a message; if lock itself dies (even kill -9),
the group is killed too (Linux). A paused or partitioned holder can still overlap the
next one by up to a TTL: fence writes with the token. SIGINT/SIGTERM are passed on to CMD;
the lock is released when CMD exits.`

// lockWaitExit is the exit code when --wait expires before the lock is won.
const lockWaitExit = exitRefused

func runLock(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("lock", lockUsage)
	var id string
	var wait, ttl time.Duration
	k.String(&id, "id", "", defaultCandidateID(), "holder id written into the lock")
	k.Duration(&wait, "wait", "", 0, "give up (exit 1) if the lock is not won within this long; 0 waits forever")
	k.Duration(&ttl, "ttl", "", 0, "expected lease TTL; the TTL is the otlp_leases bucket's (--lease-ttl of the services): a different value is refused")
	name, cmdArgs, err := splitLockArgs(fs, args)
	if err != nil {
		return err
	}
	if err := (lock.Config{Name: name}).Validate(); err != nil {
		return usageError("lock: %v", err)
	}
	if wait < 0 || ttl < 0 {
		return usageError("lock: --wait and --ttl must not be negative")
	}
	path, err := exec.LookPath(cmdArgs[0])
	if err != nil {
		return usageError("lock: command %q: %v", cmdArgs[0], err)
	}

	nc, js, log, err := env.longLived(ctx, "lock-"+name)
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.LeasesBucket)
	if err != nil {
		return err
	}
	if ttl > 0 {
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		if st.TTL() != ttl {
			return usageError("lock: --ttl %v: the lease TTL is a property of the %s bucket (%v, set by the services' --lease-ttl); omit --ttl or pass %v", ttl, kv.Bucket(), st.TTL(), st.TTL())
		}
	}
	l, err := lock.NewKV(nc, kv, lock.Config{Name: name, ID: id}, log)
	if err != nil {
		return err
	}
	actx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	h, err := l.Acquire(actx)
	if err != nil {
		if ctx.Err() != nil {
			return refused(fmt.Errorf("lock %s: interrupted while waiting", name))
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return &exitError{code: lockWaitExit, err: fmt.Errorf("lock %s: not acquired within %v", name, wait)}
		}
		return err
	}
	fmt.Fprintf(env.stderr, "otelfleet lock: acquired %s (token %d)\n", name, h.Token())
	status, runErr := runLocked(ctx, env, h, path, cmdArgs, name)
	relCtx, cancel := context.WithTimeout(context.Background(), env.timeout)
	defer cancel()
	if err := l.Release(relCtx); err != nil && !errors.Is(err, lock.ErrNotHeld) {
		fmt.Fprintf(env.stderr, "otelfleet lock: release %s: %v (it will expire)\n", name, err)
	}
	if runErr != nil {
		return runErr
	}
	if status != 0 {
		return &exitError{code: status, err: fmt.Errorf("%s exited with status %d", cmdArgs[0], status)}
	}
	return nil
}

// splitLockArgs separates `NAME [flags] -- CMD ARGS` (or `[flags] NAME CMD ARGS`).
func splitLockArgs(fs *flag.FlagSet, args []string) (string, []string, error) {
	var head, cmd []string
	dd := -1
	for i, a := range args {
		if a == "--" {
			dd = i
			break
		}
	}
	if dd >= 0 {
		head, cmd = args[:dd], args[dd+1:]
		pos, err := parse(fs, head)
		if err != nil {
			return "", nil, err
		}
		if len(pos) != 1 {
			return "", nil, usageError("lock: want one NAME before --, got %d arguments", len(pos))
		}
		if len(cmd) == 0 {
			return "", nil, usageError("lock: no command after --")
		}
		return pos[0], cmd, nil
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, err
		}
		return "", nil, &exitError{code: exitUsage, err: err}
	}
	if fs.NArg() < 2 {
		return "", nil, usageError("lock: want NAME -- CMD [ARGS...]")
	}
	return fs.Arg(0), fs.Args()[1:], nil
}

// runLocked runs the command while h is held, in a process group of its own (on Linux
// under a watchdog that kills the group when this process dies, kill -9 included). It
// returns the command's exit status, or an error when the lock was lost (the group is
// then killed).
func runLocked(ctx context.Context, env *cliEnv, h *lock.Held, path string, args []string, name string) (int, error) {
	cmd, err := lockCommand(path, args)
	if err != nil {
		return 0, refused(fmt.Errorf("lock %s: %w", name, err))
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, env.stdout, env.stderr
	cmd.Env = append(os.Environ(), "OTELFLEET_LOCK_NAME="+name, "OTELFLEET_LOCK_TOKEN="+strconv.FormatUint(h.Token(), 10))
	if err := startLockCommand(cmd); err != nil {
		return 0, refused(fmt.Errorf("lock %s: start %s: %w", name, args[0], err))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	signalled := false
	for {
		select {
		case err := <-exited:
			return exitStatus(err), nil
		case <-ctx.Done():
			if !signalled {
				signalled = true
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			}
			ctx = context.Background() // wait for the command now
		case <-h.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return 0, refused(fmt.Errorf("lock %s lost while %s ran (%v); killed it", name, args[0], h.Err()))
		}
	}
}

// exitStatus maps a command's Wait error to its exit status (128+signal when killed).
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return exitRefused
}
