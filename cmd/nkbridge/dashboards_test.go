package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	nkclient "github.com/nkbridge/nkbridge/client"
	"github.com/nkbridge/nkbridge/fsbridge/fakefs"
	"github.com/nkbridge/nkbridge/internal/peers"
)

const (
	dashboardFile = "../../deploy/grafana/nkbridge.json"
	alertsFile    = "../../deploy/prometheus/nkbridge-alerts.yml"
	alertsTest    = "../../deploy/prometheus/nkbridge-alerts.test.yml"
)

// promExpr is a PromQL expression of the dashboard or the alert rules, with
// where it comes from.
type promExpr struct{ Where, Expr string }

// dashboardExprs returns every query of the Grafana dashboard: panel
// targets (rows' nested panels included) and the variables' label_values.
func dashboardExprs(t *testing.T) []promExpr {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID         int
		Title      string
		Type       string
		GridPos    struct{ H, W, X, Y int }
		Datasource json.RawMessage
		Targets    []struct{ Expr string }
		Panels     json.RawMessage
	}
	var dash struct {
		UID, Title string
		Panels     []panel
		Templating struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Fatalf("dashboard without uid or title")
	}
	var out []promExpr
	ids := map[int]string{}
	var placed []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if other, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or shared with %q", p.Title, p.ID, other)
			}
			ids[p.ID] = p.Title
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: grid position %+v outside the 24 columns", p.Title, g)
			}
			for _, q := range placed {
				h := q.GridPos
				if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
					t.Errorf("panels %q and %q overlap: %+v %+v", p.Title, q.Title, g, h)
				}
			}
			placed = append(placed, p)
			if p.Type == "row" {
				var nested []panel
				_ = json.Unmarshal(p.Panels, &nested)
				walk(nested)
				continue
			}
			if !strings.Contains(string(p.Datasource), "${datasource}") {
				t.Errorf("panel %q does not use the $datasource variable: %s", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out = append(out, promExpr{"panel " + p.Title, tg.Expr})
			}
		}
	}
	walk(dash.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		out = append(out, promExpr{"variable " + v.Name, m[1]})
	}
	return out
}

// alertRules returns the expressions of the alerting rules, checking that
// each has a severity and a summary.
func alertRules(t *testing.T) []promExpr {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []promExpr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: needs alert, labels.severity and annotations.summary", r)
			}
			out = append(out, promExpr{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

// metricFamilies parses the Prometheus text format: family → label names
// seen on its samples. Histograms and summaries also answer for their
// _bucket, _sum and _count series.
func metricFamilies(t *testing.T, body string) map[string][]string {
	t.Helper()
	fams := map[string][]string{}
	typ := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			typ[f[2]] = f[3]
			if _, ok := fams[f[2]]; !ok {
				fams[f[2]] = []string{}
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		if i := strings.IndexByte(line, '{'); i >= 0 && i == len(name) {
			sel, _, err := promMatchers(line, i)
			if err != nil {
				t.Fatalf("sample %q: %v", line, err)
			}
			for _, l := range sel.Labels {
				if !slices.Contains(fams[name], l) {
					fams[name] = append(fams[name], l)
				}
			}
		} else if _, ok := fams[name]; !ok {
			fams[name] = []string{}
		}
	}
	for name, tp := range typ {
		if tp == "histogram" || tp == "summary" {
			if _, ok := fams[name+"_bucket"]; !ok && tp == "histogram" {
				fams[name+"_bucket"] = []string{"le"}
			}
			for _, s := range []string{"_sum", "_count"} {
				if _, ok := fams[name+s]; !ok {
					fams[name+s] = []string{}
				}
			}
		}
	}
	return fams
}

// checkMetricNames reports every selector of exprs whose metric the binary
// does not export, or whose matchers use a label its samples never carry.
// up is Prometheus's own; job and instance are target labels.
func checkMetricNames(exprs []promExpr, fams map[string][]string) []string {
	var bad []string
	for _, e := range exprs {
		sels, err := promSelectors(e.Expr)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v in %s", e.Where, err, e.Expr))
			continue
		}
		if len(sels) == 0 {
			bad = append(bad, fmt.Sprintf("%s: no metric in %s", e.Where, e.Expr))
		}
		for _, s := range sels {
			labels, ok := fams[s.Name]
			if s.Name == "up" {
				ok, labels = true, nil
			}
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: metric %s is not exported by nkbridge", e.Where, s.Name))
				continue
			}
			for _, l := range s.Labels {
				if l != "job" && l != "instance" && !slices.Contains(labels, l) {
					bad = append(bad, fmt.Sprintf("%s: %s has no label %q (it has %v)", e.Where, s.Name, l, labels))
				}
			}
		}
	}
	return bad
}

