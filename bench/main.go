// Command bench measures bothy beside plain Docker on this machine, in one
// run, and prints each figure with its baseline and the ratio between them:
//
//   - exec `true` through bothy's REST API vs `docker exec` through the
//     Engine API, in the same container;
//   - create sandbox -> first exec (cold: no warm pool) vs docker create+start
//     of the same image.
//
// It starts the bothyd binary it is given on a free loopback port with a
// scratch data directory, and removes everything it made.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

func main() {
	bin := flag.String("bothyd", "bin/bothyd", "bothyd binary")
	agentBin := flag.String("agent", "bin/bothy-agent", "bothy-agent binary")
	image := flag.String("image", "bothy/base:latest", "image both sides run")
	execN := flag.Int("exec-n", 2000, "execs through bothy")
	dockerN := flag.Int("docker-exec-n", 100, "execs through docker")
	createN := flag.Int("create-n", 10, "cold creates on each side")
	echoN := flag.Int("echo-n", 1000, "keystroke round trips through bothy (a tenth as many through docker)")
	fileN := flag.Int("file-n", 100, "1 MiB write+read pairs through bothy (a quarter as many through docker)")
	flag.IntVar(&runN, "run-n", 1000, "dynamic runs and app invokes through bothy")
	flag.IntVar(&dockerRunN, "docker-run-n", 10, "docker run --rm of the same snippets")
	flag.IntVar(&poolN, "pool-n", 40, "creates served by the warm sandbox pool")
	flag.IntVar(&densityN, "density-n", 500, "idle sandboxes to hold at once")
	flag.StringVar(&only, "only", "", `"dynamic" measures only dynamic code and apps; "disk" only the cost of disk limits; "diff" only snapshot diffs; "snapshots" only checkpoints and restores; "capture" only checkpoints the agent captures; "ports" only background processes and the port proxy; "pool" only the warm sandbox pool; "registry" only checkpoints and restores through a registry; "transport" only exec over the agent channel's network transport; "fork" only forks; "density" only many idle sandboxes; "kube" only sandboxes on Kubernetes (the cluster of scripts/kube.sh env: BOTHY_KUBECONFIG, BOTHY_KUBE_REGISTRY, BOTHY_KUBECTL)`)
	flag.Parse()
	if err := run(*bin, *agentBin, *image, *execN, *dockerN, *createN, *echoN, *fileN); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// benchKey is the admin key of the bothy the benchmark starts.
const benchKey = "bench-admin-key-0123456789abcdef"

var (
	runN, dockerRunN, poolN, densityN int
	only                              string
)

type row struct {
	name       string
	ours, base []time.Duration
	target     string
}

func run(bin, agentBin, image string, execN, dockerN, createN, echoN, fileN int) error {
	ctx := context.Background()
	// No warm sandbox pool here: the rows below measure cold creates (the
	// pool has its own bothy, in benchPool).
	sd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "4", "--sandbox-pool", "0")
	if err != nil {
		return err
	}
	defer sd.stop()
	c := api.NewClient(sd.url, benchKey)
	eng, err := docker.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer eng.Close()
	info, _ := eng.Info(ctx)
	header := func() {
		fmt.Printf("bothy benchmark, %s, %d cores, Docker %s (userns remap %v), image %s\n\n",
			time.Now().UTC().Format("2006-01-02 15:04 UTC"), numCPU(), info.Version, info.UsernsRemap, image)
		fmt.Println("| operation | n | bothy p50 | bothy p99 | Docker p50 | Docker p99 | p50 ratio | target |")
		fmt.Println("|---|---|---|---|---|---|---|---|")
	}
	dynamic := func() (dynamicResults, error) {
		dyn, err := benchDynamic(ctx, c, runN, dockerRunN)
		if err != nil {
			return dyn, fmt.Errorf("%w\nbothy's log:\n%s", err, sd.logs.String())
		}
		return dyn, nil
	}
	if only == "dynamic" {
		dyn, err := dynamic()
		if err != nil {
			return err
		}
		header()
		printRows(dyn.rows)
		printDynamic(dyn)
		return nil
	}

	if only == "diff" {
		d, err := benchDiff(ctx, c, eng, image, 20)
		if err != nil {
			return err
		}
		header()
		printRows(d.rows)
		printFirstDiff(d)
		return nil
	}

	if only == "snapshots" {
		snapOurs, snapBase, restOurs, restBase, _, err := benchSnapshot(ctx, c, eng, image)
		if err != nil {
			return err
		}
		header()
		printRows([]row{
			{name: "checkpoint, 100 MB changed (vs docker commit)", ours: snapOurs, base: snapBase, target: "<= 1.2 x baseline"},
			{name: "restore snapshot -> first exec (vs docker create+start)", ours: restOurs, base: restBase, target: "p50 <= 1.2 x baseline"},
		})
		return nil
	}

	if only == "capture" {
		rows, err := benchCapture(ctx, bin, agentBin, image, eng, 3)
		if err != nil {
			return err
		}
		header()
		printRows(rows)
		return nil
	}

	if only == "ports" {
		p, err := benchPorts(ctx, c, eng, 100)
		if err != nil {
			return err
		}
		header()
		printRows(p.rows)
		printPorts(p)
		return nil
	}

	density := func() (densityResults, error) {
		instance, err := sd.instance()
		if err != nil {
			return densityResults{}, err
		}
		return benchDensity(ctx, c, eng, image, densityN, sd.cmd.Process.Pid, instance)
	}
	if only == "density" {
		d, err := density()
		if err != nil {
			return err
		}
		header()
		printRows(d.rows)
		printDensity(d)
		return nil
	}

	if only == "fork" {
		rows, err := benchFork(ctx, c, eng, image, 5)
		if err != nil {
			return err
		}
		header()
		printRows(rows)
		return nil
	}

	if only == "pool" {
		rows, err := benchPool(ctx, bin, agentBin, image, eng, poolN)
		if err != nil {
			return err
		}
		header()
		printRows(rows)
		return nil
	}

	if only == "registry" {
		var rows []row
		for _, checkpoint := range []string{"commit", "agent"} {
			r, err := benchRegistry(ctx, bin, agentBin, image, checkpoint, eng, 3)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		header()
		printRows(rows)
		return nil
	}

	if only == "transport" {
		rows, err := benchTransport(ctx, c, bin, agentBin, image, eng, 500)
		if err != nil {
			return err
		}
		header()
		printRows(rows)
		return nil
	}

	kube := func() ([]row, error) {
		k, ok := kubeFromEnv()
		if !ok {
			return nil, fmt.Errorf("no cluster: BOTHY_KUBECONFIG and BOTHY_KUBE_REGISTRY are not set (make bench-kube sets them)")
		}
		b := images.New(eng, slog.New(slog.NewTextHandler(io.Discard, nil)), "", filepath.Join(os.TempDir(), "bothy-bench-build"))
		defer b.Close()
		b.UseRegistry(k.registry, images.RegistryAccess{})
		// Twice the cold creates: a pod's start on either side waits for
		// the kubelet's next relist (every second), which spreads both.
		return benchKube(ctx, bin, agentBin, k, eng, "bothy/busybox:latest", b.RemoteRef("bothy/busybox:latest"), 200, 2*createN)
	}
	if only == "kube" {
		rows, err := kube()
		if err != nil {
			return err
		}
		header()
		printRows(rows)
		return nil
	}

	if only == "disk" {
		if info.DiskLimits == "" {
			return fmt.Errorf("this engine (%s) enforces no disk size", info.StorageDriver)
		}
		rows, err := benchDisk(ctx, c, eng, image, createN)
		if err != nil {
			return err
		}
		header()
		printRows(rows)
		return nil
	}

	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return err
	}
	defer c.DeleteSandbox(context.WithoutCancel(ctx), sb.ID)

	// exec `true`: bothy REST vs docker exec, same container.
	execTrue := api.ExecRequest{Cmd: []string{"true"}}
	for range 100 { // warm up connections and caches
		if _, err := c.Exec(ctx, sb.ID, execTrue); err != nil {
			return err
		}
	}
	ours := make([]time.Duration, 0, execN)
	for range execN {
		t0 := time.Now()
		res, err := c.Exec(ctx, sb.ID, execTrue)
		if err != nil || res.ExitCode != 0 {
			return fmt.Errorf("exec: %v %+v", err, res)
		}
		ours = append(ours, time.Since(t0))
	}
	cname := "bothy-" + sb.ID
	base := make([]time.Duration, 0, dockerN)
	for i := range dockerN + 5 {
		t0 := time.Now()
		code, err := eng.DockerExec(ctx, cname, []string{"true"})
		if err != nil || code != 0 {
			return fmt.Errorf("docker exec: %v %d", err, code)
		}
		if i >= 5 {
			base = append(base, time.Since(t0))
		}
	}
	rows := []row{{name: "exec `true` (REST vs docker exec)", ours: ours, base: base, target: "p50 <= 3 ms, p99 <= 15 ms"}}
	transportRows, err := benchTransport(ctx, c, bin, agentBin, image, eng, 500)
	if err != nil {
		return err
	}
	rows = append(rows, transportRows...)

	// Cold create -> first exec vs docker create+start, on Docker's default
	// bridge and on the same isolated network sandboxes join.
	var createOurs, createBase, createSameNet []time.Duration
	for range createN {
		t0 := time.Now()
		s, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
		if err != nil {
			return err
		}
		if _, err := c.Exec(ctx, s.ID, execTrue); err != nil {
			return err
		}
		createOurs = append(createOurs, time.Since(t0))
		if err := c.DeleteSandbox(ctx, s.ID); err != nil {
			return err
		}

		for _, side := range []struct {
			network string
			out     *[]time.Duration
		}{{"bridge", &createBase}, {"bothy", &createSameNet}} {
			d, err := dockerCreateStart(ctx, eng, image, side.network)
			if err != nil {
				return err
			}
			*side.out = append(*side.out, d)
		}
	}
	rows = append(rows,
		row{name: "create -> first exec, cold (vs docker create+start, default bridge)", ours: createOurs, base: createBase, target: "p50 <= 1.2 x baseline"},
		row{name: "create -> first exec, cold (vs docker create+start, same isolated network)", ours: createOurs, base: createSameNet, target: "p50 <= 1.1 x baseline"})
	poolRows, err := benchPool(ctx, bin, agentBin, image, eng, poolN)
	if err != nil {
		return err
	}
	rows = append(rows, poolRows...)
	forkRows, err := benchFork(ctx, c, eng, image, createN)
	if err != nil {
		return err
	}
	rows = append(rows, forkRows...)

	// Disk limits: what a size costs to create and to write, where the
	// engine enforces one.
	if info.DiskLimits != "" {
		diskRows, err := benchDisk(ctx, c, eng, image, createN)
		if err != nil {
			return err
		}
		rows = append(rows, diskRows...)
	}

	// Pause and resume: REST vs the Engine API's pause and unpause.
	pauseOurs, resumeOurs, pauseBase, resumeBase, err := benchPause(ctx, c, eng, sb.ID, cname, 20)
	if err != nil {
		return err
	}
	rows = append(rows,
		row{name: "pause (REST vs docker pause)", ours: pauseOurs, base: pauseBase, target: "p50 <= 50 ms"},
		row{name: "resume (REST vs docker unpause)", ours: resumeOurs, base: resumeBase, target: "p50 <= 50 ms"})

	// Snapshots: checkpoint of 100 MB of changes vs docker commit, and
	// restore -> first exec vs docker create+start of the same image.
	snapOurs, snapBase, restOurs, restBase, exported, err := benchSnapshot(ctx, c, eng, image)
	if err != nil {
		return err
	}
	rows = append(rows,
		row{name: "checkpoint, 100 MB changed (vs docker commit)", ours: snapOurs, base: snapBase, target: "<= 1.2 x baseline"},
		row{name: "restore snapshot -> first exec (vs docker create+start)", ours: restOurs, base: restBase, target: "p50 <= 1.2 x baseline"})
	captureRows, err := benchCapture(ctx, bin, agentBin, image, eng, 3)
	if err != nil {
		return err
	}
	rows = append(rows, captureRows...)
	for _, checkpoint := range []string{"commit", "agent"} {
		registryRows, err := benchRegistry(ctx, bin, agentBin, image, checkpoint, eng, 3)
		if err != nil {
			return err
		}
		rows = append(rows, registryRows...)
	}
	diffs, err := benchDiff(ctx, c, eng, image, 20)
	if err != nil {
		return err
	}
	rows = append(rows, diffs.rows...)
	portRows, err := benchPorts(ctx, c, eng, 100)
	if err != nil {
		return err
	}
	rows = append(rows, portRows.rows...)

	// Files: write+read of 1 MiB, and 100 MiB up and down, through the REST
	// API vs `docker cp` through the Engine API.
	fileOurs, fileBase, err := benchSmallFiles(ctx, c, eng, sb.ID, cname, fileN)
	if err != nil {
		return err
	}
	rows = append(rows, row{name: "file write+read 1 MiB (REST vs docker cp)", ours: fileOurs, base: fileBase, target: "p50 <= 10 ms"})
	upOurs, downOurs, upBase, downBase, err := benchBigFile(ctx, c, eng, sb.ID, cname)
	if err != nil {
		return err
	}

	// Terminals: keystroke echo round trip and output throughput, through the
	// WebSocket vs `docker exec -t` through the Engine API.
	echoOurs, echoBase, err := benchEcho(ctx, c, eng, sb.ID, cname, echoN)
	if err != nil {
		return err
	}
	rows = append(rows, row{name: "PTY keystroke echo (WebSocket vs docker exec -t)", ours: echoOurs, base: echoBase, target: "p50 <= 3 ms"})
	thrOurs, thrBase, err := benchThroughput(ctx, c, eng, sb.ID, cname)
	if err != nil {
		return err
	}

	// Dynamic code next to last: its leased runners retire in the
	// background, which would disturb the figures above.
	dyn, err := dynamic()
	if err != nil {
		return err
	}
	// Density last: deleting hundreds of sandboxes leaves the kernel
	// reclaiming their btrfs subvolumes, on a whole core, for many minutes.
	dens, err := density()
	if err != nil {
		return err
	}
	rows = append(rows, dyn.rows...)
	rows = append(rows, dens.rows...)
	header()
	printRows(rows)
	printDynamic(dyn)
	fmt.Printf("| export size of a snapshot of 100 MB of changes | 1 | %.1f MB | - | 100.0 MB changed | - | %.3f (size) | <= 1.1 x changed |\n",
		float64(exported)/1e6, float64(exported)/1e8)
	fmt.Printf("| upload %d MiB (PUT files vs docker cp in) | 1 / 1 | %.0f MB/s | - | %.0f MB/s | - | %.3f (throughput) | >= 200 MB/s |\n",
		bigUpload>>20, upOurs, upBase, upOurs/upBase)
	fmt.Printf("| download %d MiB (GET files vs docker cp out) | 1 / 1 | %.0f MB/s | - | %.0f MB/s | - | %.3f (throughput) | >= 200 MB/s |\n",
		bigUpload>>20, downOurs, downBase, downOurs/downBase)
	fmt.Printf("| PTY output, cat of %d MB (WebSocket vs docker exec -t) | 1 / 1 | %.0f MB/s | - | %.0f MB/s | - | %.3f (throughput) | >= 100 MB/s |\n",
		bigFile/1_000_000, thrOurs, thrBase, thrOurs/thrBase)
	printPorts(portRows)
	printFirstDiff(diffs)
	printDensity(dens)
	return nil
}

