package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// MediaMetrics counts RTP traffic of a media engine: push counters for
// packets, bytes, loss and jitter (call them with deltas, e.g. when a session
// ends or from a periodic stats walk), and gauges read at scrape time.
type MediaMetrics struct {
	reg     *prometheus.Registry
	packets *prometheus.CounterVec
	bytes   *prometheus.CounterVec
	lost    prometheus.Counter
	jitter  prometheus.Histogram

	mu      sync.Mutex
	sources map[string]func() MediaGauges

	descSessions, descTranscoding, descRTPPorts *prometheus.Desc
}

// MediaGauges are a media backend's current figures.
type MediaGauges struct {
	Sessions    int // live media sessions
	Transcoding int // live sessions transcoding between codecs
	RTPPorts    int // RTP port pairs in use
}

func newMedia(f factory) *MediaMetrics {
	m := &MediaMetrics{
		reg:     f.reg,
		packets: f.counterVec("nkbridge_rtp_packets_total", "RTP packets, by direction (in: received by nkbridge, out: sent).", "direction"),
		bytes:   f.counterVec("nkbridge_rtp_bytes_total", "RTP payload bytes, by direction.", "direction"),
		lost:    f.counter("nkbridge_rtp_packets_lost_total", "RTP packets lost on the way to nkbridge (sequence gaps / RTCP)."),
		jitter: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nkbridge_rtp_jitter_seconds", Help: "Interarrival jitter of received RTP streams (RFC 3550), one observation per report.",
			Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5},
		}),
		sources: map[string]func() MediaGauges{},

		descSessions:    prometheus.NewDesc("nkbridge_media_sessions", "Live media sessions, by backend.", []string{"backend"}, nil),
		descTranscoding: prometheus.NewDesc("nkbridge_media_transcoding_sessions", "Live media sessions transcoding (e.g. Opus<->G.711), by backend.", []string{"backend"}, nil),
		descRTPPorts:    prometheus.NewDesc("nkbridge_media_rtp_ports", "RTP port pairs in use, by backend.", []string{"backend"}, nil),
	}
	f.reg.MustRegister(m.jitter, mediaCollector{m})
	return m
}

// Media returns the media registration point.
func (m *Metrics) Media() *MediaMetrics { return m.media }

// RTP adds packets and bytes in direction "in" or "out".
func (m *MediaMetrics) RTP(direction string, packets, bytes uint64) {
	d := dir(direction)
	m.packets.WithLabelValues(d).Add(float64(packets))
	m.bytes.WithLabelValues(d).Add(float64(bytes))
}

// RTPPackets adds packets in direction "in" or "out" (for sources that
// count no bytes).
func (m *MediaMetrics) RTPPackets(direction string, packets uint64) {
	m.packets.WithLabelValues(dir(direction)).Add(float64(packets))
}

// Lost adds lost packets.
func (m *MediaMetrics) Lost(packets uint64) { m.lost.Add(float64(packets)) }

// Jitter observes one jitter figure, in seconds.
func (m *MediaMetrics) Jitter(seconds float64) { m.jitter.Observe(seconds) }

// GaugesFunc publishes backend's gauges (nkbridge_media_sessions,
// nkbridge_media_transcoding_sessions, nkbridge_media_rtp_ports), read from
// f at scrape time. A later call for the same backend replaces f.
func (m *MediaMetrics) GaugesFunc(backend string, f func() MediaGauges) {
	m.mu.Lock()
	m.sources[backend] = f
	m.mu.Unlock()
}

type mediaCollector struct{ m *MediaMetrics }

func (c mediaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.m.descSessions
	ch <- c.m.descTranscoding
	ch <- c.m.descRTPPorts
}

func (c mediaCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	srcs := make(map[string]func() MediaGauges, len(c.m.sources))
	for k, v := range c.m.sources {
		srcs[k] = v
	}
	c.m.mu.Unlock()
	for name, f := range srcs {
		g := f()
		ch <- prometheus.MustNewConstMetric(c.m.descSessions, prometheus.GaugeValue, float64(g.Sessions), name)
		ch <- prometheus.MustNewConstMetric(c.m.descTranscoding, prometheus.GaugeValue, float64(g.Transcoding), name)
		ch <- prometheus.MustNewConstMetric(c.m.descRTPPorts, prometheus.GaugeValue, float64(g.RTPPorts), name)
	}
}