// A misspelt metric or label in a query is caught.
func TestCheckMetricNamesCatchesTypos(t *testing.T) {
	fams := metricFamilies(t, "# TYPE a_total counter\na_total{direction=\"in\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n")
	good := []promExpr{{"x", `rate(a_total{direction="in",job="j"}[5m]) + on(instance) sum(rate(h_bucket[5m])) + up`}}
	if bad := checkMetricNames(good, fams); len(bad) != 0 {
		t.Fatal(bad)
	}
	for _, e := range []string{`rate(a_totl[5m])`, `a_total{dir="in"}`, `h_buckets`, `sum by (x) (1)`} {
		if bad := checkMetricNames([]promExpr{{"x", e}}, fams); len(bad) != 1 {
			t.Errorf("%s: %v", e, bad)
		}
	}
}

// Every metric the Grafana dashboard and the alert rules query is one the
// real binary exports, with the labels they match on. The binary runs with
// SIP, the embedded media engine and a FreeSWITCH backend (the fake Event
// Socket), and gets enough traffic for every labelled series to appear: an
// answered API call, a refused session, an unauthenticated REGISTER, a
// ringing call. Then a real Prometheus scrapes it: every dashboard query
// returns data and every alert rule evaluates without error.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exprs := append(dashboardExprs(t), alertRules(t)...)
	if len(exprs) < 30 {
		t.Fatalf("only %d queries found", len(exprs))
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	fs, err := fakefs.Start(fakefs.Options{Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	sipPort, rtp := peers.FreePort(t), peers.FreeUDPRange(t, 20)
	d := startBinary(t, "NKB_SIP_ENABLED=true", fmt.Sprintf("NKB_SIP_LISTEN=127.0.0.1:%d", sipPort),
		fmt.Sprintf("NKB_MEDIA_RTP_PORT_MIN=%d", rtp), fmt.Sprintf("NKB_MEDIA_RTP_PORT_MAX=%d", rtp+19),
		"NKB_FREESWITCH_ESL_ADDR="+fs.Addr(), "NKB_FREESWITCH_ESL_PASSWORD=pw")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// API traffic through the Go client: Bob answers Alice's call, then she
	// hangs up; a session of an unknown type is refused.
	d.client("bob", nkclient.Options{OnInvite: func(ctx context.Context, inv *nkclient.Invite) {
		if err := inv.Accept(ctx, nkclient.SDP{SDP: "v=0"}, ""); err != nil {
			t.Errorf("accept: %v", err)
		}
	}})
	alice := d.client("alice", nkclient.Options{})
	s, err := alice.StartSession(ctx, nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	answered := alice.Events(nkclient.Selector{Class: "media", Subclass: "session", Type: "answer", ObjID: s.SessionID})
	call, err := alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "bob", SessionID: s.SessionID, Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-answered.C:
	case <-ctx.Done():
		t.Fatal("call not answered")
	}
	if err := alice.Hangup(ctx, call, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.StartSession(ctx, nkclient.SessionStart{Type: "nope"}); err == nil {
		t.Fatal("unknown session type accepted")
	}
	// Live sessions and calls have per-state gauges only while they last:
	// Carol lets a call from Alice ring during the scrape.
	d.client("carol", nkclient.Options{})
	s, err = alice.StartSession(ctx, nkclient.SessionStart{Type: "p2p", Offer: &nkclient.SDP{SDP: "v=0"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.StartCall(ctx, nkclient.CallStart{Type: "user", Callee: "carol", SessionID: s.SessionID, Offer: &nkclient.SDP{SDP: "v=0"}}); err != nil {
		t.Fatal(err)
	}

	// One REGISTER without credentials: challenged (401).
	if code := sipRegister(t, fmt.Sprintf("127.0.0.1:%d", sipPort)); code != 401 {
		t.Fatalf("REGISTER answered %d", code)
	}

	var body string
	if !peers.PollEvery(20*time.Second, 50*time.Millisecond, func() bool {
		body = d.scrapeText()
		return strings.Contains(body, `nkbridge_esl_up{backend="freeswitch"} 1`) && strings.Contains(body, `nkbridge_calls_ended_total{`) &&
			strings.Contains(body, `nkbridge_calls{state="ringing"} 1`)
	}) {
		t.Fatalf("ESL never up or the call never ended:\n%s", body)
	}
	fams := metricFamilies(t, body)
	for _, problem := range checkMetricNames(exprs, fams) {
		t.Error(problem)
	}

	// A real Prometheus scraping this daemon evaluates the alert rules
	// without errors and every dashboard query to a result.
	t.Run("prometheus", func(t *testing.T) {
		prom := startPrometheus(t, d.ops)
		vars := strings.NewReplacer("$__rate_interval", "15s", "$__interval", "1s", "$job", "nkbridge", "$instance", ".*")
		for _, e := range dashboardExprs(t) {
			q := vars.Replace(e.Expr)
			if n := prom.query(q); n == 0 {
				t.Errorf("%s: no result for %s", e.Where, q)
			}
		}
		prom.rulesHealthy()
	})
}

// prometheus is a Prometheus server (Debian package prometheus) scraping one
// nkbridge every second as job "nkbridge", with the alert rules loaded.
type prometheus struct {
	t    *testing.T
	base string
}

func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin := peers.Need(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: nkbridge\n    static_configs: [{targets: [%q]}]\n", rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", peers.FreeTCPPort(t))
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs syncBuf
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	p := &prometheus{t: t, base: "http://" + addr}
	// Ready, and at least 5 scrapes of the target (rates need two).
	if !peers.PollEvery(30*time.Second, 200*time.Millisecond, func() bool { return p.tryQuery(`count_over_time(up{job="nkbridge"}[1m]) >= 5`) != 0 }) {
		t.Fatalf("Prometheus did not scrape %s 5 times; its log:\n%s", target, logs.String())
	}
	return p
}

// tryQuery runs an instant query and returns the number of series (0 on
// any error, e.g. not ready yet).
func (p *prometheus) tryQuery(q string) int {
	n, _ := p.instant(q)
	return n
}

func (p *prometheus) query(q string) int {
	p.t.Helper()
	n, err := p.instant(q)
	if err != nil {
		p.t.Errorf("query %s: %v", q, err)
	}
	return n
}

func (p *prometheus) instant(q string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct {
			ResultType string
			Result     json.RawMessage
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return 1, nil // a scalar
	}
	var v []json.RawMessage
	_ = json.Unmarshal(r.Data.Result, &v)
	return len(v), nil
}

// rulesHealthy waits until every alert rule was evaluated and checks that
// none failed (an evaluation error, e.g. many-to-many matching, shows only
// at run time).
func (p *prometheus) rulesHealthy() {
	p.t.Helper()
	n, pending := 0, 0
	if !peers.PollEvery(15*time.Second, 200*time.Millisecond, func() bool {
		resp, err := http.Get(p.base + "/api/v1/rules")
		if err != nil {
			p.t.Fatal(err)
		}
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
						LastEvaluation          time.Time
					}
				}
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			p.t.Fatal(err)
		}
		bad := []string{}
		n, pending = 0, 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				n++
				switch {
				case rule.LastEvaluation.IsZero() || rule.Health == "unknown":
					pending++
				case rule.Health != "ok":
					bad = append(bad, rule.Name+": "+rule.LastError)
				}
			}
		}
		if len(bad) > 0 {
			p.t.Fatalf("alert rules failing in Prometheus: %v", bad)
		}
		return n > 0 && pending == 0
	}) {
		p.t.Fatalf("%d of %d rules never evaluated", pending, n)
	}
}

