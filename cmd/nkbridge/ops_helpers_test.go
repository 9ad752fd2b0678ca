package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape GETs /metrics of a daemon and returns every sample as
// `name{labels}` → value.
func (d *daemon) scrape() map[string]float64 {
	d.t.Helper()
	resp, err := http.Get("http://" + d.ops + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		d.t.Fatalf("/metrics: %s", resp.Status)
	}
	return parseMetrics(d.t, resp.Body)
}

func parseMetrics(t testing.TB, r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
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

// checkDelta fails unless after[k]-before[k] == want for every k.
func checkDelta(t testing.TB, before, after map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		if got := after[k] - before[k]; got != w {
			t.Errorf("%s moved by %v (%v -> %v), want %v", k, got, before[k], after[k], w)
		}
	}
}

// health GETs /health and returns the status code and the body's status.
func (d *daemon) health() (int, string) {
	d.t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + d.ops + "/health")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&b)
	return resp.StatusCode, b.Status
}
