package cdr

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/nkbridge/nkbridge/internal/egress"
)

// Headers of a webhook request.
const (
	HeaderSignature   = "X-Nkbridge-Signature" // v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
	HeaderTimestamp   = "X-Nkbridge-Timestamp" // Unix seconds of this attempt
	HeaderEvent       = "X-Nkbridge-Event"     // the record's event
	HeaderIdempotency = "Idempotency-Key"      // the record's id, the same on every attempt
)

// WebhookOptions configures one webhook endpoint.
type WebhookOptions struct {
	URL    string
	Secret string   // HMAC-SHA256 key; required
	Events []string // events sent (others are skipped); empty: only "cdr"
	// AllowedHosts are the hosts (names or IP addresses, as in the URL) requests may go to;
	// an address resolving to a loopback, link-local or unspecified address is refused
	// unless such an address (or "localhost") is listed itself. http:// is allowed only to
	// a listed loopback host.
	AllowedHosts []string
	RootCAs      *x509.CertPool // TLS roots (nil: the system's); certificates are always verified
	Timeout      time.Duration  // per attempt (default 10s)
	RetryMin     time.Duration  // first back-off (default 1s), doubled up to RetryMax
	RetryMax     time.Duration  // default 5m
	// DeadLetterAttempts moves a record the endpoint refused this many times in a row with a
	// status that says it never will (4xx but 408, 425, 429) to the dead-letter file, so
	// that it stops holding the endpoint's queue (cdr.webhook_dead_letter_attempts); 0:
	// never. An endpoint that is down, times out or answers 5xx never dead-letters by this.
	DeadLetterAttempts int
	// DeadLetterAge moves a record still not taken this long after it was made to the
	// dead-letter file, whatever the failures (cdr.webhook_dead_letter_age); 0: never.
	DeadLetterAge time.Duration
}

// DeadLetterObserver is told about dead-lettered records, for metrics (an Observer may
// implement it).
type DeadLetterObserver interface {
	// DeadLettered: a record endpoint would not take was moved to its dead-letter file.
	DeadLettered(endpoint string)
}

// statusError is a non-2xx answer of an endpoint.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }

// refusal reports whether the status says the endpoint will never take the record.
func (e *statusError) refusal() bool {
	return e.code >= 400 && e.code <= 499 && e.code != 408 && e.code != 425 && e.code != 429
}

// SignBody returns the signature header value for body sent at timestamp ts (Unix seconds).
func SignBody(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook request's signature and that its timestamp is within
// tolerance of now (a receiver's side of the scheme, for tests and Go receivers).
func VerifySignature(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return errors.New("cdr: bad or missing " + HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return errors.New("cdr: timestamp out of tolerance")
	}
	want := SignBody(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(h.Get(HeaderSignature))) {
		return errors.New("cdr: bad signature")
	}
	return nil
}

type webhook struct {
	o      WebhookOptions
	name   string // spool consumer
	label  string // metrics: the URL's host
	events map[string]bool
	cl     *http.Client
	spool  *Spool
	obs    Observer
	log    *slog.Logger
}

// CheckWebhookURL checks raw against the allow-list (the errors name the settings).
func CheckWebhookURL(raw string, allowed []string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("cdr.webhook_urls: bad URL %q", raw)
	}
	host := u.Hostname()
	if !slices.Contains(allowed, host) {
		if len(allowed) == 0 {
			return nil, fmt.Errorf("cdr.webhook_urls: host %q is not allowed: cdr.webhook_allowed_hosts is empty", host)
		}
		return nil, fmt.Errorf("cdr.webhook_urls: host %q is not in cdr.webhook_allowed_hosts", host)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !egress.LoopbackHost(host) {
			return nil, fmt.Errorf("cdr.webhook_urls: %q: http:// only to a loopback host, use https", raw)
		}
	default:
		return nil, fmt.Errorf("cdr.webhook_urls: %q: scheme must be https", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("cdr.webhook_urls: %q: no credentials in the URL (the body is signed with cdr.webhook_secret)", raw)
	}
	return u, nil
}

// guardedAddr refuses a connection to an address of this machine or its link that the
// allow-list does not name (egress.AddrAllowed).
func guardedAddr(ip net.IP, allowed []string) error {
	if egress.AddrAllowed(ip, allowed) {
		return nil
	}
	return fmt.Errorf("cdr: connection to %s refused: not listed in cdr.webhook_allowed_hosts", ip)
}

func newWebhook(o WebhookOptions, sp *Spool, obs Observer, log *slog.Logger) (*webhook, error) {
	u, err := CheckWebhookURL(o.URL, o.AllowedHosts)
	if err != nil {
		return nil, err
	}
	if o.Secret == "" {
		return nil, errors.New("cdr.webhook_secret: required with cdr.webhook_urls (the body is signed with it)")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(o.RetryMin, 5*time.Minute)
	}
	evs := map[string]bool{}
	for _, e := range o.Events {
		evs[e] = true
	}
	if len(evs) == 0 {
		evs[EventCDR] = true
	}
	sum := sha256.Sum256([]byte(o.URL))
	allowed := o.AllowedHosts
	d := &net.Dialer{Timeout: o.Timeout, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host)
		if ip == nil {
			return fmt.Errorf("cdr: bad address %q", address)
		}
		return guardedAddr(ip, allowed)
	}}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: o.Timeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	cl := &http.Client{Transport: tr, Timeout: o.Timeout,
		// a redirect could lead anywhere: not followed (the attempt fails)
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &webhook{o: o, name: "hook-" + hex.EncodeToString(sum[:8]), label: u.Host, events: evs,
		cl: cl, spool: sp, obs: obs, log: log.With("webhook", u.Scheme+"://"+u.Host+u.Path)}, nil // no query: it may hold a token
}

