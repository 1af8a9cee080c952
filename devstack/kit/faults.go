package kit

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Faults is the queue of faults a test injects into a stand-in, F being
// the stand-in's own fault type. A fault is queued for one operation (as
// the stand-in names them) or for any, and each request takes at most
// one, oldest first, so that a test can script a sequence of failures.
// The zero value is an empty queue, safe for concurrent use.
type Faults[F any] struct {
	mu sync.Mutex
	q  []queued[F]
}

type queued[F any] struct {
	op string
	f  F
}

// Add queues f for the next request of operation op; op "" is any
// operation.
func (q *Faults[F]) Add(op string, f F) {
	q.mu.Lock()
	q.q = append(q.q, queued[F]{op, f})
	q.mu.Unlock()
}

// Next takes the oldest fault queued for op or for any operation.
func (q *Faults[F]) Next(op string) (F, bool) {
	return q.take(func(o string) bool { return o == "" || o == op })
}

// Take takes the oldest fault queued for exactly op, for a stand-in that
// serves faults queued for the operation before those queued for any.
func (q *Faults[F]) Take(op string) (F, bool) {
	return q.take(func(o string) bool { return o == op })
}

func (q *Faults[F]) take(fits func(op string) bool) (F, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, c := range q.q {
		if fits(c.op) {
			q.q = append(q.q[:i:i], q.q[i+1:]...)
			return c.f, true
		}
	}
	var zero F
	return zero, false
}

// Clear drops every queued fault.
func (q *Faults[F]) Clear() {
	q.mu.Lock()
	q.q = nil
	q.mu.Unlock()
}

// Sleep waits d, cut short when ctx ends (the client went away) or done
// is closed (the stand-in is closing; nil: never), so that an injected
// delay never outlives the test that asked for it.
func Sleep(ctx context.Context, done <-chan struct{}, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-done:
	}
}

// Drop closes the client's connection without an answer: net/http
// recognises the panic and neither logs it nor writes a response.
func Drop() { panic(http.ErrAbortHandler) }

// Redirect answers status (a 3xx) with a Location header and a plain-text
// body recognisable in a client's output: what a misconfigured or hostile
// front door would send to make a client re-send its bearer token there.
func Redirect(w http.ResponseWriter, status int, location, body string) {
	w.Header().Set("Location", location)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
