package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasHelpWithExamples walks the command tree: every command
// and subcommand has a short description and examples, and --help prints them
// and exits 0.
func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Name() == "help" || c.Name() == "completion" || c.Parent() != nil && c.Parent().Name() == "completion" {
			return
		}
		n++
		path := strings.Fields(c.CommandPath())[1:]
		if c.Short == "" || c.Example == "" {
			t.Errorf("%q: no short description or no examples", c.CommandPath())
		}
		var stdout, stderr bytes.Buffer
		if code := realMain(append(path, "--help"), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Examples:") {
			t.Errorf("%s --help: exit %d, %q %q", c.CommandPath(), code, stdout.String(), stderr.String())
		}
	}
	walk(newRoot(&cli{}))
	if n < 35 {
		t.Errorf("walked only %d commands", n)
	}
}

// TestUsageErrors: a command line bothy cannot run exits 2 and says why.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"exec"},
		{"exec", "sb-x"},
		{"exec", "sb-x", "--timeout", "10", "--", "true"}, // a duration needs its unit
		{"create", "--label", "novalue"},
		{"nosuchcommand"},
		{"snapshot", "bogus"},
		{"apps", "bogus"},
		{"logs", "sb-x", "notapid"},
		{"cp", "a", "b"},
		{"snapshot", "create"},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != 2 {
			t.Errorf("bothy %s: exit %d (%s), want 2", strings.Join(args, " "), code, stderr.String())
		}
		if stderr.Len() == 0 {
			t.Errorf("bothy %s: no message", strings.Join(args, " "))
		}
	}
}

// TestKeyNotShownInHelp: the key from the environment is never printed as a
// flag default.
func TestKeyNotShownInHelp(t *testing.T) {
	t.Setenv("BOTHY_KEY", "bothy_secret_0123456789")
	var stdout, stderr bytes.Buffer
	realMain([]string{"ls", "--help"}, &stdout, &stderr)
	if strings.Contains(stdout.String()+stderr.String(), "bothy_secret") {
		t.Fatal("the key shows in the help")
	}
}

func TestDetachAt(t *testing.T) {
	for _, c := range []struct {
		prev  byte
		chunk string
		want  int
	}{
		{0, "ls\r", -1},
		{0, "ab\x10\x11", 2},
		{0x10, "\x11", 0},
		{0, "\x10", -1},
		{'a', "\x11", -1},
	} {
		if got := detachAt(c.prev, []byte(c.chunk)); got != c.want {
			t.Errorf("detachAt(%#x, %q) = %d, want %d", c.prev, c.chunk, got, c.want)
		}
	}
}
