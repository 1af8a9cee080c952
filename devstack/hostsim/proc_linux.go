//go:build linux

package hostsim

import "syscall"

// setParentDeathSignal has the kernel SIGKILL the handler when the thread
// that started it (and so, in practice, the host process) dies.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
