package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bothy/bothy/orchestrator"
)

// metrics are the server's Prometheus figures: its own requests, and what
// the domain reports when scraped.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// exec and run time the data plane's two hot calls.
	exec, run prometheus.Histogram
}

// latencyBuckets span a keystroke to a cold create, in seconds.
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(deps Deps) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bothy_http_requests_total", Help: "HTTP requests answered, by route, method and status class.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bothy_http_request_duration_seconds", Help: "Time to answer HTTP requests (streams: until they end), by route and method.",
			Buckets: latencyBuckets,
		}, []string{"route", "method"}),
		exec: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bothy_exec_duration_seconds", Help: "Time of commands run through POST /v1/sandboxes/{id}/exec.", Buckets: latencyBuckets,
		}),
		run: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bothy_run_duration_seconds", Help: "Time of code runs through POST /v1/run.", Buckets: latencyBuckets,
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.exec, m.run,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&domainCollector{deps: deps})
	return m
}

// observe counts and times a request that has been answered with status,
// under labels from fixed sets only: the route's pattern (never the path:
// IDs would make a series each; "unmatched" when none matched, "preview"
// for a preview host), the method when it is one of the known ones
// ("other" otherwise), and the status's class ("2xx"). No client can add a
// series. It returns the route label.
func (m *metrics) observe(c *echo.Context, status int, took time.Duration) string {
	route := c.Path()
	if route == "" || route == "/*" {
		route = "unmatched"
	}
	d := took.Seconds()
	method := c.Request().Method
	if !knownMethods[method] {
		method = "other"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(status/100)+"xx").Inc()
	m.latency.WithLabelValues(route, method).Observe(d)
	switch {
	case method == http.MethodPost && route == "/v1/sandboxes/:id/exec":
		m.exec.Observe(d)
	case method == http.MethodPost && route == "/v1/run":
		m.run.Observe(d)
	}
	return route
}

// handler serves the figures in Prometheus's text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// domainCollector reads the domain's figures at each scrape.
type domainCollector struct{ deps Deps }

var (
	descSandboxes  = prometheus.NewDesc("bothy_sandboxes", "Sandboxes, by state.", []string{"state"}, nil)
	descCreates    = prometheus.NewDesc("bothy_sandbox_creates_total", "Sandboxes created since bothy started.", nil, nil)
	descDeletes    = prometheus.NewDesc("bothy_sandbox_deletes_total", "Sandboxes deleted since bothy started.", nil, nil)
	descAgents     = prometheus.NewDesc("bothy_agent_connections", "Sandboxes whose agent is connected now.", nil, nil)
	descHandshakes = prometheus.NewDesc("bothy_agent_connects_total", "Agent connections accepted, first ones and reconnections.", nil, nil)
	descPoolIdle   = prometheus.NewDesc("bothy_pool_idle", "Warm runners waiting, by pool.", []string{"runtime", "memory_mb"}, nil)
	descPoolLeased = prometheus.NewDesc("bothy_pool_leased", "Runners out of their pool, by pool.", []string{"runtime", "memory_mb"}, nil)
	descPoolHits   = prometheus.NewDesc("bothy_pool_hits_total", "Takes served by a warm runner, by pool.", []string{"runtime", "memory_mb"}, nil)
	descPoolMisses = prometheus.NewDesc("bothy_pool_misses_total", "Takes that had to start a runner, by pool.", []string{"runtime", "memory_mb"}, nil)

	descSandboxPoolReady  = prometheus.NewDesc("bothy_sandbox_pool_ready", "Warm sandboxes waiting to be taken, by pool.", []string{"image"}, nil)
	descSandboxPoolHits   = prometheus.NewDesc("bothy_sandbox_pool_hits_total", "Creates served by a warm sandbox, by pool.", []string{"image"}, nil)
	descSandboxPoolMisses = prometheus.NewDesc("bothy_sandbox_pool_misses_total", "Creates of a pool's kind that found it empty, by pool.", []string{"image"}, nil)
	descSandboxPoolFails  = prometheus.NewDesc("bothy_sandbox_pool_failures_total", "Warm sandboxes that failed to start, by pool.", []string{"image"}, nil)
	descSnapshots         = prometheus.NewDesc("bothy_snapshots", "Snapshots ready.", nil, nil)
	descSnapBytes         = prometheus.NewDesc("bothy_snapshot_bytes", "Bytes the ready snapshots add to their base images.", nil, nil)
	descLedger            = prometheus.NewDesc("bothy_ledger_queue_depth", "Run and invoke records waiting to be written.", nil, nil)
	descLedgerLost        = prometheus.NewDesc("bothy_ledger_dropped_total", "Run and invoke records lost to a full queue.", nil, nil)
)