func printRows(rows []row) {
	for _, r := range rows {
		op50, op99 := pct(r.ours, 50), pct(r.ours, 99)
		bp50, bp99 := pct(r.base, 50), pct(r.base, 99)
		fmt.Printf("| %s | %d / %d | %s | %s | %s | %s | %.3f | %s |\n", r.name, len(r.ours), len(r.base),
			ms(op50), ms(op99), ms(bp50), ms(bp99), float64(op50)/float64(bp50), r.target)
	}
}

func printFirstDiff(d diffResults) {
	fmt.Printf("\n(the first diff, asked right after the second checkpoint while its layers may still be being read: %s)\n", ms(d.first))
}

func printDynamic(d dynamicResults) {
	fmt.Printf("| python print(1), sustained, one key, %d in flight (vs sequential docker run --rm) | 5 s | %.0f runs/s | - | %.2f runs/s | - | %.0f (throughput) | >= 200 runs/s |\n",
		numCPU()+1, d.perSec, d.dockerPerSec, d.perSec/d.dockerPerSec)
	if d.ephemeralCold > 0 {
		fmt.Printf("\n(%d ephemeral runs found the pool empty and were left out)\n", d.ephemeralCold)
	}
}

// benchPause times n pauses and resumes on each side.
func benchPause(ctx context.Context, c *api.Client, eng *docker.Docker, id, cname string, n int) (pOurs, rOurs, pBase, rBase []time.Duration, err error) {
	for range n {
		t0 := time.Now()
		if _, err := c.PauseSandbox(ctx, id); err != nil {
			return nil, nil, nil, nil, err
		}
		t1 := time.Now()
		if _, err := c.ResumeSandbox(ctx, id); err != nil {
			return nil, nil, nil, nil, err
		}
		pOurs, rOurs = append(pOurs, t1.Sub(t0)), append(rOurs, time.Since(t1))
	}
	// The baseline pauses a plain container of the same image: bothy thaws
	// a sandbox container that something else paused behind its back.
	img, err := eng.Inspect(ctx, cname)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	plain, err := eng.Create(ctx, runtime.Spec{Image: img.Image, Entrypoint: []string{"sleep", "infinity"}, Network: "none",
		Labels: map[string]string{"bothy.bench": "baseline"}})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	defer eng.Remove(context.WithoutCancel(ctx), plain)
	if err := eng.Start(ctx, plain); err != nil {
		return nil, nil, nil, nil, err
	}
	for range n {
		t0 := time.Now()
		if err := eng.Pause(ctx, plain); err != nil {
			return nil, nil, nil, nil, err
		}
		t1 := time.Now()
		if err := eng.Unpause(ctx, plain); err != nil {
			return nil, nil, nil, nil, err
		}
		pBase, rBase = append(pBase, t1.Sub(t0)), append(rBase, time.Since(t1))
	}
	return pOurs, rOurs, pBase, rBase, nil
}

