package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// CDRMetrics counts call records (cdr.Observer) and reads the spool's figures at scrape
// time. Endpoint labels are webhook hosts from the configuration (a fixed set).
type CDRMetrics struct {
	records   *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	delivered *prometheus.CounterVec
	failed    *prometheus.CounterVec
	dead      *prometheus.CounterVec
}

// CDR registers the call-record metrics: nkbridge_cdr_records_total{event},
// nkbridge_cdr_dropped_total{reason}, nkbridge_cdr_webhook_delivered_total{endpoint},
// nkbridge_cdr_webhook_failed_total{endpoint}, nkbridge_cdr_webhook_dead_letter_total{endpoint},
// and the gauges nkbridge_cdr_webhook_queued
// {endpoint} and nkbridge_cdr_spool_bytes read from queued and spoolBytes at scrape time.
// Call it once.
func (m *Metrics) CDR(queued func() map[string]uint64, spoolBytes func() int64) *CDRMetrics {
	f := factory{m.reg}
	c := &CDRMetrics{
		records:   f.counterVec("nkbridge_cdr_records_total", "Call records and life-cycle events made, by event (cdr, call.ringing, call.answered, call.ended).", "event"),
		dropped:   f.counterVec("nkbridge_cdr_dropped_total", "Records lost before the spool, by reason (queue_full, spool_full, spool_error).", "reason"),
		delivered: f.counterVec("nkbridge_cdr_webhook_delivered_total", "Records a webhook endpoint took (2xx), by endpoint host.", "endpoint"),
		failed:    f.counterVec("nkbridge_cdr_webhook_failed_total", "Failed webhook delivery attempts (retried), by endpoint host.", "endpoint"),
		dead:      f.counterVec("nkbridge_cdr_webhook_dead_letter_total", "Records an endpoint would not take, moved to its dead-letter file, by endpoint host.", "endpoint"),
	}
	m.reg.MustRegister(cdrCollector{
		queued: queued, spoolBytes: spoolBytes,
		descQueued: prometheus.NewDesc("nkbridge_cdr_webhook_queued", "Records in the spool a webhook endpoint has not taken yet, by endpoint host.", []string{"endpoint"}, nil),
		descSpool:  prometheus.NewDesc("nkbridge_cdr_spool_bytes", "Size of the webhook spool on disk.", nil, nil),
	})
	return c
}

// Recorded counts a record of event.
func (c *CDRMetrics) Recorded(event string) { c.records.WithLabelValues(event).Inc() }

// Dropped counts a lost record.
func (c *CDRMetrics) Dropped(reason string) { c.dropped.WithLabelValues(reason).Inc() }

// Delivered counts a record taken by endpoint.
func (c *CDRMetrics) Delivered(endpoint string) { c.delivered.WithLabelValues(endpoint).Inc() }

// Failed counts a failed attempt to endpoint.
func (c *CDRMetrics) Failed(endpoint string) { c.failed.WithLabelValues(endpoint).Inc() }

// DeadLettered counts a record moved to endpoint's dead-letter file (cdr.DeadLetterObserver).
func (c *CDRMetrics) DeadLettered(endpoint string) { c.dead.WithLabelValues(endpoint).Inc() }

type cdrCollector struct {
	queued                func() map[string]uint64
	spoolBytes            func() int64
	descQueued, descSpool *prometheus.Desc
}

func (c cdrCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descQueued
	ch <- c.descSpool
}

func (c cdrCollector) Collect(ch chan<- prometheus.Metric) {
	for ep, n := range c.queued() {
		ch <- prometheus.MustNewConstMetric(c.descQueued, prometheus.GaugeValue, float64(n), ep)
	}
	ch <- prometheus.MustNewConstMetric(c.descSpool, prometheus.GaugeValue, float64(c.spoolBytes()))
}
