// Package registrar keeps SIP registrations (RFC 3261 §10): bindings of an address-of-record to
// contact URIs with expiry, refresh, removal, background expiry, lookup and change notifications.
package registrar

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nkbridge/nkbridge/internal/defaults"
)

// Errors returned by Update. IntervalTooBrief carries the minimum for Min-Expires.
var (
	ErrWildcard     = errors.New("registrar: '*' needs Expires: 0 and no other contact")
	ErrOutOfOrder   = errors.New("registrar: CSeq not higher than the stored one for this Call-ID")
	ErrTooManyBinds = errors.New("registrar: too many contacts for this address-of-record")
	// ErrSourceBinds means the REGISTER's source address already holds MaxPerSource bindings.
	ErrSourceBinds = errors.New("registrar: too many bindings from this source address")
)

// IntervalTooBriefError means a requested expiry was below the minimum (423).
type IntervalTooBriefError struct{ Min time.Duration }

func (e *IntervalTooBriefError) Error() string { return "registrar: interval too brief" }

// Config configures a Registrar.
type Config struct {
	MinExpires     time.Duration // default 60s; shorter non-zero requests get 423
	MaxExpires     time.Duration // default 3600s; longer requests are clamped
	DefaultExpires time.Duration // default 3600s, used when the request names none
	MaxContacts    int           // per address-of-record, default 10
	MaxAORs        int           // total, default 100000
	MaxPerSource   int           // bindings registered from one source IP (all AORs), default sip.max_registrations_per_source
	Now            func() time.Time
}

// Binding is one registered contact.
type Binding struct {
	AOR        string
	Contact    string // the contact URI, as registered
	Expires    time.Time
	Q          float64
	CallID     string
	CSeq       uint32
	Source     string // ip:port the REGISTER came from
	Transport  string // udp, tcp, tls, ws, wss
	InstanceID string
	UserAgent  string
}

// ChangeKind says what happened to a binding.
type ChangeKind int

// Kinds of change.
const (
	Added ChangeKind = iota + 1
	Refreshed
	Removed
	Expired
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Refreshed:
		return "refreshed"
	case Removed:
		return "removed"
	case Expired:
		return "expired"
	}
	return "unknown"
}

// Change is a registration change notification.
type Change struct {
	Kind    ChangeKind
	Binding Binding
}

// ContactUpdate is one Contact of a REGISTER request.
type ContactUpdate struct {
	Contact string
	// Expires in seconds from the contact's expires param or the Expires header; -1 when
	// neither was given.
	Expires    int
	Q          float64
	InstanceID string
}

// Update is a REGISTER request reduced to what the registrar needs.
type Update struct {
	AOR       string
	Wildcard  bool // Contact: *
	Expires   int  // Expires header, -1 when absent
	Contacts  []ContactUpdate
	CallID    string
	CSeq      uint32
	Source    string
	Transport string
	UserAgent string
}

// Registrar stores bindings. It is safe for concurrent use.
type Registrar struct {
	cfg   Config
	mu    sync.Mutex
	aors  map[string]map[string]*Binding // aor -> contact -> binding
	bySrc map[netip.Addr]int             // live bindings per source IP
	subs  map[int]func(Change)
	next  int
}

