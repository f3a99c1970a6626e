//go:build !sockfault

package sockio

// read and write are the system calls themselves; a build with the
// sockfault tag puts faults between them and their callers (fault.go).
func read(fd uintptr, p []byte) (int, error)  { return sysRead(fd, p) }
func write(fd uintptr, p []byte) (int, error) { return sysWrite(fd, p) }
