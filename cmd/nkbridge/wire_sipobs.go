package main

import (
	"sync/atomic"

	"github.com/nkbridge/nkbridge/sip"
)

// sipObserver is the SIP server's Observer. The server is built before the
// daemon hands out its metrics (hooks.Metrics), so the target is bound late;
// until then (and without metrics) reports are dropped.
type sipObserver struct {
	to atomic.Pointer[sip.Observer]
}

var _ sip.Observer = (*sipObserver)(nil)

func (o *sipObserver) bind(to sip.Observer) { o.to.Store(&to) }

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
