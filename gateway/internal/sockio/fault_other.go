//go:build sockfault && !linux

package sockio

// rearm cannot reach the poller's registrations here: no EAGAIN is
// injected (fault.go).
func rearm(uintptr) bool { return false }