// New returns a Registrar with defaults filled in.
func New(cfg Config) *Registrar {
	if cfg.MinExpires <= 0 {
		cfg.MinExpires = defaults.Duration("sip.min_expires")
	}
	if cfg.MaxExpires <= 0 {
		cfg.MaxExpires = defaults.Duration("sip.max_expires")
	}
	if cfg.MaxExpires < cfg.MinExpires {
		cfg.MaxExpires = cfg.MinExpires
	}
	if cfg.DefaultExpires <= 0 {
		cfg.DefaultExpires = time.Hour
	}
	cfg.DefaultExpires = min(max(cfg.DefaultExpires, cfg.MinExpires), cfg.MaxExpires)
	if cfg.MaxContacts <= 0 {
		cfg.MaxContacts = 10
	}
	if cfg.MaxAORs <= 0 {
		cfg.MaxAORs = 100000
	}
	if cfg.MaxPerSource <= 0 {
		cfg.MaxPerSource = defaults.Int("sip.max_registrations_per_source")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registrar{cfg: cfg, aors: make(map[string]map[string]*Binding), bySrc: make(map[netip.Addr]int),
		subs: make(map[int]func(Change))}
}

// NormalizeAOR maps an address-of-record to its key: the lower-cased user part.
func NormalizeAOR(aor string) string {
	aor = strings.TrimPrefix(strings.TrimPrefix(aor, "sips:"), "sip:")
	if u, _, ok := strings.Cut(aor, "@"); ok {
		aor = u
	}
	return strings.ToLower(aor)
}

// Subscribe registers fn for change notifications; fn is called without locks held, in the
// goroutine that made the change. The returned function unsubscribes.
func (r *Registrar) Subscribe(fn func(Change)) func() {
	r.mu.Lock()
	id := r.next
	r.next++
	r.subs[id] = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}

func (r *Registrar) notify(ch []Change) {
	if len(ch) == 0 {
		return
	}
	r.mu.Lock()
	subs := make([]func(Change), 0, len(r.subs))
	for _, f := range r.subs {
		subs = append(subs, f)
	}
	r.mu.Unlock()
	for _, c := range ch {
		for _, f := range subs {
			f(c)
		}
	}
}

// Apply processes a REGISTER and returns the bindings now current for the AOR.
func (r *Registrar) Apply(u Update) ([]Binding, error) {
	aor := NormalizeAOR(u.AOR)
	now := r.cfg.Now()
	if u.Wildcard {
		if u.Expires != 0 || len(u.Contacts) > 0 {
			return nil, ErrWildcard
		}
		r.mu.Lock()
		var changes []Change
		for _, b := range r.aors[aor] {
			if b.CallID == u.CallID && u.CSeq <= b.CSeq {
				r.mu.Unlock()
				return nil, ErrOutOfOrder
			}
		}
		for _, b := range r.aors[aor] {
			changes = append(changes, Change{Kind: Removed, Binding: *b})
			r.uncountLocked(b)
		}
		delete(r.aors, aor)
		r.mu.Unlock()
		r.notify(changes)
		return nil, nil
	}
	// Validate every contact first so a 423 leaves the state untouched.
	exp := make([]time.Duration, len(u.Contacts))
	for i, c := range u.Contacts {
		e := c.Expires
		if e < 0 {
			e = u.Expires
		}
		var d time.Duration
		switch {
		case e < 0:
			d = r.cfg.DefaultExpires
		case e == 0:
			d = 0
		default:
			d = time.Duration(e) * time.Second
			if d < r.cfg.MinExpires {
				return nil, &IntervalTooBriefError{Min: r.cfg.MinExpires}
			}
			d = min(d, r.cfg.MaxExpires)
		}
		exp[i] = d
	}
	r.mu.Lock()
	set := r.aors[aor]
	for _, c := range u.Contacts {
		if b, ok := set[c.Contact]; ok && b.CallID == u.CallID && u.CSeq <= b.CSeq {
			r.mu.Unlock()
			return nil, ErrOutOfOrder
		}
	}
	if set == nil && len(u.Contacts) > 0 {
		if len(r.aors) >= r.cfg.MaxAORs {
			r.mu.Unlock()
			return nil, ErrTooManyBinds
		}
		set = make(map[string]*Binding)
		r.aors[aor] = set
	}
	var changes []Change
	for i, c := range u.Contacts {
		old, exists := set[c.Contact]
		if exp[i] == 0 {
			if exists {
				delete(set, c.Contact)
				changes = append(changes, Change{Kind: Removed, Binding: *old})
				r.uncountLocked(old)
			}
			continue
		}
		if !exists && len(set) >= r.cfg.MaxContacts {
			r.mu.Unlock()
			r.notify(changes)
			return nil, ErrTooManyBinds
		}
		if ip := sourceIP(u.Source); ip.IsValid() && (!exists || sourceIP(old.Source) != ip) && r.bySrc[ip] >= r.cfg.MaxPerSource {
			if len(set) == 0 {
				delete(r.aors, aor)
			}
			r.mu.Unlock()
			r.notify(changes)
			return nil, ErrSourceBinds
		}
		b := &Binding{AOR: aor, Contact: c.Contact, Expires: now.Add(exp[i]), Q: c.Q, CallID: u.CallID,
			CSeq: u.CSeq, Source: u.Source, Transport: u.Transport, InstanceID: c.InstanceID, UserAgent: u.UserAgent}
		if exists {
			r.uncountLocked(old)
		}
		set[c.Contact] = b
		r.countLocked(b)
		kind := Added
		if exists {
			kind = Refreshed
		}
		changes = append(changes, Change{Kind: kind, Binding: *b})
	}
	if len(set) == 0 {
		delete(r.aors, aor)
	}
	out := r.listLocked(aor, now)
	r.mu.Unlock()
	r.notify(changes)
	return out, nil
}

func (r *Registrar) listLocked(aor string, now time.Time) []Binding {
	set := r.aors[aor]
	out := make([]Binding, 0, len(set))
	for _, b := range set {
		if now.Before(b.Expires) {
			out = append(out, *b)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Q != out[j].Q {
			return out[i].Q > out[j].Q
		}
		return out[i].Contact < out[j].Contact
	})
	return out
}

// Lookup returns the live bindings of an address-of-record (a user name or a SIP URI),
// highest q first.
func (r *Registrar) Lookup(aor string) []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked(NormalizeAOR(aor), r.cfg.Now())
}

