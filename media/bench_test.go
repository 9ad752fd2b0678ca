package media

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/nkbridge/nkbridge/internal/audiotest"
	"github.com/nkbridge/nkbridge/internal/peers"
	"github.com/nkbridge/nkbridge/media/codec"
	"github.com/nkbridge/nkbridge/media/plainrtp"
)

// benchCall is one RTP⇄RTP proxy call with a sending and a receiving loopback peer.
type benchCall struct {
	s        *Session
	tx, rx   *net.UDPConn
	to       *net.UDPAddr
	received atomic.Int64
	lat      []time.Duration
	mu       sync.Mutex
	done     chan struct{}
	ack      chan struct{}
	release  func()
}

func newBenchCall(b *testing.B, e *Engine) *benchCall {
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(b, err)
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	must(b, err)
	ctx := context.Background()
	caller := plainrtp.Offer(loopback, tx.LocalAddr().(*net.UDPAddr).Port, []plainrtp.Codec{plainrtp.PCMU}, 1)
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindRTP, SDP: caller.String()}, KindRTP, SessionOptions{})
	must(b, err)
	off, err := plainrtp.ParseSDP([]byte(farOffer.SDP))
	must(b, err)
	ans, err := plainrtp.Answer(off, loopback, rx.LocalAddr().(*net.UDPAddr).Port, []plainrtp.Codec{plainrtp.PCMU}, nil)
	must(b, err)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	must(b, err)
	ca, err := plainrtp.ParseSDP([]byte(callerAns.SDP))
	must(b, err)
	c := &benchCall{s: s, tx: tx, rx: rx, to: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ca.Port}, done: make(chan struct{}), ack: make(chan struct{}, 1)}
	go c.read()
	return c
}

// read collects one-way latencies of the packets arriving at rx.
func (c *benchCall) read() {
	defer close(c.done)
	buf := make([]byte, 1500)
	var p rtp.Packet
	for {
		n, err := c.rx.Read(buf)
		if err != nil {
			return
		}
		if p.Unmarshal(buf[:n]) != nil || len(p.Payload) < 8 {
			continue
		}
		sent := int64(binary.BigEndian.Uint64(p.Payload))
		c.mu.Lock()
		c.lat = append(c.lat, time.Duration(time.Now().UnixNano()-sent))
		c.mu.Unlock()
		c.received.Add(1)
		select {
		case c.ack <- struct{}{}:
		default:
		}
	}
}

func (c *benchCall) close() {
	if c.s != nil {
		c.s.Close()
	}
	if c.release != nil {
		c.release()
	}
	c.tx.Close()
	c.rx.Close()
	<-c.done
}

// run sends n packets with at most window in flight (lost packets are waited for at most
// 50 ms each), returning how many were sent.
func (c *benchCall) run(n, window int) {
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 1}, Payload: make([]byte, 160)}
	buf := make([]byte, 1500)
	for i := 0; i < n; i++ {
		if int64(i)-c.received.Load() >= int64(window) {
			select {
			case <-c.ack:
			case <-time.After(50 * time.Millisecond):
			}
		}
		pkt.SequenceNumber++
		pkt.Timestamp += 160
		binary.BigEndian.PutUint64(pkt.Payload, uint64(time.Now().UnixNano()))
		m, _ := pkt.MarshalTo(buf)
		_, _ = c.tx.WriteToUDP(buf[:m], c.to)
	}
	deadline := time.Now().Add(time.Second)
	for c.received.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // benchmark: poll interval (1 ms) for the echoes
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRTPPassthrough relays PCMU between two plain RTP peers through a proxy session
// (calls parallel calls), reporting relayed packets/s and one-way latency through the
// engine (compare BenchmarkUDPDirect for the loopback baseline).
func BenchmarkRTPPassthrough(b *testing.B) {
	for _, calls := range []int{1, 20} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			e := newTestEngine(b, func(c *Config) { c.Logger = nil; c.RTPPortMax = c.RTPPortMin + 2000; c.Quarantine = -1 })
			cs := make([]*benchCall, calls)
			for i := range cs {
				cs[i] = newBenchCall(b, e)
			}
			benchRelay(b, cs)
		})
	}
}