// scrapeWait bounds the database reads of one scrape.
const scrapeWait = 5 * time.Second

func (d *domainCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, desc := range []*prometheus.Desc{descSandboxes, descCreates, descDeletes, descAgents, descHandshakes, descPoolIdle,
		descPoolLeased, descPoolHits, descPoolMisses, descSandboxPoolReady, descSandboxPoolHits, descSandboxPoolMisses, descSandboxPoolFails, descSnapshots, descSnapBytes, descLedger, descLedgerLost} {
		ch <- desc
	}
}

func (d *domainCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeWait)
	defer cancel()
	if o := d.deps.Orchestrator; o != nil {
		if counts, err := o.CountByState(ctx); err == nil {
			for _, st := range []orchestrator.State{orchestrator.StateCreating, orchestrator.StateRunning, orchestrator.StatePaused,
				orchestrator.StateStopped, orchestrator.StateFailed, orchestrator.StateDeleting} {
				ch <- prometheus.MustNewConstMetric(descSandboxes, prometheus.GaugeValue, float64(counts[st]), string(st))
			}
		}
		c := o.Counters()
		ch <- prometheus.MustNewConstMetric(descCreates, prometheus.CounterValue, float64(c.Creates))
		ch <- prometheus.MustNewConstMetric(descDeletes, prometheus.CounterValue, float64(c.Deletes))
		ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(o.AgentsConnected()))
		ch <- prometheus.MustNewConstMetric(descHandshakes, prometheus.CounterValue, float64(c.AgentConnects))
		for _, p := range o.Pools() {
			ch <- prometheus.MustNewConstMetric(descSandboxPoolReady, prometheus.GaugeValue, float64(p.Ready), p.Image)
			ch <- prometheus.MustNewConstMetric(descSandboxPoolHits, prometheus.CounterValue, float64(p.Hits), p.Image)
			ch <- prometheus.MustNewConstMetric(descSandboxPoolMisses, prometheus.CounterValue, float64(p.Misses), p.Image)
			ch <- prometheus.MustNewConstMetric(descSandboxPoolFails, prometheus.CounterValue, float64(p.Failures), p.Image)
		}
	}
	if iso := d.deps.Isolate; iso != nil {
		for _, p := range iso.Pools() {
			labels := []string{p.Runtime, strconv.FormatInt(p.MemoryMB, 10)}
			ch <- prometheus.MustNewConstMetric(descPoolIdle, prometheus.GaugeValue, float64(p.Idle), labels...)
			ch <- prometheus.MustNewConstMetric(descPoolLeased, prometheus.GaugeValue, float64(p.Leased), labels...)
			ch <- prometheus.MustNewConstMetric(descPoolHits, prometheus.CounterValue, float64(p.Hits), labels...)
			ch <- prometheus.MustNewConstMetric(descPoolMisses, prometheus.CounterValue, float64(p.Misses), labels...)
		}
	}
	if snaps := d.deps.Snapshots; snaps != nil {
		if n, bytes, err := snaps.Totals(ctx); err == nil {
			ch <- prometheus.MustNewConstMetric(descSnapshots, prometheus.GaugeValue, float64(n))
			ch <- prometheus.MustNewConstMetric(descSnapBytes, prometheus.GaugeValue, float64(bytes))
		}
	}
	if l := d.deps.Ledger; l != nil {
		ch <- prometheus.MustNewConstMetric(descLedger, prometheus.GaugeValue, float64(l.QueueDepth()))
		ch <- prometheus.MustNewConstMetric(descLedgerLost, prometheus.CounterValue, float64(l.Dropped()))
	}
}
