package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// MediaMetrics counts RTP traffic of media engines. Two styles, which add up:
// pull (TrafficFunc: an engine's cumulative counters read at scrape time, so
// they move while calls last) and push (RTP, RTPPackets, Lost, Jitter with
// deltas, for sources that only report at the end). Gauges are read at scrape
// time (GaugesFunc).
type MediaMetrics struct {
	reg *prometheus.Registry
	// pushed totals: [in, out]
	pkts, bytes [2]atomic.Uint64
	lost        atomic.Uint64
	jitter      prometheus.Histogram

	mu      sync.Mutex
	sources map[string]func() MediaGauges
	traffic map[string]func() MediaTraffic

	descSessions, descTranscoding, descRTPPorts    *prometheus.Desc
	descPackets, descBytes, descLost               *prometheus.Desc
	descJitterMax, descJitterMean, descRecvStreams *prometheus.Desc
}

// MediaTraffic is a media backend's RTP traffic: counters since it started
// (they must never decrease) and the jitter of its live received streams.
type MediaTraffic struct {
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64 // RTP payload bytes
	Lost                  uint64
	Streams               int     // live received streams with a jitter figure
	JitterMax, JitterMean float64 // seconds
}

// MediaGauges are a media backend's current figures.
type MediaGauges struct {
	Sessions    int // live media sessions
	Transcoding int // live sessions transcoding between codecs
	RTPPorts    int // RTP port pairs in use
}

func newMedia(f factory) *MediaMetrics {
	m := &MediaMetrics{
		reg: f.reg,
		jitter: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nkbridge_rtp_jitter_seconds", Help: "Interarrival jitter of received RTP streams (RFC 3550), one observation per report.",
			Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5},
		}),
		sources: map[string]func() MediaGauges{},
		traffic: map[string]func() MediaTraffic{},

		descPackets:     prometheus.NewDesc("nkbridge_rtp_packets_total", "RTP packets, by direction (in: received by nkbridge, out: sent).", []string{"direction"}, nil),
		descBytes:       prometheus.NewDesc("nkbridge_rtp_bytes_total", "RTP payload bytes, by direction.", []string{"direction"}, nil),
		descLost:        prometheus.NewDesc("nkbridge_rtp_packets_lost_total", "RTP packets lost on the way to nkbridge (sequence gaps / RTCP).", nil, nil),
		descJitterMax:   prometheus.NewDesc("nkbridge_rtp_jitter_max_seconds", "Largest interarrival jitter (RFC 3550) among live received RTP streams, by backend.", []string{"backend"}, nil),
		descJitterMean:  prometheus.NewDesc("nkbridge_rtp_jitter_mean_seconds", "Mean interarrival jitter (RFC 3550) of live received RTP streams, by backend.", []string{"backend"}, nil),
		descRecvStreams: prometheus.NewDesc("nkbridge_rtp_receive_streams", "Live received RTP streams with a jitter figure, by backend.", []string{"backend"}, nil),

		descSessions:    prometheus.NewDesc("nkbridge_media_sessions", "Live media sessions, by backend.", []string{"backend"}, nil),
		descTranscoding: prometheus.NewDesc("nkbridge_media_transcoding_sessions", "Live media sessions transcoding (e.g. Opus<->G.711), by backend.", []string{"backend"}, nil),
		descRTPPorts:    prometheus.NewDesc("nkbridge_media_rtp_ports", "RTP port pairs in use, by backend.", []string{"backend"}, nil),
	}
	f.reg.MustRegister(m.jitter, mediaCollector{m})
	return m
}

// Media returns the media registration point.
func (m *Metrics) Media() *MediaMetrics { return m.media }

func dirIndex(direction string) int {
	if dir(direction) == "out" {
		return 1
	}
	return 0
}

// RTP adds packets and bytes in direction "in" or "out".
func (m *MediaMetrics) RTP(direction string, packets, bytes uint64) {
	d := dirIndex(direction)
	m.pkts[d].Add(packets)
	m.bytes[d].Add(bytes)
}

// RTPPackets adds packets in direction "in" or "out" (for sources that
// count no bytes).
func (m *MediaMetrics) RTPPackets(direction string, packets uint64) {
	m.pkts[dirIndex(direction)].Add(packets)
}

// Lost adds lost packets.
func (m *MediaMetrics) Lost(packets uint64) { m.lost.Add(packets) }

// TrafficFunc publishes backend's RTP traffic read from f at scrape time: its
// counters are added to nkbridge_rtp_packets_total, nkbridge_rtp_bytes_total
// and nkbridge_rtp_packets_lost_total, its jitter goes to
// nkbridge_rtp_jitter_{max,mean}_seconds{backend}. f must be cheap and its
// counters must never decrease. A later call for the same backend replaces f.
func (m *MediaMetrics) TrafficFunc(backend string, f func() MediaTraffic) {
	m.mu.Lock()
	m.traffic[backend] = f
	m.mu.Unlock()
}

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
	ch <- c.m.descPackets
	ch <- c.m.descBytes
	ch <- c.m.descLost
	ch <- c.m.descJitterMax
	ch <- c.m.descJitterMean
	ch <- c.m.descRecvStreams
}

func (c mediaCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	srcs := make(map[string]func() MediaGauges, len(c.m.sources))
	for k, v := range c.m.sources {
		srcs[k] = v
	}
	tsrcs := make(map[string]func() MediaTraffic, len(c.m.traffic))
	for k, v := range c.m.traffic {
		tsrcs[k] = v
	}
	c.m.mu.Unlock()
	pkts := [2]uint64{c.m.pkts[0].Load(), c.m.pkts[1].Load()}
	bytes := [2]uint64{c.m.bytes[0].Load(), c.m.bytes[1].Load()}
	lost := c.m.lost.Load()
	for name, f := range tsrcs {
		t := f()
		pkts[0] += t.PacketsIn
		pkts[1] += t.PacketsOut
		bytes[0] += t.BytesIn
		bytes[1] += t.BytesOut
		lost += t.Lost
		ch <- prometheus.MustNewConstMetric(c.m.descJitterMax, prometheus.GaugeValue, t.JitterMax, name)
		ch <- prometheus.MustNewConstMetric(c.m.descJitterMean, prometheus.GaugeValue, t.JitterMean, name)
		ch <- prometheus.MustNewConstMetric(c.m.descRecvStreams, prometheus.GaugeValue, float64(t.Streams), name)
	}
	for i, d := range [2]string{"in", "out"} {
		ch <- prometheus.MustNewConstMetric(c.m.descPackets, prometheus.CounterValue, float64(pkts[i]), d)
		ch <- prometheus.MustNewConstMetric(c.m.descBytes, prometheus.CounterValue, float64(bytes[i]), d)
	}
	ch <- prometheus.MustNewConstMetric(c.m.descLost, prometheus.CounterValue, float64(lost))
	for name, f := range srcs {
		g := f()
		ch <- prometheus.MustNewConstMetric(c.m.descSessions, prometheus.GaugeValue, float64(g.Sessions), name)
		ch <- prometheus.MustNewConstMetric(c.m.descTranscoding, prometheus.GaugeValue, float64(g.Transcoding), name)
		ch <- prometheus.MustNewConstMetric(c.m.descRTPPorts, prometheus.GaugeValue, float64(g.RTPPorts), name)
	}
}