// benchRelay drives the calls at full speed (window of 16 per call) and reports relayed
// packets/s, loss and one-way latency; it closes the calls.
func benchRelay(b *testing.B, cs []*benchCall) {
	per := max(b.N/len(cs), 1)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(per, 16) }()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	var got int64
	var lat []time.Duration
	for _, c := range cs {
		got += c.received.Load()
		c.mu.Lock()
		lat = append(lat, c.lat...)
		c.mu.Unlock()
		c.close()
	}
	b.ReportMetric(float64(got)/el.Seconds(), "pkts/s")
	b.ReportMetric(100*float64(int64(per*len(cs))-got)/float64(per*len(cs)), "loss-%")
	reportLatency(b, lat)
}

// BenchmarkUDPDirect is the loopback baseline for BenchmarkRTPPassthrough's latency: the
// same packets sent straight from peer to peer.
func BenchmarkUDPDirect(b *testing.B) {
	tx, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	rx, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer tx.Close()
	c := &benchCall{tx: tx, rx: rx, to: rx.LocalAddr().(*net.UDPAddr), done: make(chan struct{}), ack: make(chan struct{}, 1)}
	go c.read()
	b.ResetTimer()
	start := time.Now()
	c.run(b.N, 16)
	el := time.Since(start)
	rx.Close()
	<-c.done
	b.ReportMetric(float64(c.received.Load())/el.Seconds(), "pkts/s")
	reportLatency(b, c.lat)
}

// BenchmarkSRTPToRTP sends PCMU from a pion WebRTC client (SRTP) through a proxy session to a
// plain RTP peer; the client's own encryption runs in the same process.
func BenchmarkSRTPToRTP(b *testing.B) {
	e := newTestEngine(b, func(c *Config) { c.Logger = nil })
	cl := newRTCClient(b, "pcmu", false)
	peer := newRTPPeer(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: cl.offer()}, KindRTP, SessionOptions{})
	must(b, err)
	defer s.Close()
	off, _ := plainrtp.ParseSDP([]byte(farOffer.SDP))
	ans, _ := plainrtp.Answer(off, loopback, peer.Port(), []plainrtp.Codec{plainrtp.PCMU}, nil)
	peer.use(off)
	callerAns, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
	must(b, err)
	cl.setAnswer(callerAns.SDP)
	peers.WaitFor(b, 5*time.Second, "DTLS", func() bool {
		return s.legs[SideCaller].ready(kindAudio) && s.legs[SideCaller].(*webrtcLeg).tracks[0].isBoundNow()
	})
	// warm up until packets flow
	pkt := rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
	peers.WaitFor(b, 5*time.Second, "first packet", func() bool {
		pkt.SequenceNumber++
		_ = cl.track.WriteRTP(&pkt)
		n := peer.Count()
		return n > 0
	})
	base := peer.Count()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		pkt.SequenceNumber++
		pkt.Timestamp += 160
		_ = cl.track.WriteRTP(&pkt)
		if i%32 == 31 { // at most 64 packets in flight
			deadline := time.Now().Add(50 * time.Millisecond)
			for peer.Count()-base < i-64 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Microsecond) // benchmark: flow control, bounded packets in flight
			}
		}
	}
	peers.WaitFor(b, 2*time.Second, "drain", func() bool { n := peer.Count(); return n-base >= b.N*9/10 })
	el := time.Since(start)
	n := peer.Count()
	b.ReportMetric(float64(n-base)/el.Seconds(), "pkts/s")
}

// fakeLeg is an in-memory destination for transcoding benchmarks.
type fakeLeg struct {
	neg     *negotiated
	written int
	last    []byte
}

func (f *fakeLeg) negotiated() *negotiated { return f.neg }
func (f *fakeLeg) write(_ mediaKind, _ *rtp.Header, p []byte) error {
	f.written++
	f.last = p
	return nil
}
func (f *fakeLeg) ready(mediaKind) bool       { return true }
func (f *fakeLeg) requestKeyframe()           {}
func (f *fakeLeg) sendREMB(uint64)            {}
func (f *fakeLeg) lastRTP() time.Time         { return time.Now() }
func (f *fakeLeg) touch()                     {}
func (f *fakeLeg) counters() (uint64, uint64) { return 0, uint64(f.written) }
func (f *fakeLeg) kind() Kind                 { return KindRTP }
func (f *fakeLeg) close()                     {}

