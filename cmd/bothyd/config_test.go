package main

import (
	"strings"
	"testing"
)

func TestAgentTransportFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
		want string
		bad  bool
	}{
		{want: "unix"},
		{args: []string{"--agent-transport", "tcp"}, want: "tcp"},
		{env: "tcp", want: "tcp"},
		{args: []string{"--agent-transport", "udp"}, bad: true},
		{args: []string{"--agent-transport", ""}, bad: true},
	} {
		t.Setenv("BOTHY_AGENT_TRANSPORT", c.env)
		if c.env == "" {
			t.Setenv("BOTHY_AGENT_TRANSPORT", "unix")
		}
		cfg, err := loadConfig(c.args)
		if err == nil {
			err = cfg.Validate() // also checks what this test does not set up
		}
		refused := err != nil && strings.Contains(err.Error(), "-agent-transport")
		switch {
		case c.bad && !refused:
			t.Errorf("%v: %v, want a refusal naming the flag", c.args, err)
		case !c.bad && refused:
			t.Errorf("%v: %v", c.args, err)
		case !c.bad && cfg.AgentTransport != c.want:
			t.Errorf("%v: transport %q, want %q", c.args, cfg.AgentTransport, c.want)
		}
	}
}
