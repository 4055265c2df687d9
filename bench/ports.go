package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// portsResults are the figures of background processes and the port proxy.
type portsResults struct {
	rows                    []row
	proxyMBps, directMBps   float64
	proxyBytes, directBytes int64
}

// bigPortFile is the size of the file the proxy throughput moves.
const bigPortFile = 100 << 20

// benchPorts measures a background process's start to its first log line
// (against a docker exec of the same command, to its output), and a small
// request and a 100 MiB download through the port proxy (against the same
// server at the container's own address, from the host).
func benchPorts(ctx context.Context, c *api.Client, eng *docker.Docker, n int) (portsResults, error) {
	var res portsResults
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		return res, err
	}
	defer c.DeleteSandbox(context.WithoutCancel(ctx), sb.ID)
	cname := "bothy-" + sb.ID

	var startOurs, startBase []time.Duration
	found := errors.New("found")
	for range n {
		t0 := time.Now()
		p, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"echo", "ready"}})
		if err != nil {
			return res, err
		}
		err = c.ProcessLogs(ctx, sb.ID, p.PID, 0, true, func(r api.LogRecord) error {
			if strings.Contains(r.Data, "ready") {
				return found
			}
			return nil
		})
		if !errors.Is(err, found) {
			return res, fmt.Errorf("process logs: %v", err)
		}
		startOurs = append(startOurs, time.Since(t0))
	}
	for range max(10, n/4) {
		t0 := time.Now()
		if code, err := eng.DockerExec(ctx, cname, []string{"echo", "ready"}); err != nil || code != 0 {
			return res, fmt.Errorf("docker exec: %d %v", code, err)
		}
		startBase = append(startBase, time.Since(t0))
	}

	setup := fmt.Sprintf("mkdir -p /srv && head -c %d /dev/zero > /srv/big && echo hi > /srv/small && hostname -I", bigPortFile)
	r, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: setup})
	if err != nil || r.ExitCode != 0 {
		return res, fmt.Errorf("setup: %v %+v", err, r)
	}
	ip := strings.Fields(r.Stdout)[0]
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "cd /srv && exec python3 -m http.server 8000"}); err != nil {
		return res, err
	}
	if err := c.WaitPort(ctx, sb.ID, 8000, time.Minute); err != nil {
		return res, err
	}
	// The same client both ways; its large buffers keep its own reads of a
	// big answer from costing more than either side's server.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, ReadBufferSize: 256 << 10}}
	fetch := func(url string, auth bool) (int64, time.Duration, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+benchKey)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		m, err := io.Copy(io.Discard, resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		}
		return m, time.Since(t0), err
	}
	proxied, direct := c.PortURL(sb.ID, 8000, "/"), "http://"+ip+":8000/"
	var reqOurs, reqBase []time.Duration
	for i := range 3*n + 10 {
		_, d, err := fetch(proxied+"small", true)
		if err != nil {
			return res, err
		}
		_, b, err := fetch(direct+"small", false)
		if err != nil {
			return res, err
		}
		if i >= 10 { // the first ones warm up connections and caches
			reqOurs, reqBase = append(reqOurs, d), append(reqBase, b)
		}
	}
	// Three downloads each way, alternating; the median of each.
	var dOurs, dBase []time.Duration
	for range 3 {
		m, d, err := fetch(proxied+"big", true)
		if err != nil {
			return res, err
		}
		res.proxyBytes, dOurs = m, append(dOurs, d)
		if m, d, err = fetch(direct+"big", false); err != nil {
			return res, err
		}
		res.directBytes, dBase = m, append(dBase, d)
	}
	res.proxyMBps = float64(res.proxyBytes) / 1e6 / pct(dOurs, 50).Seconds()
	res.directMBps = float64(res.directBytes) / 1e6 / pct(dBase, 50).Seconds()
	res.rows = []row{
		{name: "background process start -> first log line (vs docker exec of the same, to its output)", ours: startOurs, base: startBase, target: "-"},
		{name: "small HTTP request through the port proxy (vs the same server at the container's address, from the host)", ours: reqOurs, base: reqBase, target: "p50 <= 2 ms and <= 2 x baseline"},
	}
	return res, nil
}

func printPorts(p portsResults) {
	fmt.Printf("| download 100 MiB through the port proxy, median of 3 (vs the container's address, from the host) | 3 / 3 | %.0f MB/s | - | %.0f MB/s | - | %.3f (throughput) | >= 300 MB/s |\n",
		p.proxyMBps, p.directMBps, p.proxyMBps/p.directMBps)
}
