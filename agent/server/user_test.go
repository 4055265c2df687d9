package server

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookupUser(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"), 0o644)
	os.WriteFile(group, []byte("root:x:0:\nuser:x:1000:\ndocker:x:999:user\nstaff:x:50:\n"), 0o644)
	defer func(p, g string) { passwdFile, groupFile = p, g }(passwdFile, groupFile)
	passwdFile, groupFile = passwd, group

	tests := []struct {
		spec     string
		uid, gid uint32
		home     string
		groups   int
		wantErr  bool
	}{
		{spec: "", uid: 0, gid: 0, home: "/root"},
		{spec: "user", uid: 1000, gid: 1000, home: "/home/user", groups: 1},
		{spec: "1000", uid: 1000, gid: 1000, home: "/home/user", groups: 1},
		{spec: "user:staff", uid: 1000, gid: 50, home: "/home/user", groups: 1},
		{spec: "4242:4343", uid: 4242, gid: 4343, home: "/"},
		{spec: "nobody-here", wantErr: true},
		{spec: "user:nogroup", wantErr: true},
	}
	for _, tc := range tests {
		id, err := lookupUser(tc.spec)
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: want an error", tc.spec)
			}
			continue
		}
		if err != nil || id.uid != tc.uid || id.gid != tc.gid || id.home != tc.home || len(id.groups) != tc.groups {
			t.Errorf("%q: %+v %v", tc.spec, id, err)
		}
	}

	// With no passwd file at all, root still resolves.
	passwdFile = filepath.Join(dir, "missing")
	if id, err := lookupUser(""); err != nil || id.uid != 0 {
		t.Fatalf("root without passwd: %+v %v", id, err)
	}
}
