package kit

import (
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Counter counts a stand-in's calls by a key (the operation, or the
// requested resource). The zero value is ready and safe for concurrent use.
type Counter struct {
	mu sync.Mutex
	m  map[string]int
}

// Inc counts one call of key.
func (c *Counter) Inc(key string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[key]++
	c.mu.Unlock()
}

// Snapshot returns the counts so far, a copy the caller owns (empty, not
// nil, before the first call).
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		return map[string]int{}
	}
	return maps.Clone(c.m)
}

// Log keeps what a stand-in records, oldest first: one entry per request,
// or each token it issued. The zero value is ready and safe for concurrent
// use.
type Log[T any] struct {
	mu    sync.Mutex
	items []T
}

// Add appends v.
func (l *Log[T]) Add(v T) {
	l.mu.Lock()
	l.items = append(l.items, v)
	l.mu.Unlock()
}

// All returns every entry so far, a copy the caller owns.
func (l *Log[T]) All() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// StatusRecorder passes a response through and remembers its status, for
// a stand-in's record of the request: the first status written, 200 when
// the body came first, 0 when nothing was written (the connection was
// dropped).
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

// WriteHeader implements http.ResponseWriter.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection underneath.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Clock is a stand-in's clock: a base (time.Now unless a test gives its
// own) plus whatever the test has advanced it by, so that tokens and
// secrets can be made to expire without waiting. The zero value follows
// time.Now and is safe for concurrent use.
type Clock struct {
	// Base is read on every Now; nil is time.Now. Set it before use.
	Base   func() time.Time
	mu     sync.Mutex
	offset time.Duration
}

// Now is Base's time plus every Advance so far.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	off := c.offset
	c.mu.Unlock()
	if c.Base == nil {
		return time.Now().Add(off)
	}
	return c.Base().Add(off)
}

// Advance moves the clock by d (back, when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Names is a set of names compared case-insensitively, as Azure compares
// object ids and secret names: the principals a stand-in denies, the
// secrets it forbids. The zero value is empty and safe for concurrent use.
type Names struct {
	mu sync.Mutex
	m  map[string]bool
}

// Set puts name in the set (in) or takes it out.
func (n *Names) Set(name string, in bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]bool{}
	}
	if in {
		n.m[strings.ToLower(name)] = true
	} else {
		delete(n.m, strings.ToLower(name))
	}
}

// Has reports whether name is in the set.
func (n *Names) Has(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[strings.ToLower(name)]
}

// Traffic is what an HTTP stand-in keeps of the calls made to it: the
// faults a test queued for them, a count per operation and a record of
// each, in order. The zero value is ready and safe for concurrent use.
type Traffic[F, R any] struct {
	Faults   Faults[F]
	Calls    Counter
	Requests Log[R]
}
