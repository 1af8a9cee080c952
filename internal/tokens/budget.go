package tokens

import (
	"context"
	"time"
)

// The retry budget (UPSTREAM_RETRY_BUDGET) is a deadline on an invocation's
// context, kept as a value too, so that the retry policy of every adapter
// can refuse a retry whose Retry-After would land past it (the per-try
// timeout azcore puts on a request's context hides the outer deadline).
// It lives in the domain because the domain decides when work must go on
// after the budget is spent: clean-up (revoking a token whose value was
// lost) runs on a budget of its own, see Detached.

type budgetKey struct{}

// WithBudget bounds the upstream work of one invocation.
func WithBudget(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(budget)
	ctx = context.WithValue(ctx, budgetKey{}, deadline)
	return context.WithDeadline(ctx, deadline)
}

// BudgetDeadline returns the budget's deadline, if the context has one.
func BudgetDeadline(ctx context.Context) (time.Time, bool) {
	d, ok := ctx.Value(budgetKey{}).(time.Time)
	return d, ok
}

// CleanupTimeout bounds clean-up that runs after the invocation's budget is
// spent or its caller went away: finding what an interrupted create left in
// Databricks and revoking it, or disabling a Key Vault version.
const CleanupTimeout = 15 * time.Second

// Detached returns a context for work that must run even though the
// invocation's budget is spent or its caller went away (revoking a token
// whose value was lost, publishing an outcome): it keeps the values but not
// the cancellation, and has a fresh budget of its own, so its calls still
// get their retries.
func Detached(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return WithBudget(context.WithoutCancel(ctx), timeout)
}