// All returns every live binding, by address-of-record, then as Lookup orders them.
func (r *Registrar) All() []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	aors := make([]string, 0, len(r.aors))
	for aor := range r.aors {
		aors = append(aors, aor)
	}
	sort.Strings(aors)
	var out []Binding
	for _, aor := range aors {
		out = append(out, r.listLocked(aor, now)...)
	}
	return out
}

// Count returns the number of live bindings in total.
func (r *Registrar) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.aors {
		n += len(s)
	}
	return n
}

// Sweep removes expired bindings and notifies subscribers.
func (r *Registrar) Sweep() {
	now := r.cfg.Now()
	var changes []Change
	r.mu.Lock()
	for aor, set := range r.aors {
		for k, b := range set {
			if !now.Before(b.Expires) {
				delete(set, k)
				changes = append(changes, Change{Kind: Expired, Binding: *b})
				r.uncountLocked(b)
			}
		}
		if len(set) == 0 {
			delete(r.aors, aor)
		}
	}
	r.mu.Unlock()
	r.notify(changes)
}

// Run sweeps every interval until ctx ends.
func (r *Registrar) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sweep()
		}
	}
}

// sourceIP is the address of a binding's "ip:port" source (invalid when unparsable).
func sourceIP(source string) netip.Addr {
	if ap, err := netip.ParseAddrPort(source); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(source)
	return a.Unmap()
}

func (r *Registrar) countLocked(b *Binding) {
	if ip := sourceIP(b.Source); ip.IsValid() {
		r.bySrc[ip]++
	}
}

func (r *Registrar) uncountLocked(b *Binding) {
	ip := sourceIP(b.Source)
	if !ip.IsValid() {
		return
	}
	if r.bySrc[ip]--; r.bySrc[ip] <= 0 {
		delete(r.bySrc, ip)
	}
}

// FromSource returns the number of bindings registered from the source IP ip.
func (r *Registrar) FromSource(ip netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bySrc[ip.Unmap()]
}
