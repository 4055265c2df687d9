package agent

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUUsage answers op "cpu": the CPU time the sandbox's processes have used,
// the agent's own left out.
type CPUUsage struct {
	UsageNs int64  `json:"usage_ns"`
	Error   string `json:"error,omitempty"`
}

// processesCPU is the CPU time of the container's cgroup, less the agent's
// own (its keep-alives and the work sandboxd asks of it).
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

// CPU reports the CPU time the sandbox's processes have used so far.
func (c *Conn) CPU(ctx context.Context) (time.Duration, error) {
	var u CPUUsage
	if err := c.call(ctx, Request{Op: "cpu"}, &u); err != nil {
		return 0, err
	}
	if u.Error != "" {
		return 0, errors.New(u.Error)
	}
	return time.Duration(u.UsageNs), nil
}
