package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestOneBothydPerDataDirectory: while one bothyd holds a data directory,
// another is refused with the first one's pid; once it lets go, the next
// takes it.
func TestOneBothydPerDataDirectory(t *testing.T) {
	dir := t.TempDir()
	first, err := lockData(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock's locks belong to open files, so a second open in this
	// process is refused as another process would be.
	if second, err := lockData(dir); err == nil {
		second.Close()
		t.Fatal("a second lock of the data directory was granted")
	} else if !strings.Contains(err.Error(), "another bothyd (pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("refusal: %v", err)
	}
	first.Close()
	again, err := lockData(dir)
	if err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	again.Close()
}
