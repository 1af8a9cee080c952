package upstream

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Service names, as the audit lines' "upstream" and "calls" fields use them.
const (
	ServiceEntra      = "entra"
	ServiceARM        = "arm"
	ServiceDatabricks = "databricks"
	ServiceKeyVault   = "keyvault"
	ServiceServiceBus = "servicebus"
)

// Calls is what one invocation spent on one upstream service.
type Calls struct {
	N         int   `json:"n"`         // attempts (each retry counts)
	Ms        int64 `json:"ms"`        // total time of the attempts
	MaxMs     int64 `json:"max_ms"`    // the slowest attempt
	Throttled int   `json:"throttled"` // answers 429 or 503
}

// Stats collects the upstream calls of one invocation. It is safe for
// concurrent use; the zero value is not (use NewStats).
type Stats struct {
	mu sync.Mutex
	by map[string]*Calls
}

// NewStats returns an empty collector.
func NewStats() *Stats { return &Stats{by: map[string]*Calls{}} }

type statsKey struct{}

// WithStats makes the calls made with ctx (and contexts derived from it,
// Detached ones included) count into s.
func WithStats(ctx context.Context, s *Stats) context.Context {
	return context.WithValue(ctx, statsKey{}, s)
}

// Record adds one attempt against service, from ctx's collector if any.
func Record(ctx context.Context, service string, d time.Duration, status int) {
	s, _ := ctx.Value(statsKey{}).(*Stats)
	if s == nil {
		return
	}
	ms := d.Milliseconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.by[service]
	if c == nil {
		c = &Calls{}
		s.by[service] = c
	}
	c.N++
	c.Ms += ms
	c.MaxMs = max(c.MaxMs, ms)
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		c.Throttled++
	}
}

// Drain returns the calls recorded since the previous Drain and forgets
// them, so that summing the audit lines of an invocation counts each call
// once. Nil when there were none.
func (s *Stats) Drain() map[string]Calls {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.by) == 0 {
		return nil
	}
	out := make(map[string]Calls, len(s.by))
	for k, v := range s.by {
		out[k] = *v
	}
	clear(s.by)
	return out
}

// Services lists the services of a drained map, sorted (for tests).
func Services(m map[string]Calls) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Measure is a per-retry pipeline policy that records every attempt
// against service in the invocation's Stats.
func Measure(service string) policy.Policy { return measure(service) }

type measure string

func (m measure) Do(req *policy.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := req.Next()
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	Record(req.Raw().Context(), string(m), time.Since(start), status)
	return resp, err
}
