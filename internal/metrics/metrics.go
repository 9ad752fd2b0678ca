// Package metrics is nkbridge's Prometheus instrumentation: one registry per
// process (never the global default), the counters and gauges of the control
// API, sessions and calls, and registration points for the SIP, media and
// ESL layers.
//
// The layers do not import this package. Each one declares the small
// observer interface it calls (as signaling.Observer and wsapi.Observer do)
// and the daemon's wiring passes the matching value from here:
//
//	m := metrics.New()
//	core := signaling.New(signaling.Options{Observer: m, ...})
//	api := wsapi.New(wsapi.Config{Observer: m, ...}, core, log)
//	m.WatchCore(core.Stats, api.ConnCount)
//	sipObserver := m.SIP()                       // Request / Response / Register (sip.Observer)
//	m.SIP().RegistrationsFunc(registrar.Count)   // gauge read at scrape time
//	m.ESL().ConnectedFunc("freeswitch", client.Connected)
//	m.Media().GaugesFunc("media", func() metrics.MediaGauges { ... })
//	m.Media().TrafficFunc("media", func() metrics.MediaTraffic { ... }) // counters read at scrape time
//	http.Handle("/metrics", m.Handler())
//
// Label values that come from the network (SIP methods, call target types)
// are folded into a fixed set so that no peer can grow the label space.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/nkbridge/nkbridge/signaling"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the registry and every nkbridge metric. Its methods are safe
// for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	apiConns        prometheus.Counter
	sessionsStarted *prometheus.CounterVec
	sessionsStopped *prometheus.CounterVec
	callsStarted    *prometheus.CounterVec
	callsAnswered   *prometheus.CounterVec
	callsEnded      *prometheus.CounterVec
	errors          *prometheus.CounterVec

	sip   *SIPMetrics
	media *MediaMetrics
	esl   *ESLMetrics
}

// New returns a Metrics with its own registry (Go runtime and process
// collectors included).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	m := &Metrics{
		reg:             reg,
		apiConns:        f.counter("nkbridge_api_connections_total", "Control API WebSocket connections accepted."),
		sessionsStarted: f.counterVec("nkbridge_sessions_started_total", "Sessions started, by session type and backend (\"\" for p2p).", "type", "backend"),
		sessionsStopped: f.counterVec("nkbridge_sessions_stopped_total", "Sessions stopped, by session type and stop code.", "type", "code"),
		callsStarted:    f.counterVec("nkbridge_calls_started_total", "Calls started, by target type (user, session, sip, verto, any, other).", "target"),
		callsAnswered:   f.counterVec("nkbridge_calls_answered_total", "Calls answered, by target type.", "target"),
		callsEnded: f.counterVec("nkbridge_calls_ended_total",
			"Calls ended, by target type and outcome (answered, rejected, no_answer, no_destination, cancelled).", "target", "outcome"),
		errors: f.counterVec("nkbridge_api_errors_total", "Control API error replies, by error code and its name.", "code", "name"),
	}
	m.sip = newSIP(f)
	m.media = newMedia(f)
	m.esl = newESL(f)
	return m
}

// Registry returns the registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, MaxRequestsInFlight: 4})
}

// ---- signaling.Observer

var _ signaling.Observer = (*Metrics)(nil)

// SessionStarted implements signaling.Observer.
func (m *Metrics) SessionStarted(_, typ, backend string) {
	m.sessionsStarted.WithLabelValues(typ, backend).Inc()
}

// SessionStopped implements signaling.Observer.
func (m *Metrics) SessionStopped(_, typ string, code int) {
	m.sessionsStopped.WithLabelValues(typ, strconv.Itoa(code)).Inc()
}

// CallStarted implements signaling.Observer.
func (m *Metrics) CallStarted(typ string) { m.callsStarted.WithLabelValues(target(typ)).Inc() }

// CallAnswered implements signaling.Observer.
func (m *Metrics) CallAnswered(typ string) { m.callsAnswered.WithLabelValues(target(typ)).Inc() }

// CallEnded implements signaling.Observer.
func (m *Metrics) CallEnded(typ, outcome string, _ int) {
	m.callsEnded.WithLabelValues(target(typ), outcome).Inc()
}

// target folds a call target type into a fixed set.
func target(typ string) string {
	switch typ {
	case "user", "session", "sip", "verto":
		return typ
	case "":
		return "any"
	}
	return "other"
}

// ---- wsapi.Observer