// scrapeText GETs /metrics as text.
func (d *daemon) scrapeText() string {
	d.t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + d.ops + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// sipRegister sends one REGISTER without credentials over UDP and returns
// the final response's status code.
func sipRegister(t *testing.T, addr string) int {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	msg := strings.ReplaceAll(fmt.Sprintf("REGISTER sip:127.0.0.1 SIP/2.0\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-nkbdash-%d;rport\n"+
		"Max-Forwards: 70\n"+
		"From: <sip:alice@127.0.0.1>;tag=nkbdash\n"+
		"To: <sip:alice@127.0.0.1>\n"+
		"Call-ID: nkbdash-%d@127.0.0.1\n"+
		"CSeq: 1 REGISTER\n"+
		"Contact: <sip:alice@%s>\n"+
		"Expires: 60\n"+
		"Content-Length: 0\n\n", local, time.Now().UnixNano(), time.Now().UnixNano(), local), "\n", "\r\n")
	buf := make([]byte, 4096)
	for attempt := 0; attempt < 5; attempt++ { // UDP: retransmit like a UA would
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			var code int
			if _, err := fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &code); err == nil && code >= 200 {
				return code
			}
		}
	}
	t.Fatal("no final response to REGISTER")
	return 0
}

// promtool (Debian package prometheus) accepts the alert rules, their unit
// tests pass, and every dashboard query parses as PromQL (checked as a
// recording rule with the Grafana variables filled in).
func TestAlertRulesPromtool(t *testing.T) {
	promtool := peers.Need(t, "promtool")
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertsTest}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*", "$instance", ".*")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range dashboardExprs(t) {
		rules = append(rules, rule{Record: fmt.Sprintf("nkbridge:dashboard_query_%d", i), Expr: vars.Replace(e.Expr)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("dashboard queries do not parse: %v\n%s\n%s", err, out, b)
	}
}
