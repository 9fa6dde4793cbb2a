// Package metrics holds chatgate's Prometheus metrics: every chatgate_*
// series is declared here, once, on a registry the node owns (not the
// global one, so a test process can run several nodes). The core and the
// stores know nothing of Prometheus: they report through core.Observer and
// the stores' OnCommit hooks, which Metrics implements.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Latency buckets in seconds: sub-millisecond in-process work up to the
// seconds of a stalled disk or database.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Metrics are one node's series.
type Metrics struct {
	reg *prometheus.Registry

	connections     *prometheus.GaugeVec
	connsRefused    prometheus.Counter
	delivered       *prometheus.CounterVec
	sends           *prometheus.CounterVec
	sendsOK         prometheus.Counter // sends{result="ok"}, looked up once: it is on the send path
	sendSeconds     prometheus.Histogram
	commitSeconds   prometheus.Histogram
	commitBatch     prometheus.Histogram
	slowConsumers   prometheus.Counter
	rateLimited     *prometheus.CounterVec
	presenceChanges *prometheus.CounterVec
	requests        *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	indexed         prometheus.Counter
}

// New declares the series on a new registry, with the Go runtime's and the
// process's own (goroutines, memory, open files).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(reg)
	m := &Metrics{
		reg: reg,
		connections: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatgate_connections",
			Help: "Open client connections by transport (WebSocket and SSE streams, polling requests in progress).",
		}, []string{"transport"}),
		connsRefused: f.NewCounter(prometheus.CounterOpts{
			Name: "chatgate_connections_refused_total",
			Help: "TCP connections refused at accept for exceeding -max-conns-per-address.",
		}),
		delivered: f.NewCounterVec(prometheus.CounterOpts{
			Name: "chatgate_events_delivered_total",
			Help: "Events handed to clients, by transport.",
		}, []string{"transport"}),
		sends: f.NewCounterVec(prometheus.CounterOpts{
			Name: "chatgate_sends_total",
			Help: "Message sends by result: ok (stored durably), or the error code returned.",
		}, []string{"result"}),
		sendSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name: "chatgate_send_duration_seconds", Buckets: latencyBuckets,
			Help: "Time from a send's arrival in the core to its acknowledgement (durable).",
		}),
		commitSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name: "chatgate_store_commit_duration_seconds", Buckets: latencyBuckets,
			Help: "Time of one group commit of the store, from its first request to durable.",
		}),
		commitBatch: f.NewHistogram(prometheus.HistogramOpts{
			Name: "chatgate_store_commit_batch_size", Buckets: prometheus.ExponentialBuckets(1, 2, 10),
			Help: "Write requests per group commit.",
		}),
		slowConsumers: f.NewCounter(prometheus.CounterOpts{
			Name: "chatgate_slow_consumers_total",
			Help: "Streams cut because their client fell too far behind (they resume by cursor).",
		}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "chatgate_rate_limited_total",
			Help: "Requests refused by a rate or connection limit, by limit.",
		}, []string{"limit"}),
		presenceChanges: f.NewCounterVec(prometheus.CounterOpts{
			Name: "chatgate_presence_changes_total",
			Help: "Users going online or offline as this node sees them.",
		}, []string{"status"}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "chatgate_http_requests_total",
			Help: "HTTP API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		requestSeconds: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatgate_http_request_duration_seconds", Buckets: latencyBuckets,
			Help: "HTTP API request latency by route pattern (streams and held polls excluded).",
		}, []string{"route"}),
		indexed: f.NewCounter(prometheus.CounterOpts{
			Name: "chatgate_search_indexed_messages_total",
			Help: "Messages the embedded store has indexed for search (after their commit, and by the backfill of an upgraded history).",
		}),
	}
	m.sendsOK = m.sends.WithLabelValues("ok")
	return m
}

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is where the series live (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Connected counts a connection of transport opening (+1) or closing (-1).
func (m *Metrics) Connected(transport string, delta int) {
	m.connections.WithLabelValues(transport).Add(float64(delta))
}

// ConnRefused counts a connection refused at accept.
func (m *Metrics) ConnRefused() {
	m.connsRefused.Inc()
	m.rateLimited.WithLabelValues("conns_per_address").Inc()
}

// Delivered counts n events handed to a client of transport.
func (m *Metrics) Delivered(transport string, n int) {
	m.delivered.WithLabelValues(transport).Add(float64(n))
}

// Sent records one send: its result ("ok" or an error code) and latency.
func (m *Metrics) Sent(result string, d time.Duration) {
	if result != "ok" {
		m.sends.WithLabelValues(result).Inc()
		return
	}
	m.sendsOK.Inc()
	m.sendSeconds.Observe(d.Seconds())
}

// Committed records one group commit of the store.
func (m *Metrics) Committed(requests int, d time.Duration) {
	m.commitSeconds.Observe(d.Seconds())
	m.commitBatch.Observe(float64(requests))
}

// Indexed counts messages indexed for search.
func (m *Metrics) Indexed(n int) { m.indexed.Add(float64(n)) }

// SlowConsumer counts a stream cut for falling behind.
func (m *Metrics) SlowConsumer() { m.slowConsumers.Inc() }

// RateLimited counts a request refused by limit.
func (m *Metrics) RateLimited(limit string) { m.rateLimited.WithLabelValues(limit).Inc() }

// PresenceChanged counts a user going online or offline.
func (m *Metrics) PresenceChanged(online bool) {
	if online {
		m.presenceChanges.WithLabelValues("online").Inc()
	} else {
		m.presenceChanges.WithLabelValues("offline").Inc()
	}
}

// Request records one HTTP API request by its route pattern (never the
// path itself, which holds ids).
func (m *Metrics) Request(route, method string, code int, d time.Duration, stream bool) {
	m.requests.WithLabelValues(route, method, codeLabel(code)).Inc()
	if !stream {
		m.requestSeconds.WithLabelValues(route).Observe(d.Seconds())
	}
}

func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}