// APIConnOpened implements wsapi.Observer.
func (m *Metrics) APIConnOpened() { m.apiConns.Inc() }

// APIConnClosed implements wsapi.Observer (the open count is read from the
// server at scrape time, see WatchCore).
func (m *Metrics) APIConnClosed() {}

// APIError implements wsapi.Observer: errors by code.
func (m *Metrics) APIError(code int) { m.Error(code) }

// Error counts an error reply of any front end by its API code.
func (m *Metrics) Error(code int) {
	name := signaling.CodeName(code)
	if name == "" {
		name = "unknown"
	}
	m.errors.WithLabelValues(strconv.Itoa(code), name).Inc()
}

// WatchCore registers the gauges read at scrape time: sessions by type and
// state, calls by state, open API connections, and whether the daemon is
// draining. Either function may be nil.
func (m *Metrics) WatchCore(stats func() signaling.Stats, apiConns func() int) {
	m.reg.MustRegister(&coreCollector{stats: stats, conns: apiConns,
		sessions: prometheus.NewDesc("nkbridge_sessions", "Live sessions, by session type and state (starting, wait, ready).", []string{"type", "state"}, nil),
		calls:    prometheus.NewDesc("nkbridge_calls", "Live calls, by state (new, ringing, answered).", []string{"state"}, nil),
		draining: prometheus.NewDesc("nkbridge_draining", "1 while the daemon drains (after SIGTERM).", nil, nil),
		openAPI:  prometheus.NewDesc("nkbridge_api_connections", "Open control API WebSocket connections.", nil, nil),
	})
}

type coreCollector struct {
	stats                              func() signaling.Stats
	conns                              func() int
	sessions, calls, draining, openAPI *prometheus.Desc
}

func (c *coreCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessions
	ch <- c.calls
	ch <- c.draining
	ch <- c.openAPI
}

func (c *coreCollector) Collect(ch chan<- prometheus.Metric) {
	if c.conns != nil {
		ch <- prometheus.MustNewConstMetric(c.openAPI, prometheus.GaugeValue, float64(c.conns()))
	}
	if c.stats == nil {
		return
	}
	st := c.stats()
	for typ, states := range st.Sessions {
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(n), typ, state)
		}
	}
	for state, n := range st.Calls {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.GaugeValue, float64(n), state)
	}
	d := 0.0
	if st.Draining {
		d = 1
	}
	ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, d)
}

// HealthFunc publishes nkbridge_health_status{status}: 1 for the status
// /health would answer now (f, read at scrape time), 0 for the others, so
// that alerts can fire on 429 (overloaded) and 503 (draining) without
// probing /health. Call it once.
func (m *Metrics) HealthFunc(f func() string) {
	m.reg.MustRegister(&healthCollector{f: f,
		desc: prometheus.NewDesc("nkbridge_health_status",
			"1 for the status /health answers now (ok 200, overloaded 429, draining 503), 0 for the others.", []string{"status"}, nil)})
}

type healthCollector struct {
	f    func() string
	desc *prometheus.Desc
}

func (h *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *healthCollector) Collect(ch chan<- prometheus.Metric) {
	now := h.f()
	for _, s := range [...]string{"ok", "overloaded", "draining"} {
		v := 0.0
		if s == now {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(h.desc, prometheus.GaugeValue, v, s)
	}
}

// ---- SIP

// SIPMetrics counts SIP traffic; the SIP front end calls it through an
// interface of its own with these methods.
type SIPMetrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	responses  *prometheus.CounterVec
	registered *prometheus.CounterVec
	regState   *prometheus.GaugeVec
	trunkUp    *prometheus.GaugeVec
	once       sync.Once
}

func newSIP(f factory) *SIPMetrics {
	return &SIPMetrics{
		reg:        f.reg,
		requests:   f.counterVec("nkbridge_sip_requests_total", "SIP requests, by method and direction (in, out).", "method", "direction"),
		responses:  f.counterVec("nkbridge_sip_responses_total", "SIP final and provisional responses, by request method, status code and direction (in, out).", "method", "code", "direction"),
		registered: f.counterVec("nkbridge_sip_register_total", "REGISTER outcomes at the registrar (ok, unauthorized, failed, unregistered).", "result"),
		regState: f.gaugeVec("nkbridge_sip_registration_state",
			"State of nkbridge's own registrations at providers (sip.registrations): 1 for the current state (registering, registered, failed, rejected, unregistered), 0 for the others.", "name", "state"),
		trunkUp: f.gaugeVec("nkbridge_sip_trunk_host_up",
			"Health of each SIP trunk host (OPTIONS keep-alive): 1 up, 0 down.", "trunk", "host"),
	}
}

