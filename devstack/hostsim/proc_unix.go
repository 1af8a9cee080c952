//go:build unix

package hostsim

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the handler in its own process group so that a kill
// also reaches anything it started (e.g. when the executable is a script).
// Being in its own group, it does not get the terminal's Ctrl-C: the host
// stops it. Where the OS can (Linux), it is also killed when the host
// process dies without stopping it (SIGKILL, a crash).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
}

func killProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}

func terminateProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
}
