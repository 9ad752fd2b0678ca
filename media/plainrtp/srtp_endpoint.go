package plainrtp

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// lockedContext is a pion SRTP context (not safe for concurrent use) with its lock.
type lockedContext struct {
	mu  sync.Mutex
	ctx *srtp.Context
}

// srtpState is an endpoint's SRTP keys and contexts (nil on the endpoint: plain RTP).
type srtpState struct {
	tx, rx Crypto
	txCtx  *lockedContext // RTP and RTCP we send
	rxRTP  *lockedContext // RTP the peer sends
	rxRTCP *lockedContext // RTCP the peer sends
}

func newContext(c Crypto) (*lockedContext, error) {
	p, key, salt, err := c.Profile()
	if err != nil {
		return nil, err
	}
	var opts []srtp.ContextOption
	if len(c.MKI) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(c.MKI))
	}
	ctx, err := srtp.CreateContext(key, salt, p, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCrypto, err)
	}
	return &lockedContext{ctx: ctx}, nil
}

func sameCrypto(a, b Crypto) bool {
	return a.Suite == b.Suite && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.MKI, b.MKI)
}

// SetSRTP makes the endpoint protect what it sends with tx and check and decrypt what it
// receives with rx (SDES keys from SRTPKeys); both nil turns SRTP off. Keys that did not
// change keep their contexts (and rollover counters), so a re-INVITE that repeats them changes
// nothing; a new key starts a new context (rekeying). A packet that fails authentication or
// replay checks is dropped like garbage.
func (e *Endpoint) SetSRTP(tx, rx *Crypto) error {
	if tx == nil && rx == nil {
		e.mu.Lock()
		e.srtp = nil
		e.mu.Unlock()
		return nil
	}
	if tx == nil || rx == nil {
		return fmt.Errorf("%w: SRTP needs keys in both directions", ErrBadCrypto)
	}
	e.mu.Lock()
	old := e.srtp
	e.mu.Unlock()
	st := &srtpState{tx: *tx, rx: *rx}
	var err error
	if old != nil && sameCrypto(old.tx, *tx) {
		st.txCtx = old.txCtx
	} else if st.txCtx, err = newContext(*tx); err != nil {
		return err
	}
	if old != nil && sameCrypto(old.rx, *rx) {
		st.rxRTP, st.rxRTCP = old.rxRTP, old.rxRTCP
	} else {
		if st.rxRTP, err = newContext(*rx); err != nil {
			return err
		}
		if st.rxRTCP, err = newContext(*rx); err != nil {
			return err
		}
	}
	e.mu.Lock()
	e.srtp = st
	e.mu.Unlock()
	return nil
}

// SRTP reports whether the endpoint protects its media with SRTP.
func (e *Endpoint) SRTP() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srtp != nil
}

func (e *Endpoint) srtpNow() *srtpState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srtp
}

// unprotectRTP decrypts and authenticates an SRTP packet into dst.
func (st *srtpState) unprotectRTP(dst, b []byte, h *rtp.Header) ([]byte, error) {
	st.rxRTP.mu.Lock()
	defer st.rxRTP.mu.Unlock()
	return st.rxRTP.ctx.DecryptRTP(dst, b, h)
}

// unprotectRTCP decrypts and authenticates an SRTCP packet into dst.
func (st *srtpState) unprotectRTCP(dst, b []byte) ([]byte, error) {
	st.rxRTCP.mu.Lock()
	defer st.rxRTCP.mu.Unlock()
	return st.rxRTCP.ctx.DecryptRTCP(dst, b, nil)
}

func (st *srtpState) protectRTP(dst, b []byte, h *rtp.Header) ([]byte, error) {
	st.txCtx.mu.Lock()
	defer st.txCtx.mu.Unlock()
	return st.txCtx.ctx.EncryptRTP(dst, b, h)
}

func (st *srtpState) protectRTCP(dst, b []byte) ([]byte, error) {
	st.txCtx.mu.Lock()
	defer st.txCtx.mu.Unlock()
	return st.txCtx.ctx.EncryptRTCP(dst, b, nil)
}

// Keys returns the SDES keys in use (nil, nil: plain RTP).
func (e *Endpoint) Keys() (tx, rx *Crypto) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srtp == nil {
		return nil, nil
	}
	t, r := e.srtp.tx, e.srtp.rx
	return &t, &r
}
