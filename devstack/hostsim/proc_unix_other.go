//go:build unix && !linux

package hostsim

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
