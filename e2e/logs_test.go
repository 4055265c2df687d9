package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestHundredMegabytesOfOutput: a background process prints 100 MB while
// four clients follow its log through bothy, one of them slowly. Each
// follower sees the output as one unbroken run of offsets, where a gap
// record stands for what it fell too far behind to get; a reader from 0
// after the end gets a gap first (the agent keeps the last 8 MiB); and
// bothy's resident memory does not grow with the output: three rounds
// of it leave the same peak as one.
func TestHundredMegabytesOfOutput(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-logs-key-0123456789abcdef012"
	const total = 100 << 20 // bytes of output in each round
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	// GOGC=100: the peak then follows what bothy holds, not the garbage
	// that its default GC target lets build up between collections.
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox", "GOGC=100")
	// The peak of bothy's resident memory (VmHWM), after each round.
	var peaks []int64
	ctx := context.Background()
	c := api.NewClient(d.url, key)
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		followHundredMegabytes(t, c, sb.ID, total)
		peaks = append(peaks, peakRSS(t, d.cmd.Process.Pid))
	}
	t.Logf("bothy's peak RSS after each 100 MB sent to 4 followers: %d, %d, %d MiB", peaks[0]>>20, peaks[1]>>20, peaks[2]>>20)
	// Rounds 2 and 3 send 800 MB: a bothy that held a tenth of what it
	// sent would grow by 80 MB. What moves the peak here is the collector's
	// pacing.
	if peaks[2]-peaks[0] > 64<<20 || peaks[2] > 256<<20 {
		t.Fatalf("bothy's memory grew with the output: peak RSS %d, %d, %d MiB", peaks[0]>>20, peaks[1]>>20, peaks[2]>>20)
	}
}

// followHundredMegabytes runs a process that prints total bytes while four
// clients follow its log, the first one slowly, and checks what each saw.
func followHundredMegabytes(t *testing.T, c *api.Client, id string, total int64) {
	t.Helper()
	ctx := context.Background()
	// The process waits for a line on stdin, so that every follower is
	// attached before the first byte.
	p, err := c.StartProcess(ctx, id, api.StartProcessRequest{Stdin: true,
		Shell: "read go; yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c " + strconv.FormatInt(total, 10)})
	if err != nil {
		t.Fatal(err)
	}

	type seen struct {
		bytes, gaps, end int64
		err              error
	}
	results := make([]seen, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			next := int64(0)
			r.err = c.ProcessLogs(ctx, id, p.PID, 0, true, func(rec api.LogRecord) error {
				if i == 0 && next == 0 && rec.Type == "output" {
					// The slow follower reads no more until the process
					// has ended: by then it has fallen behind the kept log.
					if _, err := c.WaitProcess(ctx, id, p.PID, 5*time.Minute); err != nil {
						return err
					}
				}
				switch rec.Type {
				case "output":
					if rec.Offset != next {
						return fmt.Errorf("a record at %d, want %d", rec.Offset, next)
					}
					r.bytes += int64(len(rec.Data))
					next += int64(len(rec.Data))
				case "gap":
					if rec.Offset != next || rec.To <= next {
						return fmt.Errorf("a gap %d-%d, want one from %d", rec.Offset, rec.To, next)
					}
					r.gaps++
					next = rec.To
				case "end":
					r.end = next
				}
				return nil
			})
		}()
	}
	// Followers that attach after this still read from 0: each sees the
	// whole run of offsets.
	if _, err := c.WriteStdin(ctx, id, p.PID, []byte("go\n")); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.end != total {
			t.Fatalf("follower %d: %+v", i, r)
		}
	}
	if results[0].gaps == 0 {
		t.Fatalf("the slow follower saw no gap: %+v", results[0])
	}
	var firstRec api.LogRecord
	stop := fmt.Errorf("stop")
	if err := c.ProcessLogs(ctx, id, p.PID, 0, false, func(rec api.LogRecord) error { firstRec = rec; return stop }); err != stop {
		t.Fatal(err)
	}
	if firstRec.Type != "gap" || firstRec.Offset != 0 || firstRec.To < total-(8<<20) {
		t.Fatalf("a reader from 0 after the end: %+v", firstRec)
	}
}

// peakRSS reads the peak resident memory of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}
