package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bothy/bothy/orchestrator"
)

// TestChoiceFlags: the flags that take one of a few words take them from the
// command line or the environment, default as documented, and refuse
// anything else naming the flag.
func TestChoiceFlags(t *testing.T) {
	for _, f := range []struct {
		flag, env, def, other string
		get                   func(config) string
	}{
		{"agent-transport", "BOTHY_AGENT_TRANSPORT", "unix", "tcp", func(c config) string { return c.AgentTransport }},
		{"checkpoint", "BOTHY_CHECKPOINT", "commit", "agent", func(c config) string { return c.Checkpoint }},
	} {
		for _, c := range []struct {
			args []string
			env  string
			want string
			bad  bool
		}{
			{want: f.def},
			{args: []string{"--" + f.flag, f.other}, want: f.other},
			{env: f.other, want: f.other},
			{args: []string{"--" + f.flag, "udp"}, bad: true},
			{args: []string{"--" + f.flag, ""}, bad: true},
		} {
			t.Setenv(f.env, c.env)
			if c.env == "" {
				t.Setenv(f.env, f.def)
			}
			cfg, err := loadConfig(c.args)
			if err == nil {
				err = cfg.Validate() // also checks what this test does not set up
			}
			refused := err != nil && strings.Contains(err.Error(), "-"+f.flag)
			switch {
			case c.bad && !refused:
				t.Errorf("%v: %v, want a refusal naming the flag", c.args, err)
			case !c.bad && refused:
				t.Errorf("%v: %v", c.args, err)
			case !c.bad && f.get(cfg) != c.want:
				t.Errorf("%v: %s %q, want %q", c.args, f.flag, f.get(cfg), c.want)
			}
		}
	}
}

// TestRegistryFlags: a registry is HOST[:PORT]; a CA without a registry,
// and a CA file without a certificate, are refused naming the flag.
func TestRegistryFlags(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		bad  bool
	}{
		{[]string{"--registry", "registry.example.com:5000"}, false},
		{[]string{"--registry", "registry.example.com:5000", "--registry-ca", notPEM}, false}, // read at start
		{[]string{"--registry", "registry.example.com/bothy"}, true},
		{[]string{"--registry-ca", notPEM}, true},
	} {
		cfg, err := loadConfig(c.args)
		if err == nil {
			err = cfg.Validate() // also checks what this test does not set up
		}
		if refused := err != nil && strings.Contains(err.Error(), "-registry"); refused != c.bad {
			t.Errorf("%v: %v (want refused: %v)", c.args, err, c.bad)
		}
	}
	if _, err := readCA(notPEM); err == nil || !strings.Contains(err.Error(), "-registry-ca") {
		t.Errorf("a file without a certificate: %v", err)
	}
	if _, err := readCA(notPEM + ".missing"); err == nil || !strings.Contains(err.Error(), "-registry-ca") {
		t.Errorf("a missing file: %v", err)
	}
}

func TestRuntimeFlags(t *testing.T) {
	// (Other problems, such as no agent binary beside the test, are not
	// this test's.)
	cfg, err := loadConfig([]string{"--runtime", "kubernetes", "--registry", "127.0.0.1:15000", "--agent-transport", "unix", "--checkpoint", "commit"})
	if err != nil && strings.Contains(err.Error(), "-runtime") {
		t.Fatal(err)
	}
	// A cluster's pods are reached over the network, and checkpointed by
	// their agents, whatever else was asked.
	if cfg.AgentTransport != orchestrator.TransportTCP || cfg.Checkpoint != orchestrator.CheckpointAgent {
		t.Errorf("on kubernetes: transport %q, checkpoint %q", cfg.AgentTransport, cfg.Checkpoint)
	}
	for _, args := range [][]string{{"--runtime", "kubernetes"}, {"--runtime", "nomad"}} {
		if _, err := loadConfig(args); err == nil || !strings.Contains(err.Error(), "-runtime") {
			t.Errorf("%v: %v, want refused", args, err)
		}
	}
}
