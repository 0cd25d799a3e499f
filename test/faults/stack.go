package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// procs tracks every process the suite started (each leads its own process group), so
// that all of them are killed on the way out, whatever happens.
var procs struct {
	sync.Mutex
	all []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// killAll kills every process still running and forgets them all.
func killAll() {
	procs.Lock()
	all := procs.all
	procs.all = nil
	procs.Unlock()
	for _, p := range all {
		p.kill()
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs bin with args, its output in dir/<name>.log.
func start(dir, name, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	procs.Lock()
	procs.all = append(procs.all, p)
	procs.Unlock()
	return p, nil
}

// kill sends SIGKILL to the process alone (kill -9) and waits for it.
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// kill ends the process and its whole group with SIGKILL.
func (p *proc) kill() { p.signalGroup(syscall.SIGKILL) }

// stop asks the process group to stop (SIGTERM), then kills it after 5 s.
func (p *proc) stop() {
	if !p.signalGroup(syscall.SIGTERM) {
		p.kill()
	}
}

// signalGroup sends sig to the process's group and reports whether the process exited
// within 5 s. A process already reaped is left alone: its pid may have been reused.
func (p *proc) signalGroup(sig syscall.Signal) bool {
	if p.exited() {
		return true
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// eventually polls cond every 50 ms until it holds or within passes.
func eventually(within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// stack is nats-server plus every service and a simulated fleet, all on 127.0.0.1.
type stack struct {
	bin, dir string
	natsPort int
	nats     *proc
	services []*proc
	admin    map[string]string   // service -> admin address
	args     map[string][]string // service -> its arguments
	nc       *nats.Conn
	js       jetstream.JetStream
}

var serviceNames = []string{"config", "registry", "topology", "sampler"}

func newStack(bin, dir string) (*stack, error) {
	s := &stack{bin: bin, dir: dir, admin: map[string]string{}, args: map[string][]string{}}
	var err error
	if s.natsPort, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.startNATS(); err != nil {
		return nil, err
	}
	s.nc, err = nats.Connect(s.url(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("connect to nats-server: %w", err)
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, err
	}
	for _, name := range serviceNames {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.admin[name] = "127.0.0.1:" + strconv.Itoa(port)
		args := []string{"--nats", s.url(), "--admin-addr", s.admin[name], "--instance-id", name + "-1", "--lease-ttl", "2s", "--registry-ttl", "5s", "--log-format", "text"}
		if name == "sampler" {
			sp, err := freePort()
			if err != nil {
				return nil, err
			}
			args = append(args, "--sampling-interval", "1s", "--sampling-addr", "127.0.0.1:"+strconv.Itoa(sp))
		}
		s.args[name] = args
		p, err := start(dir, name, filepath.Join(bin, "otelfleet-"+name), args...)
		if err != nil {
			return nil, err
		}
		s.services = append(s.services, p)
	}
	if _, err := s.ready(30 * time.Second); err != nil {
		return nil, err
	}
	if _, err := start(dir, "simulate", filepath.Join(bin, "otelfleet"), "--nats", s.url(), "simulate", "--regions", "2", "--collectors", "3", "--interval", "500ms", "--pattern", "steady", "--id-prefix", "fault"); err != nil {
		return nil, err
	}
	return s, nil
}

// restart kills service i with SIGKILL and starts it again with the same arguments.
func (s *stack) restart(i int) error {
	name := serviceNames[i]
	s.services[i].kill9()
	p, err := start(s.dir, name+"-again", filepath.Join(s.bin, "otelfleet-"+name), s.args[name]...)
	if err != nil {
		return err
	}
	s.services[i] = p
	return nil
}

func (s *stack) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.natsPort) }

func (s *stack) startNATS() error {
	p, err := start(s.dir, "nats-server", filepath.Join(s.bin, "nats-server"), "-a", "127.0.0.1", "-p", strconv.Itoa(s.natsPort), "-js", "-sd", filepath.Join(s.dir, "js"))
	if err != nil {
		return err
	}
	s.nats = p
	return eventually(10*time.Second, "nats-server accepts connections", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.natsPort), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// ready waits until every service answers /readyz with 200 and returns how long it took.
func (s *stack) ready(within time.Duration) (time.Duration, error) {
	began := time.Now()
	client := &http.Client{Timeout: time.Second}
	err := eventually(within, "every service ready", func() bool {
		for _, addr := range s.admin {
			resp, err := client.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
	return time.Since(began), err
}

func (s *stack) close() {
	if s.nc != nil {
		s.nc.Close()
	}
	procs.Lock()
	all := procs.all
	procs.Unlock()
	for _, p := range all {
		if p != s.nats {
			p.stop()
		}
	}
	if s.nats != nil {
		s.nats.stop()
	}
}

// kv opens a bucket of the contract.
func (s *stack) kv(name string) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.js.KeyValue(ctx, name)
}

// cli runs bin/otelfleet against the stack and returns its stdout.
func (s *stack) cli(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "otelfleet"), append([]string{"--nats", s.url()}, args...)...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, fmt.Errorf("otelfleet %v: %w: %s", args, err, ee.Stderr)
	}
	return out, err
}
