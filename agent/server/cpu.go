package server

import (
	"errors"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/bothy/bothy/agent/wire"
)

// processesCPU is the CPU time of the container's cgroup, less the agent's
// own (its keep-alives and the work bothy asks of it).
func processesCPU() (int64, error) {
	total, err := cgroupCPU()
	if err != nil {
		return 0, err
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return max(0, total-ru.Utime.Nano()-ru.Stime.Nano()), nil
}

// cgroupCPU reads the cgroup's CPU time: cgroup v1 cpuacct, or v2 cpu.stat.
func cgroupCPU() (int64, error) {
	for _, p := range []string{"/sys/fs/cgroup/cpuacct/cpuacct.usage", "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"} {
		if b, err := os.ReadFile(p); err == nil {
			return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		}
	}
	b, err := os.ReadFile("/sys/fs/cgroup/cpu.stat")
	if err != nil {
		return 0, errors.New("no cgroup CPU accounting in this sandbox")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return us * 1000, err
		}
	}
	return 0, errors.New("cpu.stat without usage_usec")
}

// cgroupStats reads the sandbox's cgroup: cgroup v1 or v2.
func cgroupStats() wire.Stats {
	var st wire.Stats
	cpu, err := cgroupCPU()
	if err != nil {
		return wire.Stats{Error: err.Error()}
	}
	st.CPUNs = cpu
	st.MemUsed = readCgroupInt("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory.current")
	st.MemLimit = cgroupMemoryLimit()
	for _, p := range []string{"/sys/fs/cgroup/memory/memory.stat", "/sys/fs/cgroup/memory.stat"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && (k == "cache" || k == "file") {
				st.MemCache, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		break
	}
	return st
}

// readCgroupInt reads the number in the first of paths that exists: 0 when
// none does, or for "max" (no limit).
func readCgroupInt(paths ...string) int64 {
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return n
			}
			return 0
		}
	}
	return 0
}

// cgroupMemoryLimit is the sandbox's memory limit in bytes, 0 for none.
func cgroupMemoryLimit() int64 {
	return readCgroupInt("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max")
}

// LimitHeap keeps the agent's heap within half the sandbox's memory limit
// unless GOMEMLIMIT says otherwise: past it the collector works harder
// instead of letting a high GOGC grow the heap to a multiple of what is
// live. Without it, the logs of many background processes (8 MiB each,
// live) grew the agent, PID 1, until the kernel killed it and with it the
// sandbox.
func LimitHeap() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return
	}
	// cgroup v1 reports a huge number for no limit.
	if limit := cgroupMemoryLimit(); limit > 0 && limit < 1<<50 {
		debug.SetMemoryLimit(limit / 2)
	}
}