// run delivers the spool's records in order until ctx ends: each until the endpoint takes it
// (2xx), retrying with exponential back-off (with jitter), then acknowledges it.
func (h *webhook) run(ctx context.Context) {
	cur, err := h.spool.Cursor(h.name)
	if err != nil {
		h.log.Error("cdr: webhook not started", "err", err)
		return
	}
	defer h.cl.CloseIdleConnections()
	// records this endpoint does not take are acknowledged together, when the cursor has
	// caught up or before the next delivery (one ack file write, not one per record)
	var skipped uint64
	flush := func() {
		if skipped != 0 {
			if err := cur.Ack(skipped); err != nil {
				h.log.Error("cdr: spool ack failed", "err", err)
			}
			skipped = 0
		}
	}
	defer flush()
	for ctx.Err() == nil {
		if !cur.Available() {
			flush()
		}
		seq, body, err := cur.Next(ctx)
		if err != nil {
			return
		}
		var head struct {
			ID    string    `json:"id"`
			Event string    `json:"event"`
			Time  time.Time `json:"time"`
		}
		if json.Unmarshal(body, &head) != nil || !h.events[head.Event] {
			skipped = seq
			continue
		}
		if !h.deliver(ctx, head.ID, head.Event, head.Time, body) {
			return
		}
		skipped = 0
		if err := cur.Ack(seq); err != nil {
			h.log.Error("cdr: spool ack failed", "err", err)
		}
	}
}

// deliver posts body until it is taken or dead-lettered (true) or ctx ends (false).
func (h *webhook) deliver(ctx context.Context, id, event string, made time.Time, body []byte) bool {
	backoff := h.o.RetryMin
	refused := 0
	for attempt := 1; ; attempt++ {
		err := h.post(ctx, id, event, body)
		if err == nil {
			if h.obs != nil {
				h.obs.Delivered(h.label)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if h.obs != nil {
			h.obs.Failed(h.label)
		}
		var se *statusError
		if errors.As(err, &se) && se.refusal() {
			refused++
		} else {
			refused = 0
		}
		reason := ""
		switch {
		case h.o.DeadLetterAttempts > 0 && refused >= h.o.DeadLetterAttempts:
			reason = fmt.Sprintf("refused %d times in a row, last %v (cdr.webhook_dead_letter_attempts)", refused, err)
		case h.o.DeadLetterAge > 0 && !made.IsZero() && time.Since(made) >= h.o.DeadLetterAge:
			reason = fmt.Sprintf("not taken %s after it was made, last %v (cdr.webhook_dead_letter_age)", h.o.DeadLetterAge, err)
		}
		if reason != "" {
			derr := h.deadLetter(id, event, attempt, reason, body)
			if derr == nil {
				h.log.Warn("cdr: record moved to the dead-letter file", "id", id, "event", event, "reason", reason, "file", h.deadPath())
				if dl, ok := h.obs.(DeadLetterObserver); ok {
					dl.DeadLettered(h.label)
				}
				return true
			}
			h.log.Error("cdr: dead-letter write failed; the record stays queued", "id", id, "err", derr)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		h.log.Warn("cdr: webhook delivery failed, will retry", "err", err, "id", id, "attempt", attempt, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(backoff*2, h.o.RetryMax)
	}
}

func (h *webhook) post(ctx context.Context, id, event string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "nkbridge-cdr")
	req.Header.Set(HeaderIdempotency, id)
	req.Header.Set(HeaderEvent, event)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, SignBody(h.o.Secret, ts, body))
	resp, err := h.cl.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &statusError{code: resp.StatusCode}
	}
	return nil
}

// deadPath is the endpoint's dead-letter file: one JSON line per record it would not take.
func (h *webhook) deadPath() string {
	return filepath.Join(h.spool.dir, "dead-letter-"+h.name+".jsonl")
}

// DeadLetter is one line of a dead-letter file.
type DeadLetter struct {
	Time     time.Time       `json:"dead_letter_time"`
	Endpoint string          `json:"endpoint"` // the URL without its query
	ID       string          `json:"id"`       // the record's idempotency key
	Event    string          `json:"event"`
	Attempts int             `json:"attempts"`
	Reason   string          `json:"reason"`
	Record   json.RawMessage `json:"record"` // the body that was posted
}

// deadLetter appends the record to the dead-letter file (fsynced with the spool's Fsync).
func (h *webhook) deadLetter(id, event string, attempts int, reason string, body []byte) error {
	ep := h.o.URL
	if u, err := url.Parse(h.o.URL); err == nil {
		u.RawQuery, u.Fragment = "", ""
		ep = u.String()
	}
	line, err := json.Marshal(DeadLetter{Time: time.Now().UTC(), Endpoint: ep, ID: id, Event: event, Attempts: attempts,
		Reason: reason, Record: json.RawMessage(body)})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(h.deadPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	if h.spool.opts.Fsync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
