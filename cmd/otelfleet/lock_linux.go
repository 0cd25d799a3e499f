package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
)

// lockWatchdogArg is the first argument of the watchdog process that `otelfleet lock`
// runs the command under (it re-executes its own binary).
const lockWatchdogArg = "__otelfleet-lock-watchdog"

// lockParentDeathSignal is what the kernel sends the watchdog when `otelfleet lock`
// dies, however it dies (kill -9 included).
const lockParentDeathSignal = syscall.SIGUSR1

func init() {
	if len(os.Args) > 1 && os.Args[1] == lockWatchdogArg {
		os.Exit(runLockWatchdog(os.Args[2:]))
	}
}

// lockCommand returns the process that runs the command while the lock is held: a
// watchdog (this binary, re-executed) that leads a new process group, gets
// lockParentDeathSignal when `otelfleet lock` dies, and then kills its whole group
// (the command and everything it started) with SIGKILL. The command itself also dies
// with the watchdog (parent-death SIGKILL). Killing the group (-pid) kills them all.
func lockCommand(path string, args []string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the otelfleet binary to run the lock watchdog: %w", err)
	}
	cmd := exec.Command(self, append([]string{lockWatchdogArg, strconv.Itoa(os.Getpid()), path}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: lockParentDeathSignal}
	return cmd, nil
}

// startLockCommand starts cmd on a locked OS thread: the parent-death signal follows the
// thread that forked, and Go keeps that thread alive once it is unlocked.
func startLockCommand(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}

// runLockWatchdog is the watchdog: args are the holder's pid, the command's path and
// its argv. It exits with the command's status (128+signal when it was killed).
func runLockWatchdog(args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "otelfleet lock watchdog: want PARENT-PID PATH ARGV0 [ARGS...]")
		return exitUsage
	}
	parent, err := strconv.Atoi(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "otelfleet lock watchdog: parent pid %q: %v\n", args[0], err)
		return exitUsage
	}
	sigs := make(chan os.Signal, 4)
	// SIGINT/SIGTERM/SIGHUP reach the whole group (the holder forwards them to -pgid):
	// the command handles them; the watchdog stays until the command exits.
	signal.Notify(sigs, lockParentDeathSignal, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	killGroup := func() { _ = syscall.Kill(-syscall.Getpgrp(), syscall.SIGKILL) }
	if os.Getppid() != parent { // the holder died before the death signal was armed
		killGroup()
		return exitRefused
	}
	runtime.LockOSThread() // the command's parent-death signal follows this thread
	cmd := exec.Command(args[1], args[3:]...)
	cmd.Args[0] = args[2]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "otelfleet lock: start %s: %v\n", args[2], err)
		return exitRefused
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			return exitStatus(err)
		case s := <-sigs:
			if s == lockParentDeathSignal || os.Getppid() != parent {
				killGroup()
				return exitRefused
			}
		}
	}
}
