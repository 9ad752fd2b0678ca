package plainrtp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/rtp"
)

// BenchmarkWriteRTP measures one 20 ms PCMU packet written to a loopback peer, plain and
// protected with each SDES suite (go test -run x -bench WriteRTP ./media/plainrtp/).
func BenchmarkWriteRTP(b *testing.B) {
	pool, err := NewPortPool(lo, 41986, 41998, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	for _, suite := range []string{"plain", SuiteAES80, SuiteAES32, SuiteGCM} {
		b.Run(suite, func(b *testing.B) {
			ep, err := pool.Open()
			if err != nil {
				b.Fatal(err)
			}
			defer ep.Close()
			if suite != "plain" {
				tx, _ := NewCrypto(1, suite)
				rx, _ := NewCrypto(1, suite)
				if err := ep.SetSRTP(&tx, &rx); err != nil {
					b.Fatal(err)
				}
			}
			ep.SetRemote(sink.LocalAddr().(*net.UDPAddr).AddrPort(), netip.AddrPort{})
			p := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.SequenceNumber++
				p.Timestamp += 160
				if err := ep.WriteRTP(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