// benchSnapshot times checkpoints of 100 MB of fresh changes, and restores of
// the snapshot, on each side.
func benchSnapshot(ctx context.Context, c *api.Client, eng *docker.Docker, image string) (snapOurs, snapBase, restOurs, restBase []time.Duration, exported int64, err error) {
	const write = "head -c 100000000 /dev/urandom > /root/changes"
	for i := range 3 {
		sb, sn, took, err := checkpointOfChanges(ctx, c, image, write)
		if err != nil {
			return nil, nil, nil, nil, 0, err
		}
		snapOurs = append(snapOurs, took)
		if i == 0 {
			if exported, err = c.ExportSnapshot(ctx, sn.ID, io.Discard); err != nil {
				return nil, nil, nil, nil, 0, err
			}
		}
		t0 := time.Now()
		clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: sn.ID}, "")
		if err != nil {
			return nil, nil, nil, nil, 0, err
		}
		if _, err := c.Exec(ctx, clone.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil {
			return nil, nil, nil, nil, 0, err
		}
		restOurs = append(restOurs, time.Since(t0))
		_ = c.DeleteSandbox(ctx, clone.ID)
		_ = c.DeleteSandbox(ctx, sb.ID)
		_ = c.DeleteSnapshot(ctx, sn.ID)

		plain, err := plainWithChanges(ctx, eng, image, write)
		if err != nil {
			return nil, nil, nil, nil, 0, err
		}
		t0 = time.Now()
		ref := "bothy-bench/commit:latest"
		if _, err := eng.Commit(ctx, plain, ref, nil); err != nil {
			return nil, nil, nil, nil, 0, err
		}
		snapBase = append(snapBase, time.Since(t0))
		// The baseline restore is the first container made from a fresh
		// commit, as bothy's restore is of a fresh snapshot: the engine
		// prepares an image's layers for its first container.
		d, err := dockerCreateStart(ctx, eng, ref, "bridge")
		if err != nil {
			return nil, nil, nil, nil, 0, err
		}
		restBase = append(restBase, d)
		_ = eng.Remove(ctx, plain)
		_ = eng.ImageRemove(ctx, ref)
	}
	return snapOurs, snapBase, restOurs, restBase, exported, nil
}

