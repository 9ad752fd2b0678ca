package metrics

import "github.com/prometheus/client_golang/prometheus"

// StreamCounters are the live audio streams' figures (media/stream), read at each scrape.
type StreamCounters struct {
	Started, Failed, Active   int64
	FramesSent, FramesDropped uint64
	AppMessages, AppGarbage   uint64
	PlaybackDropped           uint64
	Disconnects, Reconnects   uint64
}

// StreamsFunc registers the streams' metrics, read from f at each scrape:
// nkbridge_streams_started_total, _failed_total, nkbridge_streams_active,
// nkbridge_stream_frames_total{result="sent|dropped"}, nkbridge_stream_app_messages_total{result="ok|garbage"},
// nkbridge_stream_playback_dropped_samples_total, nkbridge_stream_disconnects_total,
// nkbridge_stream_reconnects_total.
func (m *Metrics) StreamsFunc(f func() StreamCounters) {
	m.reg.MustRegister(streamsCollector{f: f})
}

var (
	streamsStarted    = prometheus.NewDesc("nkbridge_streams_started_total", "Audio streams started.", nil, nil)
	streamsFailed     = prometheus.NewDesc("nkbridge_streams_failed_total", "Audio streams that could not start (connect, limit).", nil, nil)
	streamsActive     = prometheus.NewDesc("nkbridge_streams_active", "Audio streams running.", nil, nil)
	streamFrames      = prometheus.NewDesc("nkbridge_stream_frames_total", "20 ms audio frames for stream applications: sent, or dropped because the application was slow.", []string{"result"}, nil)
	streamAppMessages = prometheus.NewDesc("nkbridge_stream_app_messages_total", "Messages from stream applications: ok, or garbage (not understood, ignored).", []string{"result"}, nil)
	streamPlayDropped = prometheus.NewDesc("nkbridge_stream_playback_dropped_samples_total", "Samples of application audio dropped over streams.playback_max.", nil, nil)
	streamDisconnects = prometheus.NewDesc("nkbridge_stream_disconnects_total", "Stream applications that went away.", nil, nil)
	streamReconnects  = prometheus.NewDesc("nkbridge_stream_reconnects_total", "Streams connected again after losing their application.", nil, nil)
)

type streamsCollector struct{ f func() StreamCounters }

func (c streamsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{streamsStarted, streamsFailed, streamsActive, streamFrames, streamAppMessages,
		streamPlayDropped, streamDisconnects, streamReconnects} {
		ch <- d
	}
}

func (c streamsCollector) Collect(ch chan<- prometheus.Metric) {
	k := c.f()
	ch <- prometheus.MustNewConstMetric(streamsStarted, prometheus.CounterValue, float64(k.Started))
	ch <- prometheus.MustNewConstMetric(streamsFailed, prometheus.CounterValue, float64(k.Failed))
	ch <- prometheus.MustNewConstMetric(streamsActive, prometheus.GaugeValue, float64(k.Active))
	ch <- prometheus.MustNewConstMetric(streamFrames, prometheus.CounterValue, float64(k.FramesSent), "sent")
	ch <- prometheus.MustNewConstMetric(streamFrames, prometheus.CounterValue, float64(k.FramesDropped), "dropped")
	ch <- prometheus.MustNewConstMetric(streamAppMessages, prometheus.CounterValue, float64(k.AppMessages-k.AppGarbage), "ok")
	ch <- prometheus.MustNewConstMetric(streamAppMessages, prometheus.CounterValue, float64(k.AppGarbage), "garbage")
	ch <- prometheus.MustNewConstMetric(streamPlayDropped, prometheus.CounterValue, float64(k.PlaybackDropped))
	ch <- prometheus.MustNewConstMetric(streamDisconnects, prometheus.CounterValue, float64(k.Disconnects))
	ch <- prometheus.MustNewConstMetric(streamReconnects, prometheus.CounterValue, float64(k.Reconnects))
}
