package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header http.Header
		want   time.Duration
	}{
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{http.Header{"Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
		{http.Header{"X-Ms-Retry-After-Ms": {"1500"}}, 1500 * time.Millisecond},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"-3"}}, 0},
		{http.Header{}, 0},
	}
	for _, tt := range tests {
		if got := RetryAfter(&http.Response{Header: tt.header}); got != tt.want {
			t.Errorf("RetryAfter(%v) = %s, want %s", tt.header, got, tt.want)
		}
	}
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	if got := RetryAfter(&http.Response{Header: http.Header{"Retry-After": {date}}}); got < 28*time.Second || got > 31*time.Second {
		t.Errorf("HTTP-date Retry-After = %s", got)
	}
	if RetryAfter(nil) != 0 {
		t.Error("nil response")
	}
}

func TestShouldRetryFitsTheBudget(t *testing.T) {
	t.Parallel()
	ctx, cancel := WithBudget(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://example.invalid", nil)
	resp := func(status int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: status, Header: h, Request: req}
	}
	idempotent := RetryOptions(Retriable, true).ShouldRetry
	createOnly := RetryOptions([]int{http.StatusTooManyRequests}, false).ShouldRetry
	tests := []struct {
		name  string
		fn    func(*http.Response, error) bool
		resp  *http.Response
		err   error
		retry bool
	}{
		{"429 that fits", idempotent, resp(429, "2"), nil, true},
		{"429 beyond the budget", idempotent, resp(429, "60"), nil, false},
		{"503 without Retry-After", idempotent, resp(503, ""), nil, true},
		{"400", idempotent, resp(400, ""), nil, false},
		{"transport error, idempotent", idempotent, nil, context.DeadlineExceeded, true},
		{"create: 503 is ambiguous", createOnly, resp(503, ""), nil, false},
		{"create: transport error is ambiguous", createOnly, nil, http.ErrHandlerTimeout, false},
		{"create: 429 is safe to retry", createOnly, resp(429, "1"), nil, true},
	}
	for _, tt := range tests {
		if got := tt.fn(tt.resp, tt.err); got != tt.retry {
			t.Errorf("%s: retry = %v", tt.name, got)
		}
	}
}

type advised struct{ error }

func (advised) Advice() string  { return "locally, sign in with `az login`" }
func (a advised) Unwrap() error { return a.error }

// TestEntraFailureCarriesAdvice proves a failed Entra token request that
// carries the credential's advice says what to do, not that Entra
// "refused" (with DefaultAzureCredential the answer may come from a
// managed-identity probe, not from Entra at all).
func TestEntraFailureCarriesAdvice(t *testing.T) {
	t.Parallel()
	probe := &http.Response{StatusCode: 403, Request: &http.Request{URL: &url.URL{Scheme: "http", Host: "169.254.169.254"}}}
	e := Common("Azure Resource Manager", fmt.Errorf("get token: %w", advised{&azidentity.AuthenticationFailedError{RawResponse: probe}}))
	if e == nil || e.Code != tokens.CodeUpstreamError || !strings.Contains(e.Message, "az login") || strings.Contains(e.Message, "refused") {
		t.Fatalf("%+v; want UpstreamError advising az login", e)
	}
}