// bigUpload is the size of the file the transfer benchmark moves.
const bigUpload = 100 << 20

// tarOf is a tar archive holding one file.
func tarOf(name string, data []byte) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
	_, _ = tw.Write(data)
	_ = tw.Close()
	return b.Bytes()
}

// benchSmallFiles times writing then reading back 1 MiB.
func benchSmallFiles(ctx context.Context, c *api.Client, eng *docker.Docker, id, cname string, n int) (ours, base []time.Duration, err error) {
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	var back bytes.Buffer
	for i := range n + 10 {
		t0 := time.Now()
		if _, err := c.WriteFile(ctx, id, "/tmp/bench-1m", bytes.NewReader(data), api.WriteOptions{Size: int64(len(data))}); err != nil {
			return nil, nil, err
		}
		back.Reset()
		if _, err := c.ReadFile(ctx, id, "/tmp/bench-1m", &back); err != nil || back.Len() != len(data) {
			return nil, nil, fmt.Errorf("read back: %v (%d bytes)", err, back.Len())
		}
		if i >= 10 {
			ours = append(ours, time.Since(t0))
		}
	}
	archive := tarOf("bench-1m-docker", data)
	for i := range n/4 + 3 {
		t0 := time.Now()
		if err := eng.DockerCopyTo(ctx, cname, "/tmp", bytes.NewReader(archive)); err != nil {
			return nil, nil, err
		}
		back.Reset()
		if err := eng.DockerCopyFrom(ctx, cname, "/tmp/bench-1m-docker", &back); err != nil || back.Len() < len(data) {
			return nil, nil, fmt.Errorf("docker cp out: %v (%d bytes)", err, back.Len())
		}
		if i >= 3 {
			base = append(base, time.Since(t0))
		}
	}
	return ours, base, nil
}

