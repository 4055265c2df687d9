package server

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// threads counts this process's OS threads.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

func TestReserveThreads(t *testing.T) {
	before := threads(t)
	ReserveThreads(before + 8)
	if after := threads(t); after < before+8 {
		t.Fatalf("%d threads before, %d after reserving %d", before, after, before+8)
	}
}
