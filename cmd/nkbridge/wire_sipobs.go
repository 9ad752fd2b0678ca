package main

import (
	"sync"
	"sync/atomic"

	"github.com/nkbridge/nkbridge/sip"
)

// sipObserver is the SIP server's Observer. The server is built before the
// daemon hands out its metrics (hooks.Metrics), so the target is bound late;
// until then (and without metrics) reports are dropped.
type sipObserver struct {
	to atomic.Pointer[sip.Observer]

	// outbound registrations' last states, replayed on bind
	mu     sync.Mutex
	states map[string]string
	regTo  sip.RegistrationObserver
	// trunk hosts' last health, replayed on bind
	hosts   map[[2]string]bool
	trunkTo sip.TrunkObserver
}

var (
	_ sip.Observer             = (*sipObserver)(nil)
	_ sip.RegistrationObserver = (*sipObserver)(nil)
	_ sip.TrunkObserver        = (*sipObserver)(nil)
)

func (o *sipObserver) bind(to sip.Observer) {
	o.to.Store(&to)
	o.mu.Lock()
	defer o.mu.Unlock()
	if ro, ok := to.(sip.RegistrationObserver); ok {
		o.regTo = ro
		for name, state := range o.states {
			ro.RegistrationState(name, state)
		}
	}
	if tobs, ok := to.(sip.TrunkObserver); ok {
		o.trunkTo = tobs
		for k, up := range o.hosts {
			tobs.TrunkHostState(k[0], k[1], up)
		}
	}
}

func (o *sipObserver) TrunkHostState(trunk, host string, up bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hosts == nil {
		o.hosts = map[[2]string]bool{}
	}
	o.hosts[[2]string{trunk, host}] = up
	if o.trunkTo != nil {
		o.trunkTo.TrunkHostState(trunk, host, up)
	}
}

func (o *sipObserver) RegistrationState(name, state string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.states == nil {
		o.states = map[string]string{}
	}
	o.states[name] = state
	if o.regTo != nil {
		o.regTo.RegistrationState(name, state)
	}
}

func (o *sipObserver) Request(method, dir string) {
	if p := o.to.Load(); p != nil {
		(*p).Request(method, dir)
	}
}

func (o *sipObserver) Response(method string, code int, dir string) {
	if p := o.to.Load(); p != nil {
		(*p).Response(method, code, dir)
	}
}

func (o *sipObserver) Register(outcome string) {
	if p := o.to.Load(); p != nil {
		(*p).Register(outcome)
	}
}
