package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Names of the images bothy builds itself.
const (
	Base    = "bothy/base:latest"
	Busybox = "bothy/busybox:latest"
)

// Runner images, one per runtime of dynamic code. They run as nobody in
// /tmp, which is the only writable place in a runner (a tmpfs).
const (
	RunnerPython = "bothy/runner-python:latest"
	RunnerNode   = "bothy/runner-node:latest"
	RunnerBash   = "bothy/runner-bash:latest"
)

// basePackages are installed into the base image on top of debootstrap's minbase.
var basePackages = []string{"bash", "coreutils", "python3", "nodejs", "git", "curl", "ca-certificates", "procps"}

// A recipe makes a root filesystem in a directory; the image is that directory
// imported with changes applied.
type recipe struct {
	name string
	// spec is everything that decides the result; its hash labels the image.
	spec    string
	changes []string
	// from, when set, is the local image the recipe's changes are built on
	// (with docker build); build is then unused.
	from  string
	build func(ctx context.Context, b *Builder, dir string, progress func(string)) error
}

func (r recipe) hash() string {
	spec := r.spec
	if r.from != "" {
		spec += " from " + r.from + "@" + recipes[r.from].hash()
	}
	sum := sha256.Sum256([]byte(spec + "\n" + strings.Join(r.changes, "\n")))
	return hex.EncodeToString(sum[:8])
}

var recipes = map[string]recipe{
	RunnerPython: runnerRecipe(RunnerPython, "python",
		"ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONIOENCODING=utf-8"),
	RunnerNode: runnerRecipe(RunnerNode, "node", "ENV NODE_ENV=production NODE_OPTIONS=--no-warnings"),
	RunnerBash: runnerRecipe(RunnerBash, "bash", "ENV SHELL=/bin/bash"),
	Base: {
		name: Base,
		spec: "v2 debootstrap --variant=minbase bookworm include=" + strings.Join(basePackages, ",") + " user=1000",
		changes: []string{
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"ENV LANG=C.UTF-8",
			"WORKDIR /root",
			`CMD ["/bin/bash"]`,
		},
		build: buildBase,
	},
	Busybox: {
		name: Busybox,
		spec: "v2 busybox-static applets user=1000",
		changes: []string{
			"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"WORKDIR /root",
			`CMD ["/bin/sh"]`,
		},
		build: buildBusybox,
	},
}

func runnerRecipe(name, runtime, env string) recipe {
	return recipe{
		name: name,
		spec: "v1 runner " + runtime,
		from: Base,
		changes: []string{
			"LABEL bothy.runtime=" + runtime,
			env,
			"ENV HOME=/tmp TMPDIR=/tmp",
			"USER 65534:65534",
			"WORKDIR /tmp",
		},
	}
}

// Known reports whether ref names an image bothy builds itself.
func Known(ref string) bool {
	_, ok := recipes[normalize(ref)]
	return ok
}

// normalize adds the ":latest" tag a bare name implies.
func normalize(ref string) string {
	if i := strings.LastIndex(ref, "/"); !strings.Contains(ref[i+1:], ":") && !strings.Contains(ref, "@") {
		return ref + ":latest"
	}
	return ref
}

func buildBase(ctx context.Context, b *Builder, dir string, progress func(string)) error {
	args := []string{"--variant=minbase", "--include=" + strings.Join(basePackages, ","), "bookworm", dir, b.mirror}
	if err := runLogged(ctx, progress, "debootstrap", args...); err != nil {
		return err
	}
	for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, _ := os.ReadDir(filepath.Join(dir, p))
		for _, e := range entries {
			if e.Name() != "partial" && e.Name() != "lock" {
				os.RemoveAll(filepath.Join(dir, p, e.Name()))
			}
		}
	}
	return addUser(dir)
}

func buildBusybox(ctx context.Context, b *Builder, dir string, progress func(string)) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is not installed: %w", err)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "home", "dev", "proc", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := copyFile(bb, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("busybox --list-full: %w", err)
	}
	n := 0
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" {
			continue
		}
		if err := os.Symlink("/bin/busybox", filepath.Join(dir, applet)); err != nil && !os.IsExist(err) {
			return err
		}
		n++
	}
	progress(fmt.Sprintf("linked %d busybox applets", n))
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return addUser(dir)
}

// addUser adds the unprivileged account "user" (uid and gid 1000, home
// /home/user) that sandboxes can run as.
func addUser(dir string) error {
	appends := map[string]string{
		"etc/passwd": "user:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "user:x:1000:\n",
	}
	if _, err := os.Stat(filepath.Join(dir, "bin/bash")); err == nil {
		appends["etc/passwd"] = "user:x:1000:1000:user:/home/user:/bin/bash\n"
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/shadow")); err == nil {
		appends["etc/shadow"] = "user:*:19000:0:99999:7:::\n"
	}
	for name, line := range appends {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		f.Close()
		if err != nil {
			return err
		}
	}
	home := filepath.Join(dir, "home/user")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	return os.Chown(home, 1000, 1000)
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}