// benchBigFile moves 100 MiB up and down on each side and returns MB/s.
func benchBigFile(ctx context.Context, c *api.Client, eng *docker.Docker, id, cname string) (upOurs, downOurs, upBase, downBase float64, err error) {
	data := make([]byte, bigUpload)
	_, _ = rand.Read(data)
	mbps := func(d time.Duration) float64 { return float64(bigUpload) / 1e6 / d.Seconds() }
	t0 := time.Now()
	if _, err := c.WriteFile(ctx, id, "/tmp/bench-100m", bytes.NewReader(data), api.WriteOptions{Size: bigUpload}); err != nil {
		return 0, 0, 0, 0, err
	}
	upOurs = mbps(time.Since(t0))
	t0 = time.Now()
	if n, err := c.ReadFile(ctx, id, "/tmp/bench-100m", io.Discard); err != nil || n != bigUpload {
		return 0, 0, 0, 0, fmt.Errorf("download: %v (%d bytes)", err, n)
	}
	downOurs = mbps(time.Since(t0))
	archive := tarOf("bench-100m-docker", data)
	t0 = time.Now()
	if err := eng.DockerCopyTo(ctx, cname, "/tmp", bytes.NewReader(archive)); err != nil {
		return 0, 0, 0, 0, err
	}
	upBase = mbps(time.Since(t0))
	t0 = time.Now()
	if err := eng.DockerCopyFrom(ctx, cname, "/tmp/bench-100m-docker", io.Discard); err != nil {
		return 0, 0, 0, 0, err
	}
	downBase = mbps(time.Since(t0))
	return upOurs, downOurs, upBase, downBase, nil
}

