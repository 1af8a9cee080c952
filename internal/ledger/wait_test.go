package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func TestAcquireWaiting(t *testing.T) {
	t.Parallel()
	l := ledger.NewMemory(ledger.Options{})
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "waited-for"}
	holder, err := l.Acquire(t.Context(), k, ledger.Terms{For: 10 * time.Second})
	if err != nil || holder.Outcome != ledger.Leased {
		t.Fatal(holder.Outcome, err)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		_, _ = l.Complete(context.Background(), holder.Lease, token("tok-1", time.Now(), time.Hour))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	a, err := ledger.AcquireWaiting(ctx, l, k, ledger.Terms{For: 10 * time.Second}, 50*time.Millisecond)
	if err != nil || a.Outcome != ledger.Recorded || a.Row.TokenID != "tok-1" {
		t.Fatalf("waiting for the holder: %s %+v, %v; want its record", a.Outcome, a.Row, err)
	}

	// A holder that does not finish within the budget: the contract's 503.
	k2 := ledger.Key{Workspace: k.Workspace, RequestID: "slow"}
	if _, err := l.Acquire(t.Context(), k2, ledger.Terms{For: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	start := time.Now()
	a, err = ledger.AcquireWaiting(ctx2, l, k2, ledger.Terms{For: 10 * time.Second}, 50*time.Millisecond)
	e := tokens.AsError(err)
	if a.Outcome != ledger.Busy || e == nil || e.Code != tokens.CodeUpstreamUnavailable || e.RetryAfter < 9*time.Second || e.RetryAfter > 10*time.Second {
		t.Fatalf("past the budget: %s, %v (retry after %v); want 503 until the lease ends", a.Outcome, err, e.RetryAfter)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("waited %s on a 200ms budget", took)
	}
}