// BenchmarkTranscodeCall runs both directions of one Opus⇄PCMU call's 20 ms frames through
// the bridge (decode + encode, no network). calls/core = how many such calls one core
// sustains in real time (each call needs 50 frames/s each way).
func BenchmarkTranscodeCall(b *testing.B) {
	s := &Session{log: testLogger(b)}
	opusF := format{PT: 111, Name: "opus", Rate: 48000, Channels: 2}
	pcmuF := format{PT: 0, Name: "pcmu", Rate: 8000}
	toPCMU := &fakeLeg{neg: &negotiated{audio: []format{pcmuF}}}
	toOpus := &fakeLeg{neg: &negotiated{audio: []format{opusF}}}
	p1 := newPipe(s, toOpus, toPCMU, kindAudio) // Opus in, PCMU out
	p2 := newPipe(s, toPCMU, toOpus, kindAudio) // PCMU in, Opus out
	// Real frames: a speech-like two-tone signal encoded once.
	pcm := audiotest.Tone(440, 8000, 8000, 8000)
	for i, v := range audiotest.Tone(1300, 8000, 8000, 4000) {
		pcm[i] += v
	}
	oenc, _ := codec.NewEncoder("opus", 8000)
	var opusFrames, pcmuFrames [][]byte
	buf := make([]byte, 1500)
	for i := 0; i+160 <= len(pcm); i += 160 {
		n, _ := oenc.Encode(buf, pcm[i:i+160])
		opusFrames = append(opusFrames, append([]byte(nil), buf[:n]...))
		u := make([]byte, 160)
		for j, v := range pcm[i : i+160] {
			u[j] = codec.LinearToUlaw(v)
		}
		pcmuFrames = append(pcmuFrames, u)
	}
	po := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}}
	pu := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: 2}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		po.SequenceNumber++
		po.Timestamp += 960
		po.Payload = opusFrames[i%len(opusFrames)]
		p1.push(opusF, po)
		pu.SequenceNumber++
		pu.Timestamp += 160
		pu.Payload = pcmuFrames[i%len(pcmuFrames)]
		p2.push(pcmuF, pu)
	}
	b.StopTimer()
	if toPCMU.written < b.N*9/10 || toOpus.written < b.N*9/10 {
		b.Fatalf("transcoded %d/%d of %d", toPCMU.written, toOpus.written, b.N)
	}
	perFrame := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/perFrame/50, "calls/core")
}

// BenchmarkPassthroughPipe is the bridge's per-packet cost for a shared codec (no network).
func BenchmarkPassthroughPipe(b *testing.B) {
	s := &Session{log: testLogger(b)}
	pcmuF := format{PT: 0, Name: "pcmu", Rate: 8000}
	dst := &fakeLeg{neg: &negotiated{audio: []format{{PT: 0, Name: "pcmu", Rate: 8000}}}}
	p := newPipe(s, dst, dst, kindAudio)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1}, Payload: make([]byte, 160)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		pkt.SequenceNumber++
		pkt.Timestamp += 160
		p.push(pcmuF, pkt)
	}
}

// BenchmarkMemoryPerCall measures heap per live session: RTP⇄RTP proxy calls with media
// flowing, and WebRTC⇄RTP proxy sessions (engine side only, negotiated, no ICE traffic).
func BenchmarkMemoryPerCall(b *testing.B) {
	measure := func(b *testing.B, n int, start func() func()) {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()
		closers := make([]func(), 0, n)
		for range n {
			closers = append(closers, start())
		}
		time.Sleep(200 * time.Millisecond) // benchmark: let the sessions' goroutines start before counting
		runtime.GC()
		runtime.ReadMemStats(&m1)
		g1 := runtime.NumGoroutine()
		for _, c := range closers {
			c()
		}
		b.ReportMetric(float64(int64(m1.HeapInuse)-int64(m0.HeapInuse))/float64(n)/1024, "KiB/call")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/call")
	}
	b.Run("rtp-rtp", func(b *testing.B) {
		e := newTestEngine(b, func(c *Config) { c.Logger = nil; c.RTPPortMax = c.RTPPortMin + 2000; c.Quarantine = -1 })
		for range b.N {
			measure(b, 100, func() func() {
				c := newBenchCall(b, e)
				c.run(5, 4)
				return c.close
			})
		}
	})
	b.Run("webrtc-rtp", func(b *testing.B) {
		e := newTestEngine(b, func(c *Config) { c.Logger = nil; c.RTPPortMax = c.RTPPortMin + 2000; c.Quarantine = -1 })
		offer := newRTCClient(b, "opus", false).offer()
		ctx := context.Background()
		for range b.N {
			measure(b, 50, func() func() {
				s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: offer}, KindRTP, SessionOptions{})
				must(b, err)
				off, _ := plainrtp.ParseSDP([]byte(farOffer.SDP))
				ans, _ := plainrtp.Answer(off, loopback, 9, []plainrtp.Codec{plainrtp.PCMU}, nil)
				_, err = s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
				must(b, err)
				return s.Close
			})
		}
	})
}

