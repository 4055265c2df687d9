package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bothy/bothy/api"
)

// scrape reads /metrics with key and parses it as Prometheus does.
func scrape(t *testing.T, f *fixture, key string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return fams
}

// value is the sum of a family's samples whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	var sum float64
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetrics: /metrics needs an admin key, parses as Prometheus text, and
// moves when a sandbox is created and a command runs.
func TestMetrics(t *testing.T) {
	onBothEngines(t, checkMetrics)
}

func checkMetrics(t *testing.T, f *fixture) {
	for key, want := range map[string]int{"": 401, f.user: 403} {
		if code, _ := f.call(t, http.MethodGet, "/metrics", key, ""); code != want {
			t.Errorf("/metrics with key %q: %d, want %d", key, code, want)
		}
	}
	before := scrape(t, f, f.admin)
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	if res, err := c.Exec(context.Background(), sb.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	after := scrape(t, f, f.admin)
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"bothy_sandbox_creates_total", nil},
		{"bothy_exec_duration_seconds", nil},
		{"bothy_http_requests_total", []string{"route", "/v1/sandboxes/:id/exec", "status", "2xx"}},
		{"bothy_http_request_duration_seconds", []string{"route", "/v1/sandboxes"}},
		{"bothy_agent_connects_total", nil},
	} {
		if b, a := value(before, m.name, m.labels...), value(after, m.name, m.labels...); a <= b {
			t.Errorf("%s %v did not move: %v -> %v", m.name, m.labels, b, a)
		}
	}
	if value(after, "bothy_sandboxes", "state", "running") < 1 || value(after, "bothy_agent_connections") < 1 {
		t.Errorf("sandboxes running %v, agents connected %v", value(after, "bothy_sandboxes", "state", "running"), value(after, "bothy_agent_connections"))
	}
	// Routes, not paths: no series names a sandbox.
	for _, m := range after["bothy_http_requests_total"].Metric {
		for _, l := range m.Label {
			if strings.Contains(l.GetValue(), sb.ID) {
				t.Fatalf("a series per sandbox: %v", m.Label)
			}
		}
	}
}