// SIP returns the SIP registration point.
func (m *Metrics) SIP() *SIPMetrics { return m.sip }

// Request counts a SIP request; direction is "in" (received) or "out" (sent).
func (s *SIPMetrics) Request(method, direction string) {
	s.requests.WithLabelValues(sipMethod(method), dir(direction)).Inc()
}

// Response counts a SIP response to a request of method.
func (s *SIPMetrics) Response(method string, code int, direction string) {
	if code < 100 || code > 699 {
		code = 0
	}
	s.responses.WithLabelValues(sipMethod(method), strconv.Itoa(code), dir(direction)).Inc()
}

// Registered counts a REGISTER outcome: "ok", "unauthorized", "failed" or
// "unregistered" (others count as "failed").
func (s *SIPMetrics) Registered(result string) {
	switch result {
	case "ok", "unauthorized", "failed", "unregistered":
	default:
		result = "failed"
	}
	s.registered.WithLabelValues(result).Inc()
}

// Register is Registered under the name the SIP front end's Observer uses.
func (s *SIPMetrics) Register(outcome string) { s.Registered(outcome) }

// RegistrationState sets nkbridge_sip_registration_state for the outbound
// registration name: 1 for state, 0 for the others.
func (s *SIPMetrics) RegistrationState(name, state string) {
	for _, st := range [...]string{"registering", "registered", "failed", "rejected", "unregistered"} {
		v := 0.0
		if st == state {
			v = 1
		}
		s.regState.WithLabelValues(name, st).Set(v)
	}
}

// TrunkHostState sets nkbridge_sip_trunk_host_up for a trunk's host.
func (s *SIPMetrics) TrunkHostState(trunk, host string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	s.trunkUp.WithLabelValues(trunk, host).Set(v)
}

// RegistrationsFunc publishes nkbridge_sip_registrations, read from f at
// scrape time (e.g. the registrar's Count). Only the first call counts.
func (s *SIPMetrics) RegistrationsFunc(f func() int) {
	s.once.Do(func() {
		s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "nkbridge_sip_registrations", Help: "Current SIP registrations (contacts bound at the registrar).",
		}, func() float64 { return float64(f()) }))
	})
}

// sipMethod folds a method into the known SIP methods or "OTHER".
func sipMethod(m string) string {
	m = strings.ToUpper(m)
	switch m {
	case "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK",
		"SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH":
		return m
	}
	return "OTHER"
}

func dir(d string) string {
	if d == "out" {
		return "out"
	}
	return "in"
}

// ---- ESL

// ESLMetrics reports FreeSWITCH event-socket connection state.
type ESLMetrics struct {
	mu    sync.Mutex
	reg   *prometheus.Registry
	up    *prometheus.GaugeVec
	conns *prometheus.CounterVec
	funcs map[string]bool
}

func newESL(f factory) *ESLMetrics {
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nkbridge_esl_connected", Help: "1 while the ESL connection to the named FreeSWITCH is up."}, []string{"backend"})
	f.reg.MustRegister(up)
	return &ESLMetrics{reg: f.reg, up: up, funcs: map[string]bool{},
		conns: f.counterVec("nkbridge_esl_connects_total", "ESL connections established (reconnects included), by backend.", "backend")}
}

// ESL returns the ESL registration point.
func (m *Metrics) ESL() *ESLMetrics { return m.esl }

// Connected sets the connection state of backend (push style); up also
// counts a connect.
func (e *ESLMetrics) Connected(backend string, up bool) {
	v := 0.0
	if up {
		v = 1
		e.conns.WithLabelValues(backend).Inc()
	}
	e.up.WithLabelValues(backend).Set(v)
}

// ConnectedFunc publishes nkbridge_esl_connected{backend} read from f at
// scrape time (pull style, e.g. esl.Client.Connected). Use one style per
// backend; a second ConnectedFunc for the same backend is ignored.
func (e *ESLMetrics) ConnectedFunc(backend string, f func() bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.funcs[backend] {
		return
	}
	e.funcs[backend] = true
	e.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nkbridge_esl_up", Help: "1 while the ESL connection to the backend is up (read at scrape time).",
		ConstLabels: prometheus.Labels{"backend": backend},
	}, func() float64 {
		if f() {
			return 1
		}
		return 0
	}))
}

// ---- helpers

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}
