//go:build !linux

package main

import (
	"os/exec"
	"syscall"
)

// lockCommand runs the command directly in its own process group. Without a
// parent-death signal the command outlives a killed `otelfleet lock` on this platform
// (see docs/RELIABILITY.md).
func lockCommand(path string, args []string) (*exec.Cmd, error) {
	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

func startLockCommand(cmd *exec.Cmd) error { return cmd.Start() }
