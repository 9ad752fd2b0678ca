package wsapi

import (
	"sync"
	"time"
)

// writeWait bounds one write to the client, and how long a reply waits for
// room in the send queue.
const writeWait = 10 * time.Second

// sendQueue holds the frames waiting for the writer, budgeted in bytes
// (api.send_queue_bytes), not in frames.
type sendQueue struct {
	budget int
	ready  chan struct{} // wakes the writer (capacity 1)
	room   chan struct{} // wakes a waiting reply (capacity 1)

	mu     sync.Mutex
	frames [][]byte
	bytes  int // queued and being written
}

func newSendQueue(budget int) sendQueue {
	return sendQueue{budget: budget, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// put queues b if it fits in the budget (a frame bigger than the whole
// budget fits in an empty queue). When it does not fit, wait (if not nil)
// is called to wait for room and put tries again while wait returns true.
func (q *sendQueue) put(b []byte, wait func() bool) bool {
	for {
		q.mu.Lock()
		if q.bytes == 0 || q.bytes+len(b) <= q.budget {
			q.frames = append(q.frames, b)
			q.bytes += len(b)
			q.mu.Unlock()
			signal(q.ready)
			return true
		}
		q.mu.Unlock()
		if wait == nil || !wait() {
			return false
		}
	}
}

// take returns every queued frame; done must be called for each once written.
func (q *sendQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.frames
	q.frames = nil
	return out
}

// done releases the budget of a written frame.
func (q *sendQueue) done(n int) {
	q.mu.Lock()
	q.bytes -= n
	q.mu.Unlock()
	signal(q.room)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
