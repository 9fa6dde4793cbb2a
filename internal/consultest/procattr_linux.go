package consultest

import "syscall"

// procAttr kills the agent when the test binary dies: one killed by
// -timeout runs no cleanup, and the agent would keep its ports and a core.
// (The signal follows the thread that started the agent; Go ends threads
// only for goroutines locked to them, which the harness does not use.)
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
