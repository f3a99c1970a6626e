package gateway

import (
	"golang.org/x/sys/unix"
)

func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// synFilter is a classic BPF socket filter dropping TCP segments with SYN
// set and ACK clear (new connections) and keeping every other: the final
// ACK of a handshake under way still reaches its request. A TCP socket's
// filter sees the segment from its TCP header on; byte 13 holds the flags.
var synFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 13},
	{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12}, // SYN | ACK
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jt: 1, Jf: 0},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}, // keep
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},          // drop
}

func dropSYNs(fd uintptr) error {
	prog := unix.SockFprog{Len: uint16(len(synFilter)), Filter: &synFilter[0]}
	return unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

// acceptQueue is the number of connections waiting in a listening
// socket's accept queue: TCP_INFO's unacked field holds it for listeners.
func acceptQueue(fd uintptr) (int, error) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, err
	}
	return int(info.Unacked), nil
}
