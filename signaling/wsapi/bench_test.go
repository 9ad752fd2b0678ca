package wsapi_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nkbridge/nkbridge/signaling"
	"github.com/nkbridge/nkbridge/signaling/wsapi"
)

type benchMsg struct {
	Data struct {
		SessionID string
	}
}

// benchConn is a minimal client: it answers server requests (events) ok and
// waits for the response to its own tid.
type benchConn struct {
	ws  *websocket.Conn
	tid int
	buf []byte
}

func (c *benchConn) do(format string, args ...any) (benchMsg, error) {
	c.tid++
	c.buf = fmt.Appendf(c.buf[:0], format, append(args, c.tid)...)
	if err := c.ws.WriteMessage(websocket.TextMessage, c.buf); err != nil {
		return benchMsg{}, err
	}
	want := fmt.Appendf(nil, `"tid":%d}`, c.tid)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return benchMsg{}, err
		}
		// A lean client, so that the server gets most of the CPU: server
		// requests (events) end with "tid":N}, replies to us with our tid.
		if bytes.Contains(b, []byte(`"cmd":`)) {
			i := bytes.LastIndex(b, []byte(`"tid":`))
			if i < 0 {
				return benchMsg{}, fmt.Errorf("server request without tid: %s", b)
			}
			reply := append(append([]byte(`{"result":"ok",`), b[i:len(b)-1]...), '}')
			if err := c.ws.WriteMessage(websocket.TextMessage, reply); err != nil {
				return benchMsg{}, err
			}
			continue
		}
		if !bytes.HasPrefix(b, []byte(`{"result":`)) || !bytes.HasSuffix(b, want) {
			continue // an ack
		}
		if !bytes.HasPrefix(b, []byte(`{"result":"ok"`)) {
			return benchMsg{}, fmt.Errorf("error reply: %s", b)
		}
		var m benchMsg
		if i := bytes.Index(b, []byte(`"session_id":"`)); i >= 0 {
			rest := b[i+len(`"session_id":"`):]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				m.Data.SessionID = string(rest[:j])
			}
		}
		return m, nil
	}
}

// BenchmarkP2PSessionPairs measures p2p session start+stop pairs per second
// over 100 concurrent logged-in connections (client and server in this
// process). With events, each pair also carries the stop event and its ok.
func BenchmarkP2PSessionPairs(b *testing.B) {
	for _, sub := range []struct {
		name      string
		subscribe bool
	}{{"events", true}, {"noevents", false}} {
		b.Run(sub.name, func(b *testing.B) {
			env := startServer(b, wsapi.Config{}, signaling.Options{})
			const nconns = 100
			conns := make([]*benchConn, nconns)
			for i := range conns {
				ws, _, err := websocket.DefaultDialer.Dial(env.url, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer ws.Close()
				conns[i] = &benchConn{ws: ws}
				if _, err := conns[i].do(`{"class":"core","subclass":"user","cmd":"login","data":{"user":"u%d","password":"p"},"tid":%d}`, i); err != nil {
					b.Fatal(err)
				}
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			errs := make(chan error, nconns)
			b.ResetTimer()
			start := time.Now()
			cpu0 := cpuTime()
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for left.Add(-1) >= 0 {
						m, err := c.do(`{"class":"media","subclass":"session","cmd":"start","data":{"type":"p2p","offer":{"sdp":"v=0"},"subscribe":%t},"tid":%d}`, sub.subscribe)
						if err != nil {
							errs <- err
							return
						}
						if _, err := c.do(`{"class":"media","subclass":"session","cmd":"stop","data":{"session_id":%q},"tid":%d}`, m.Data.SessionID); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "pairs/s")
			// The machine is shared: CPU time (client + server, this process)
			// per pair says what 2 dedicated cores would do.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/pair")
			b.ReportMetric(2*float64(b.N)/cpu.Seconds(), "pairs/s@2cpu")
			if n := len(env.core.ListSessions()); n != 0 {
				b.Fatalf("%d sessions left", n)
			}
		})
	}
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