// BenchmarkRTPPassthroughPaced measures added latency at a realistic load: calls parallel
// PCMU calls each sending one packet per 20 ms for 2 s (per benchmark iteration).
func BenchmarkRTPPassthroughPaced(b *testing.B) {
	const calls = 50
	e := newTestEngine(b, func(c *Config) { c.Logger = nil; c.RTPPortMax = c.RTPPortMin + 2000 })
	cs := make([]*benchCall, calls)
	for i := range cs {
		cs[i] = newBenchCall(b, e)
	}
	benchPaced(b, cs)
}

// benchPaced sends one packet per 20 ms on each call for 2 s per iteration and reports loss
// and one-way latency; it closes the calls.
func benchPaced(b *testing.B, cs []*benchCall) {
	calls := len(cs)
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(calls)) // spread the calls
				pkt := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1}, Payload: make([]byte, 160)}
				buf := make([]byte, 1500)
				tk := time.NewTicker(20 * time.Millisecond)
				defer tk.Stop()
				for range 100 {
					pkt.SequenceNumber++
					pkt.Timestamp += 160
					binary.BigEndian.PutUint64(pkt.Payload, uint64(time.Now().UnixNano()))
					m, _ := pkt.MarshalTo(buf)
					_, _ = c.tx.WriteToUDP(buf[:m], c.to)
					<-tk.C
				}
			}()
		}
		wg.Wait()
	}
	time.Sleep(50 * time.Millisecond) // benchmark: let the last packets land before the timer stops
	b.StopTimer()
	var lat []time.Duration
	var got int64
	for _, c := range cs {
		c.mu.Lock()
		lat = append(lat, c.lat...)
		c.mu.Unlock()
		got += c.received.Load()
		c.close()
	}
	b.ReportMetric(100*float64(int64(calls*100*b.N)-got)/float64(calls*100*b.N), "loss-%")
	reportLatency(b, lat)
}

// BenchmarkMemoryPerConnectedCall measures the engine-side heap of WebRTC(Opus)⇄RTP(PCMU)
// proxy calls with media flowing (transcoding both ways): the heap with the calls up minus
// the heap after closing the engine sessions (the in-process client peers stay up).
func BenchmarkMemoryPerConnectedCall(b *testing.B) {
	const n = 20
	e := newTestEngine(b, func(c *Config) { c.Logger = nil; c.RTPPortMax = c.RTPPortMin + 2000; c.Quarantine = -1 })
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var sessions []*Session
		var clients []*rtcClient
		for range n {
			cl := newRTCClient(b, "opus", false)
			peer := newRTPPeer(b)
			s, farOffer, err := e.StartProxy(ctx, Description{Kind: KindWebRTC, SDP: cl.offer()}, KindRTP, SessionOptions{})
			must(b, err)
			off, _ := plainrtp.ParseSDP([]byte(farOffer.SDP))
			ans, _ := plainrtp.Answer(off, loopback, peer.Port(), []plainrtp.Codec{plainrtp.PCMU}, nil)
			peer.use(off)
			ca, err := s.SetAnswer(ctx, Description{Kind: KindRTP, SDP: ans.String()})
			must(b, err)
			cl.setAnswer(ca.SDP)
			sessions = append(sessions, s)
			clients = append(clients, cl)
			go cl.sendTone(ctx, 1000, time.Second)
			go peer.sendTone(ctx, plainrtp.PCMU, 600, time.Second)
		}
		time.Sleep(1200 * time.Millisecond) // benchmark: the measured second of audio
		for _, s := range sessions {
			if st := s.Stats(); st[SideFar].Transcoded == 0 {
				b.Fatalf("call not transcoding: %+v", st)
			}
		}
		runtime.GC()
		var m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m1)
		g1 := runtime.NumGoroutine()
		for _, s := range sessions {
			s.Close()
		}
		runtime.GC()
		runtime.ReadMemStats(&m2)
		g2 := runtime.NumGoroutine()
		b.ReportMetric(float64(int64(m1.HeapInuse)-int64(m2.HeapInuse))/n/1024, "KiB/call")
		b.ReportMetric(float64(g1-g2)/n, "goroutines/call")
		for _, c := range clients {
			c.close()
		}
		cancel()
	}
}
