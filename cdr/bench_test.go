package cdr

import (
	"context"
	"fmt"
	"testing"

	"github.com/nkbridge/nkbridge/signaling"
)

// BenchmarkSpool: records per second through the spool: appended in batches of 64 (one
// fsync per batch, as the writer does) and read back and acknowledged by one consumer
// (one ack per batch).
func BenchmarkSpool(b *testing.B) {
	payload := []byte(`{"id":"9b2f7f7e-3d0c-4a51-9c1a-6f0e2d1b8a77","event":"cdr","kind":"call","node":"n1","call_id":"c","legs":[{"session_id":"s","side":"caller","kind":"rtp","codec":"pcmu/8000","packets_in":1000,"packets_out":1000}]}`)
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			sp, err := OpenSpool(b.TempDir(), SpoolOptions{Fsync: fsync})
			if err != nil {
				b.Fatal(err)
			}
			defer sp.Close()
			c, _ := sp.Cursor("bench")
			const batch = 64
			batchOf := make([][]byte, batch)
			for i := range batchOf {
				batchOf[i] = payload
			}
			ctx := context.Background()
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				if _, err := sp.Append(batchOf...); err != nil {
					b.Fatal(err)
				}
				if err := sp.Sync(); err != nil {
					b.Fatal(err)
				}
				var last uint64
				for range batch {
					seq, _, err := c.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					last = seq
				}
				if err := c.Ack(last); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkServiceToSpool: records per second from Recorder calls to the spool (JSON
// encoding, the writer goroutine, batches, fsync), no endpoint.
func BenchmarkServiceToSpool(b *testing.B) {
	sp := b.TempDir()
	obs := &countObs{}
	// a queue that holds every record: none dropped, the writer's rate is measured
	svc, err := New(Options{SpoolDir: sp, QueueSize: 2*b.N + 1, Observer: obs, Spool: SpoolOptions{Fsync: true},
		Webhooks: []WebhookOptions{{URL: "http://127.0.0.1:9/", Secret: "x", AllowedHosts: []string{"127.0.0.1"}, Events: []string{"none"}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		svc.CallEvent(signaling.CallEnded, endedCall(i))
	}
	// two records per call (call.ended and cdr) once written
	svc.Close()
	if n := obs.dropped.Load(); n > 0 {
		b.Fatalf("%d records dropped", n)
	}
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "records/s")
}
