//go:build !sockfault

package gateway

// faulty: this test binary's sockets are not faulted (see sockfault_test.go).
const faulty = false

func seedFaults(uint64) {}

func faultsInjected() int64 { return 0 }
