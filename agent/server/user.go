package server

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// identity is who a process runs as.
type identity struct {
	uid, gid uint32
	groups   []uint32
	home     string
	name     string
	shell    string // the login shell, when the passwd file names one
}

// The account databases; tests point them elsewhere.
var (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
)

// lookupUser resolves spec ("", "name", "uid" or "uid:gid") against the sandbox's
// own /etc/passwd and /etc/group, so it works in any image, with or without libc.
func lookupUser(spec string) (identity, error) {
	if spec == "" {
		spec = "root"
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	id := identity{home: "/"}
	found := false
	for _, f := range readColon(passwdFile) {
		if len(f) < 7 {
			continue
		}
		if f[0] == name || f[2] == name {
			uid, err1 := strconv.ParseUint(f[2], 10, 32)
			gid, err2 := strconv.ParseUint(f[3], 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			id.uid, id.gid, id.home, id.name, id.shell = uint32(uid), uint32(gid), f[5], f[0], f[6]
			found = true
			break
		}
	}
	switch {
	case found:
	case name == "root":
		// An image with no passwd file (scratch, distroless) still has root.
		id.name = "root"
		if fi, err := os.Stat("/root"); err == nil && fi.IsDir() {
			id.home = "/root"
		}
	default:
		uid, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			return identity{}, fmt.Errorf("unknown user %q", name)
		}
		id.uid, id.gid = uint32(uid), uint32(uid)
	}
	if hasGroup {
		gid, err := lookupGroup(group)
		if err != nil {
			return identity{}, err
		}
		id.gid = gid
	}
	if id.name != "" {
		for _, f := range readColon(groupFile) {
			if len(f) < 4 {
				continue
			}
			for _, m := range strings.Split(f[3], ",") {
				if m == id.name {
					if g, err := strconv.ParseUint(f[2], 10, 32); err == nil {
						id.groups = append(id.groups, uint32(g))
					}
				}
			}
		}
	}
	return id, nil
}

func lookupGroup(spec string) (uint32, error) {
	for _, f := range readColon(groupFile) {
		if len(f) >= 3 && f[0] == spec {
			if g, err := strconv.ParseUint(f[2], 10, 32); err == nil {
				return uint32(g), nil
			}
		}
	}
	g, err := strconv.ParseUint(spec, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("unknown group %q", spec)
	}
	return uint32(g), nil
}

// readColon reads a colon-separated database file; a missing file reads as empty.
func readColon(path string) [][]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rows = append(rows, strings.Split(line, ":"))
	}
	return rows
}

// accounts names the users and groups of files, from the sandbox's account
// files, read again when they change: looked at once a second at most, not
// for every entry of a listing.
var accounts accountNames

type accountNames struct {
	mu            sync.Mutex
	passwd, group time.Time // the files' modification times when read
	checked       time.Time // when they were last looked at
	users, groups map[uint32]string
}

// names are the user and group names of uid and gid (their numbers when
// the account files do not name them).
func (a *accountNames) names(uid, gid uint32) (string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now := time.Now(); a.users == nil || now.Sub(a.checked) >= time.Second {
		a.users = reload(passwdFile, &a.passwd, a.users)
		a.groups = reload(groupFile, &a.group, a.groups)
		a.checked = now
	}
	user, ok := a.users[uid]
	if !ok {
		user = strconv.FormatUint(uint64(uid), 10)
	}
	group, ok := a.groups[gid]
	if !ok {
		group = strconv.FormatUint(uint64(gid), 10)
	}
	return user, group
}

// reload reads an account file's names by ID when it changed since read
// (or was never read), and keeps them otherwise.
func reload(path string, read *time.Time, m map[uint32]string) map[uint32]string {
	var mtime time.Time
	if fi, err := os.Stat(path); err == nil {
		mtime = fi.ModTime()
	}
	if m != nil && mtime.Equal(*read) {
		return m
	}
	m = map[uint32]string{}
	for _, f := range readColon(path) {
		if len(f) < 3 {
			continue
		}
		if id, err := strconv.ParseUint(f[2], 10, 32); err == nil {
			if _, dup := m[uint32(id)]; !dup {
				m[uint32(id)] = f[0]
			}
		}
	}
	if _, ok := m[0]; !ok {
		m[0] = "root"
	}
	*read = mtime
	return m
}

// dir is a working directory as every front door takes it: absolute, or
// relative to the user's home (the home itself when empty).
func (id identity) dir(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(id.home, p)
}
