package metrics_test

import (
	"bufio"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/metrics"
	"github.com/nkbridge/nkbridge/signaling"
)

// scrape renders the registry through Handler and returns every sample as
// `name{labels}` (labels as rendered) → value.
func scrape(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	return parse(t, rec.Body)
}

func parse(t *testing.T, r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestCountersAndGauges(t *testing.T) {
	m := metrics.New()
	var obs signaling.Observer = m
	obs.SessionStarted("s1", "p2p", "")
	obs.SessionStarted("s2", "echo", "media")
	obs.SessionStopped("s2", "echo", 1013)
	obs.CallStarted("user")
	obs.CallStarted("x-evil-type-from-the-network")
	obs.CallStarted("")
	obs.CallAnswered("user")
	obs.CallEnded("user", signaling.OutcomeAnswered, 1013)
	obs.CallEnded("sip", signaling.OutcomeNoAnswer, 2023)
	m.APIConnOpened()
	m.APIConnOpened()
	m.APIError(2001)
	m.APIError(2001)
	m.APIError(4242)
	m.WatchCore(func() signaling.Stats {
		return signaling.Stats{Sessions: map[string]map[string]int{"p2p": {"wait": 2, "ready": 1}}, Calls: map[string]int{"ringing": 3}, Draining: true}
	}, func() int { return 5 })

	sip := m.SIP()
	sip.Request("invite", "in")
	sip.Request("INVITE", "in")
	sip.Request("FOOBAR", "out")
	sip.Response("INVITE", 200, "out")
	sip.Response("INVITE", 9999, "in")
	sip.Registered("ok")
	sip.Registered("weird")
	regs := 3
	sip.RegistrationsFunc(func() int { return regs })
	sip.RegistrationsFunc(func() int { return 100 }) // ignored

	med := m.Media()
	med.RTP("in", 50, 8000)
	med.RTP("out", 49, 7840)
	med.RTP("in", 1, 160)
	med.RTPPackets("out", 1)
	med.Lost(2)
	med.Jitter(0.004)
	med.GaugesFunc("media", func() metrics.MediaGauges { return metrics.MediaGauges{Sessions: 4, Transcoding: 1, RTPPorts: 2} })
	med.TrafficFunc("media", func() metrics.MediaTraffic {
		return metrics.MediaTraffic{PacketsIn: 100, PacketsOut: 90, BytesIn: 16000, BytesOut: 14400, Lost: 3,
			Streams: 2, JitterMax: 0.03, JitterMean: 0.02}
	})
	sip.Register("unregistered")
	sip.RegistrationState("itsp", "registering")
	sip.RegistrationState("itsp", "registered")
	sip.TrunkHostState("carrier", "192.0.2.1:5060", true)
	sip.TrunkHostState("carrier", "192.0.2.2:5060", false)

	esl := m.ESL()
	esl.Connected("fs1", true)
	esl.Connected("fs1", false)
	up := true
	esl.ConnectedFunc("fs2", func() bool { return up })

	got := scrape(t, m)
	want := map[string]float64{
		`nkbridge_sessions_started_total{backend="",type="p2p"}`:                   1,
		`nkbridge_sessions_started_total{backend="media",type="echo"}`:             1,
		`nkbridge_sessions_stopped_total{code="1013",type="echo"}`:                 1,
		`nkbridge_calls_started_total{target="user"}`:                              1,
		`nkbridge_calls_started_total{target="other"}`:                             1,
		`nkbridge_calls_started_total{target="any"}`:                               1,
		`nkbridge_calls_answered_total{target="user"}`:                             1,
		`nkbridge_calls_ended_total{outcome="answered",target="user"}`:             1,
		`nkbridge_calls_ended_total{outcome="no_answer",target="sip"}`:             1,
		`nkbridge_api_connections_total`:                                           2,
		`nkbridge_api_connections`:                                                 5,
		`nkbridge_api_errors_total{code="2001",name="no_mediaserver"}`:             2,
		`nkbridge_api_errors_total{code="4242",name="unknown"}`:                    1,
		`nkbridge_sessions{state="wait",type="p2p"}`:                               2,
		`nkbridge_sessions{state="ready",type="p2p"}`:                              1,
		`nkbridge_calls{state="ringing"}`:                                          3,
		`nkbridge_draining`:                                                        1,
		`nkbridge_sip_requests_total{direction="in",method="INVITE"}`:              2,
		`nkbridge_sip_requests_total{direction="out",method="OTHER"}`:              1,
		`nkbridge_sip_responses_total{code="200",direction="out",method="INVITE"}`: 1,
		`nkbridge_sip_responses_total{code="0",direction="in",method="INVITE"}`:    1,
		`nkbridge_sip_register_total{result="ok"}`:                                 1,
		`nkbridge_sip_register_total{result="failed"}`:                             1,
		`nkbridge_sip_registrations`:                                               3,
		`nkbridge_sip_registration_state{name="itsp",state="registered"}`:          1,
		`nkbridge_sip_registration_state{name="itsp",state="registering"}`:         0,
		`nkbridge_sip_registration_state{name="itsp",state="failed"}`:              0,
		`nkbridge_sip_trunk_host_up{host="192.0.2.1:5060",trunk="carrier"}`:        1,
		`nkbridge_sip_trunk_host_up{host="192.0.2.2:5060",trunk="carrier"}`:        0,
		`nkbridge_rtp_packets_total{direction="in"}`:                               51 + 100,
		`nkbridge_rtp_bytes_total{direction="out"}`:                                7840 + 14400,
		`nkbridge_rtp_bytes_total{direction="in"}`:                                 8160 + 16000,
		`nkbridge_rtp_packets_total{direction="out"}`:                              50 + 90,
		`nkbridge_rtp_packets_lost_total`:                                          2 + 3,
		`nkbridge_rtp_jitter_max_seconds{backend="media"}`:                         0.03,
		`nkbridge_rtp_jitter_mean_seconds{backend="media"}`:                        0.02,
		`nkbridge_rtp_receive_streams{backend="media"}`:                            2,
		`nkbridge_sip_register_total{result="unregistered"}`:                       1,
		`nkbridge_rtp_jitter_seconds_count`:                                        1,
		`nkbridge_rtp_jitter_seconds_bucket{le="0.005"}`:                           1,
		`nkbridge_rtp_jitter_seconds_bucket{le="0.002"}`:                           0,
		`nkbridge_media_sessions{backend="media"}`:                                 4,
		`nkbridge_media_transcoding_sessions{backend="media"}`:                     1,
		`nkbridge_media_rtp_ports{backend="media"}`:                                2,
		`nkbridge_esl_connected{backend="fs1"}`:                                    0,
		`nkbridge_esl_connects_total{backend="fs1"}`:                               1,
		`nkbridge_esl_up{backend="fs2"}`:                                           1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	for k := range got {
		if strings.Contains(k, "x-evil") || strings.Contains(k, "FOOBAR") || strings.Contains(k, "weird") {
			t.Errorf("unbounded label leaked: %s", k)
		}
	}
	regs, up = 7, false
	got = scrape(t, m)
	if got[`nkbridge_sip_registrations`] != 7 || got[`nkbridge_esl_up{backend="fs2"}`] != 0 {
		t.Errorf("scrape-time gauges not re-read: %v %v", got[`nkbridge_sip_registrations`], got[`nkbridge_esl_up{backend="fs2"}`])
	}
}

// Two Metrics never share state (no global registry).
func TestIndependentRegistries(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.CallStarted("user")
	if got := scrape(t, b)[`nkbridge_calls_started_total{target="user"}`]; got != 0 {
		t.Fatalf("b sees a's call: %v", got)
	}
}

// nkbridge_health_status is one-hot over ok, overloaded and draining,
// following what the function says at scrape time.
func TestHealthStatus(t *testing.T) {
	m := metrics.New()
	now := "ok"
	m.HealthFunc(func() string { return now })
	for _, now = range []string{"ok", "overloaded", "draining", "ok"} {
		got := scrape(t, m)
		for _, s := range []string{"ok", "overloaded", "draining"} {
			want := 0.0
			if s == now {
				want = 1
			}
			if v, ok := got[`nkbridge_health_status{status="`+s+`"}`]; !ok || v != want {
				t.Fatalf("now %s: status %s = %v %v, want %v", now, s, v, ok, want)
			}
		}
	}
}