// bigFile is the size of the file the throughput benchmark cats.
const bigFile = 100_000_000

// benchEcho measures the time from sending one byte to a terminal running cat
// (the line discipline echoes it) to reading it back.
func benchEcho(ctx context.Context, c *api.Client, eng *docker.Docker, id, cname string, n int) (ours, base []time.Duration, err error) {
	p, err := c.DialPty(ctx, id, api.PtyOptions{Cmd: []string{"cat"}})
	if err != nil {
		return nil, nil, err
	}
	defer c.KillPtySession(context.WithoutCancel(ctx), id, p.Session.ID)
	defer p.Close()
	for i := range n + 50 {
		t0 := time.Now()
		if _, err := p.Write([]byte{'a'}); err != nil {
			return nil, nil, err
		}
		if _, err := p.Read(); err != nil {
			return nil, nil, err
		}
		if i >= 50 {
			ours = append(ours, time.Since(t0))
		}
	}
	tty, err := eng.DockerExecTTY(ctx, cname, []string{"cat"})
	if err != nil {
		return nil, nil, err
	}
	defer tty.Close()
	buf := make([]byte, 64)
	for i := range n/10 + 20 {
		t0 := time.Now()
		if _, err := tty.Conn.Write([]byte{'a'}); err != nil {
			return nil, nil, err
		}
		if _, err := tty.Reader.Read(buf); err != nil {
			return nil, nil, err
		}
		if i >= 20 {
			base = append(base, time.Since(t0))
		}
	}
	return ours, base, nil
}

