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

// Fault is a failure one of the Azure REST stand-ins (ARM, Key Vault)
// serves instead of its answer, as a test queues it.
type Fault struct {
	// Status to answer with (403, 429, 503 …); 0 with Delay: wait, then
	// answer normally.
	Status int
	// RetryAfter, when not empty, is sent as Retry-After.
	RetryAfter string
	// Delay is waited first (cut short when the client goes away or the
	// stand-in closes).
	Delay time.Duration
	// Code and Message override the stand-in's error body for Status.
	Code, Message string
	// Drop closes the connection without an answer.
	Drop bool
	// Op, when set, keeps the fault for the next request of that operation
	// (as the stand-in's Calls names them); empty: the next request of
	// any kind.
	Op string
	// Location, with a 3xx Status, makes the answer a redirect there (with
	// the stand-in's RedirectBody) instead of an error: a client that
	// followed it would re-send the request, bearer token included, to
	// Location.
	Location string
}

// FailNext queues n faults that answer status to the next requests of any
// operation; a 429 comes with Retry-After: 0, so that SDK retries are
// quick (queue a Fault for other values).
func FailNext(q *Faults[Fault], n int, status int) {
	f := Fault{Status: status}
	if status == http.StatusTooManyRequests {
		f.RetryAfter = "0"
	}
	for range n {
		q.Add("", f)
	}
}

// Serve plays f on a request: it waits the delay, then drops the
// connection, answers the redirect (with redirectBody), or sets
// Retry-After and answers the status through fail, in the stand-in's own
// error shape. It reports whether the request has been answered; false is
// a pure delay, after which the request is served normally.
func (f Fault) Serve(w http.ResponseWriter, r *http.Request, closing <-chan struct{}, redirectBody string, fail func()) bool {
	Sleep(r.Context(), closing, f.Delay)
	switch {
	case f.Drop:
		Drop()
	case f.Status == 0:
		return false
	case f.Location != "":
		Redirect(w, f.Status, f.Location, redirectBody)
	default:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		fail()
	}
	return true
}
