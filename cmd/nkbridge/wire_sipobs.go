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
}

var (
	_ sip.Observer             = (*sipObserver)(nil)
	_ sip.RegistrationObserver = (*sipObserver)(nil)
)

func (o *sipObserver) bind(to sip.Observer) {
	o.to.Store(&to)
	ro, ok := to.(sip.RegistrationObserver)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.regTo = ro
	for name, state := range o.states {
		ro.RegistrationState(name, state)
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