// benchThroughput cats a 100 MB text file through a terminal on both sides and
// returns MB/s of terminal output received.
func benchThroughput(ctx context.Context, c *api.Client, eng *docker.Docker, id, cname string) (ours, base float64, err error) {
	mk := fmt.Sprintf("yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c %d > /tmp/bench-big", bigFile)
	if res, err := c.Exec(ctx, id, api.ExecRequest{Shell: mk}); err != nil || res.ExitCode != 0 {
		return 0, 0, fmt.Errorf("make file: %v %+v", err, res)
	}
	p, err := c.DialPty(ctx, id, api.PtyOptions{Cmd: []string{"cat", "/tmp/bench-big"}, Cols: 200, Rows: 50})
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	var got int
	for {
		b, err := p.Read()
		if errors.Is(err, api.ErrExited) {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		got += len(b)
	}
	ours = float64(got) / 1e6 / time.Since(t0).Seconds()
	p.Close()

	tty, err := eng.DockerExecTTY(ctx, cname, []string{"cat", "/tmp/bench-big"})
	if err != nil {
		return 0, 0, err
	}
	defer tty.Close()
	t0 = time.Now()
	n, err := io.Copy(io.Discard, tty.Reader)
	if err != nil {
		return 0, 0, err
	}
	base = float64(n) / 1e6 / time.Since(t0).Seconds()
	if got < bigFile || n < bigFile {
		return 0, 0, fmt.Errorf("short reads: %d and %d bytes", got, n)
	}
	return ours, base, nil
}

// dockerCreateStart times a plain docker create+start of image on network, then
// removes the container.
func dockerCreateStart(ctx context.Context, eng *docker.Docker, image, network string) (time.Duration, error) {
	t0 := time.Now()
	id, err := dockerStart(ctx, eng, image, network)
	d := time.Since(t0)
	if id != "" {
		if rerr := eng.Remove(ctx, id); err == nil {
			err = rerr
		}
	}
	return d, err
}

// dockerStart creates and starts a plain container of image on network, the
// baseline of a sandbox's start, and returns its ID (also when the start
// failed, so that it can be removed).
func dockerStart(ctx context.Context, eng *docker.Docker, image, network string) (string, error) {
	return dockerSpecStart(ctx, eng, runtime.Spec{
		Image: image, Entrypoint: []string{"sleep", "infinity"}, Network: network,
		Labels: map[string]string{"bothy.bench": "baseline"},
	})
}

// dockerSpecStart creates and starts a baseline container of spec.
func dockerSpecStart(ctx context.Context, eng *docker.Docker, spec runtime.Spec) (string, error) {
	id, err := eng.Create(ctx, spec)
	if err != nil {
		return "", err
	}
	return id, eng.Start(ctx, id)
}

func waitReady(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("bothy not ready after %s", limit)
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(min(i, len(s))-1, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
