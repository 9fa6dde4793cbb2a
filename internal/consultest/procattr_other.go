//go:build !linux

package consultest

import "syscall"

// procAttr: only Linux can tie the agent's life to the test binary's.
func procAttr() *syscall.SysProcAttr { return nil }
