// Command faults runs otelfleet's fault scenarios against the real binaries: a
// nats-server and every service started as processes on 127.0.0.1, hostile values
// written straight into the buckets and subjects, processes killed with SIGKILL. It
// prints one line per scenario with its figure and a final "N passed, N failed" line,
// and exits 1 when a scenario failed. Run it with `make faults` (docs/RELIABILITY.md).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// scenario is one fault: run returns the figure measured, or why the promise broke.
type scenario struct {
	name string
	run  func(s *stack) (string, error)
}

var scenarios = []scenario{
	{"lock-kill9", lockKill9},
	{"hostile-decision-token", hostileToken},
	{"recreated-leases-bucket", recreatedLeases},
	{"unregistered-load-flood", unregisteredFlood},
	{"hostile-config-versions", hostileConfig},
	{"nats-kill9-restart", natsKill9},
}

func main() {
	bin := flag.String("bin", "bin", "directory holding otelfleet, otelfleet-<service> and nats-server")
	only := flag.String("only", "", "run only the scenarios whose name contains this")
	keep := flag.Bool("keep", false, "keep each scenario's directory (process logs, NATS store)")
	flag.Parse()
	for _, b := range append([]string{"otelfleet", "nats-server"}, prefixed("otelfleet-", serviceNames)...) {
		if _, err := os.Stat(filepath.Join(*bin, b)); err != nil {
			fmt.Fprintf(os.Stderr, "faults: %v (run make build, and build nats-server into %s)\n", err, *bin)
			os.Exit(2)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		killAll()
		os.Exit(130)
	}()
	defer killAll()

	passed, failed := 0, 0
	for _, sc := range scenarios {
		if !strings.Contains(sc.name, *only) {
			continue
		}
		figure, err := runOne(*bin, sc, *keep)
		if err != nil {
			failed++
			fmt.Printf("FAIL  %-26s %v\n", sc.name, err)
			continue
		}
		passed++
		fmt.Printf("ok    %-26s %s\n", sc.name, figure)
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	killAll()
	if failed > 0 {
		os.Exit(1)
	}
}

// runOne runs a scenario on a fresh stack in a directory of its own, bounded to 90 s.
func runOne(bin string, sc scenario, keep bool) (figure string, err error) {
	dir, err := os.MkdirTemp("", "otelfleet-faults-"+sc.name+"-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil || keep {
			err = fmtErr(err, dir)
			return
		}
		os.RemoveAll(dir)
	}()
	type result struct {
		figure string
		err    error
	}
	done := make(chan result, 1)
	began := time.Now()
	var s *stack
	go func() {
		var r result
		s, r.err = newStack(bin, dir)
		if r.err == nil {
			r.figure, r.err = sc.run(s)
		}
		done <- r
	}()
	select {
	case r := <-done:
		if s != nil {
			s.close()
		}
		killAll()
		if r.err == nil {
			r.figure += fmt.Sprintf(" [%.0fs]", time.Since(began).Seconds())
		}
		return r.figure, r.err
	case <-time.After(90 * time.Second):
		killAll()
		return "", fmt.Errorf("scenario did not finish within 90s")
	}
}

func fmtErr(err error, dir string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w (logs in %s)", err, dir)
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}
