package upstream

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStatsDrain: calls are counted per service, 429 and 503 as throttled,
// and each Drain returns only what came after the previous one, so that
// summing an invocation's audit lines counts each call once.
func TestStatsDrain(t *testing.T) {
	Record(context.Background(), ServiceARM, time.Second, 200) // no collector: ignored
	s := NewStats()
	ctx := WithStats(context.Background(), s)
	Record(ctx, ServiceDatabricks, 20*time.Millisecond, http.StatusTooManyRequests)
	Record(ctx, ServiceDatabricks, 5*time.Millisecond, http.StatusOK)
	got := s.Drain()
	want := map[string]Calls{ServiceDatabricks: {N: 2, Ms: 25, MaxMs: 20, Throttled: 1}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("first drain (-want +got):\n%s", d)
	}
	if again := s.Drain(); again != nil {
		t.Errorf("second drain = %v, want nil", again)
	}
	dctx, cancel := Detached(ctx, time.Second)
	defer cancel()
	Record(dctx, ServiceServiceBus, 3*time.Millisecond, 0)
	if d := cmp.Diff(map[string]Calls{ServiceServiceBus: {N: 1, Ms: 3, MaxMs: 3}}, s.Drain()); d != "" {
		t.Errorf("a detached context still counts into the invocation (-want +got):\n%s", d)
	}
}
