// Package upstream holds what every outbound Azure call shares: the retry
// budget of one invocation, azcore retry options that honour Retry-After
// within that budget, and the reading of Retry-After itself.
//
// The budget (UPSTREAM_RETRY_BUDGET) is a deadline on the invocation's
// context. azcore's retry policy already stops sleeping when the context
// ends; ShouldRetry here also refuses a retry whose Retry-After would land
// past the deadline, so the caller gets the upstream's own Retry-After at
// once instead of a timeout later.
package upstream

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// WithBudget bounds the upstream work of one invocation (tokens.WithBudget).
func WithBudget(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	return tokens.WithBudget(ctx, budget)
}

// Deadline returns the budget's deadline, if the context has one.
func Deadline(ctx context.Context) (time.Time, bool) { return tokens.BudgetDeadline(ctx) }

// Detached returns a context for clean-up work that must run even though
// the invocation's budget is spent (tokens.Detached): no cancellation, and
// a fresh budget of timeout.
func Detached(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return tokens.Detached(ctx, timeout)
}

// Retriable are the statuses worth another try for an idempotent call.
var Retriable = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// RetryOptions returns azcore retry options for calls whose retries must
// fit the invocation's budget. statuses are the retriable statuses;
// retryErrors says whether transport errors (no response) may be retried,
// which is false for non-idempotent calls such as token/create.
//
// A try of a call whose transport errors are not retried has no timeout of
// its own, only the budget's: cutting it short could not buy another try,
// only an answer lost while the budget still had time for it (a create
// answered after 22 s, with a 30 s budget, would be made again).
func RetryOptions(statuses []int, retryErrors bool) policy.RetryOptions {
	tryTimeout := 20 * time.Second
	if !retryErrors {
		tryTimeout = 0
	}
	return policy.RetryOptions{
		MaxRetries:    8,
		TryTimeout:    tryTimeout,
		RetryDelay:    400 * time.Millisecond,
		MaxRetryDelay: 10 * time.Minute, // Retry-After is bounded by the budget instead
		ShouldRetry: func(resp *http.Response, err error) bool {
			if err != nil {
				return retryErrors && !errors.Is(err, context.Canceled)
			}
			retriable := false
			for _, s := range statuses {
				retriable = retriable || resp.StatusCode == s
			}
			if !retriable {
				return false
			}
			deadline, ok := Deadline(resp.Request.Context())
			if !ok {
				return true
			}
			wait := RetryAfter(resp)
			return time.Until(deadline) > wait
		},
	}
}

// RetryAfter reads Retry-After (seconds or an HTTP date) and the Azure
// millisecond variants; zero when absent or unreadable.
func RetryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	for _, h := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := resp.Header.Get(h); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 && secs < math.MaxInt32 {
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// PlainHTTPGuard refuses a request over plain http unless it goes to a
// loopback address and allowLoopback (ALLOW_INSECURE_LOOPBACK) is set. The
// SDKs' bearer-token policies refuse http themselves; where we let them
// allow it (local stand-ins), this keeps that exception to loopback.
func PlainHTTPGuard(allowLoopback bool) policy.Policy {
	return guard{allow: allowLoopback}
}

type guard struct{ allow bool }

// PlainHTTPAllowed is the one statement of the rule: credentials travel
// over https, or over plain http to a loopback address when allowLoopback
// (ALLOW_INSECURE_LOOPBACK) says so, and nowhere else.
func PlainHTTPAllowed(u *url.URL, allowLoopback bool) bool {
	return u.Scheme == "https" || allowLoopback && u.Scheme == "http" && allowlist.IsLoopback(u.Hostname())
}

func (g guard) Do(req *policy.Request) (*http.Response, error) {
	u := req.Raw().URL
	if !PlainHTTPAllowed(u, g.allow) {
		return nil, errors.New("refusing to send credentials over plain http to " + u.Host + " (only loopback addresses with ALLOW_INSECURE_LOOPBACK=true)")
	}
	return req.Next()
}
