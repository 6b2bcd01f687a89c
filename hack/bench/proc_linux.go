package main

import "syscall"

// childSysProcAttr ties a child to the bench: it is killed when the bench
// dies, and it gets its own process group.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
