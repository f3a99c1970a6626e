// Package procstat reads what a process (and its children) cost, from
// Linux's /proc: CPU time over all threads, context switches summed over
// every thread, and resident memory. `make bench` samples it before and
// after each scenario to bill CPU and context switches per request to the
// process under test (latch, HAProxy, nginx's master and workers).
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const clockTick = 10 * time.Millisecond

// Stat is one sample of a process tree.
type Stat struct {
	CPU         time.Duration // user + system time of every thread, ended ones included
	CtxSwitches int64         // voluntary + nonvoluntary, summed over live threads
	RSS         int64         // resident bytes
}

// Sub returns the difference s - o.
func (s Stat) Sub(o Stat) Stat {
	return Stat{CPU: s.CPU - o.CPU, CtxSwitches: s.CtxSwitches - o.CtxSwitches, RSS: s.RSS - o.RSS}
}

// Read samples pid and every process descended from it.
func Read(pid int) (Stat, error) {
	var total Stat
	for _, p := range append([]int{pid}, descendants(pid)...) {
		s, err := readOne(p)
		if err != nil {
			if p == pid {
				return Stat{}, err
			}
			continue // a child that just ended
		}
		total.CPU += s.CPU
		total.CtxSwitches += s.CtxSwitches
		total.RSS += s.RSS
	}
	return total, nil
}

func readOne(pid int) (Stat, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	data, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Stat{}, err
	}
	f, err := statFields(data)
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: %s/stat: %w", dir, err)
	}
	// Fields after the command, from field 3 (state): utime is field 14,
	// stime 15 (proc(5)); they cover every thread, ended ones included.
	ut, _ := strconv.ParseInt(f[14-3], 10, 64)
	st, _ := strconv.ParseInt(f[15-3], 10, 64)
	s := Stat{CPU: time.Duration(ut+st) * clockTick}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Stat{}, err
	}
	s.RSS = statusField(status, "VmRSS:") * 1024
	// /proc/<pid>/status counts the main thread's switches only: sum the tasks.
	tasks, _ := filepath.Glob(dir + "/task/*/status")
	for _, t := range tasks {
		if ts, err := os.ReadFile(t); err == nil {
			s.CtxSwitches += statusField(ts, "voluntary_ctxt_switches:") + statusField(ts, "nonvoluntary_ctxt_switches:")
		}
	}
	return s, nil
}

// statFields returns /proc/<pid>/stat's fields after "(comm)", which may
// itself hold spaces and parentheses.
func statFields(data []byte) ([]string, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("no command field")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15-3+1 {
		return nil, fmt.Errorf("%d fields", len(f))
	}
	return f, nil
}

func statusField(status []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// descendants lists the processes below pid (nginx's workers, say), from
// each process's parent in /proc/*/stat.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if f, err := statFields(data); err == nil {
			ppid, _ := strconv.Atoi(f[1]) // field 4
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}
