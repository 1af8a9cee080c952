package ledger

import (
	"context"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// AcquireWaiting is Acquire for a caller that may wait for another holder:
// while the outcome is Busy it looks again every poll, until the holder
// records its token (Recorded) or lets its lease go (Leased). When ctx
// (the invocation's budget) would end first, it returns the Busy
// acquisition with an UpstreamUnavailable error whose RetryAfter lasts
// until the holder's lease ends: the contract's 503.
func AcquireWaiting(ctx context.Context, l Ledger, key Key, terms Terms, poll time.Duration) (Acquisition, error) {
	for {
		a, err := l.Acquire(ctx, key, terms)
		if err != nil || a.Outcome != Busy {
			return a, err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < poll {
			return a, busy(a.Row.LeaseUntil)
		}
		select {
		case <-ctx.Done():
			return a, busy(a.Row.LeaseUntil)
		case <-time.After(poll):
		}
	}
}

func busy(until time.Time) *tokens.Error {
	wait := time.Until(until).Round(time.Second)
	if wait < time.Second {
		wait = time.Second
	}
	return &tokens.Error{Code: tokens.CodeUpstreamUnavailable, RetryAfter: wait,
		Message: "another request with this request id is still creating its token; try again later"}
}
