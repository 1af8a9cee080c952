package tokens

import (
	"sync"
	"time"
)

// keyedMutex serialises work per key (workspace + request id), so that two
// concurrent calls with one request id get one token.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// recentRecords remembers the records of recent creates (never the values),
// so a retried call on this instance is answered without a list call.
type recentRecords struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	m     map[string]recentEntry
	order []string
}

type recentEntry struct {
	rec Record
	at  time.Time
}

func newRecentRecords(max int, ttl time.Duration) *recentRecords {
	return &recentRecords{max: max, ttl: ttl, m: make(map[string]recentEntry)}
}

func (r *recentRecords) get(key string, now time.Time) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[key]
	if !ok || now.Sub(e.at) > r.ttl || (!e.rec.ExpiresAt.IsZero() && !e.rec.ExpiresAt.After(now)) {
		return Record{}, false
	}
	return e.rec, true
}

func (r *recentRecords) put(key string, rec Record, now time.Time) {
	rec.Value = Secret{}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[key]; !ok {
		r.order = append(r.order, key)
	}
	r.m[key] = recentEntry{rec: rec, at: now}
	for len(r.order) > r.max {
		delete(r.m, r.order[0])
		r.order = r.order[1:]
	}
}

// policyCache remembers workspace settings for a while: they change rarely,
// and reading them on every create would double the Databricks calls.
type policyCache struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]policyEntry
}

type policyEntry struct {
	p  WorkspacePolicy
	at time.Time
}

func newPolicyCache(ttl time.Duration) *policyCache {
	return &policyCache{ttl: ttl, m: map[string]policyEntry{}}
}

func (c *policyCache) get(key string, now time.Time) (WorkspacePolicy, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.Sub(e.at) > c.ttl {
		return WorkspacePolicy{}, false
	}
	return e.p, true
}

func (c *policyCache) put(key string, p WorkspacePolicy, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key] = policyEntry{p: p, at: now}
}

// forgetToken drops the records of a revoked token, so that a later call
// with its request id does not answer with a token that no longer works.
func (r *recentRecords) forgetToken(tokenID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.m {
		if e.rec.TokenID == tokenID {
			delete(r.m, k)
		}
	}
}
