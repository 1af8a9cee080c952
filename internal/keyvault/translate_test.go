package keyvault

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// challenged answers a request without a token with Key Vault's bearer
// challenge, as the first request of every client gets.
func challenged(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001", resource="https://vault.azure.net"`)
	w.WriteHeader(http.StatusUnauthorized)
	return true
}

// failing is a Key Vault over TLS that answers the challenge, then every
// call with status, Key Vault's error body and the given headers.
func failing(t *testing.T, status int, errorCode string, header http.Header) (*Vault, *atomic.Int64) {
	v, calls, _ := failingAt(t, status, errorCode, header)
	return v, calls
}

// failingAt is failing, also returning the vault's URL.
func failingAt(t *testing.T, status int, errorCode string, header http.Header) (*Vault, *atomic.Int64, string) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if challenged(w, r) {
			return
		}
		calls.Add(1)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"Key Vault says no"}}`, errorCode)
	}))
	t.Cleanup(srv.Close)
	v, err := New(srv.URL, &azfake.TokenCredential{}, Options{Loopback: true, ClientOptions: policy.ClientOptions{Transport: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	return v, &calls, srv.URL
}

// TestErrorTranslation: each Key Vault refusal becomes the contract's code
// with a message that says what to do, never the token value or the
// access token; throttling carries Key Vault's own Retry-After.
func TestErrorTranslation(t *testing.T) {
	t.Parallel()
	const officer = "Key Vault refused to write secret s (Forbidden): give the function's identity Key Vault Secrets Officer on the vault"
	unavailable := "Azure Key Vault is throttling or unavailable and did not recover within the retry budget (UPSTREAM_RETRY_BUDGET)"
	tests := []struct {
		name      string
		status    int
		errorCode string
		header    http.Header
		want      tokens.Error
	}{
		{"403", http.StatusForbidden, "Forbidden", nil, tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceKeyVault, PermissionDenied: true, Message: officer}},
		{"401", http.StatusUnauthorized, "Unauthorized", nil, tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceKeyVault, PermissionDenied: true,
			Message: "Key Vault did not accept the function's token to write secret s (Unauthorized)"}},
		{"400", http.StatusBadRequest, "BadParameter", nil, tokens.Error{Code: tokens.CodeInvalidRequest, Message: "Key Vault refused to write secret s (BadParameter)"}},
		{"409", http.StatusConflict, "Conflict", nil, tokens.Error{Code: tokens.CodeUpstreamError,
			Message: "Key Vault refused to write secret s (Conflict): a deleted secret of that name may be awaiting purge"}},
		{"404", http.StatusNotFound, "NotFound", nil, tokens.Error{Code: tokens.CodeUpstreamError, Message: "Key Vault refused to write secret s"}},
		{"429 with Retry-After", http.StatusTooManyRequests, "Throttled", http.Header{"Retry-After": {"7"}},
			tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceKeyVault, RetryAfter: 7 * time.Second, Message: unavailable}},
		{"503 with Retry-After", http.StatusServiceUnavailable, "ServiceUnavailable", http.Header{"Retry-After": {"12"}},
			tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceKeyVault, RetryAfter: 12 * time.Second, Message: unavailable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, calls := failing(t, tt.status, tt.errorCode, tt.header)
			// A budget shorter than any Retry-After here: the adapter
			// answers at once instead of sleeping past it.
			ctx, cancel := tokens.WithBudget(t.Context(), 2*time.Second)
			defer cancel()
			_, err := v.Put(ctx, "s", tokens.NewSecret(tokenValue), stored1(t, "t1", wsID(t, "rg", "ws-one")))
			got := unwrap(t, err)
			if d := cmp.Diff(tt.want, *got, cmpopts.IgnoreFields(tokens.Error{}, "Err")); d != "" {
				t.Errorf("Put (-want +got):\n%s", d)
			}
			if got.Err == nil {
				t.Error("the cause is not kept for the log")
			}
			for _, s := range []string{err.Error(), got.Message} {
				if strings.Contains(s, tokenValue) || strings.Contains(s, "fake_token") {
					t.Errorf("the error shows the token value or the access token: %s", s)
				}
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d authorized calls, want 1 (no retry that the budget cannot fit)", n)
			}
		})
	}
}

// TestErrorTranslationNamesTheOperation: the refusal says which operation
// failed, for each method that calls Key Vault.
func TestErrorTranslationNamesTheOperation(t *testing.T) {
	t.Parallel()
	ws := wsID(t, "rg", "ws-one")
	st := stored1(t, "t1", ws)
	st.Name, st.Version = "s", "0123456789abcdef0123456789abcdef"
	for _, tt := range []struct {
		op   string
		call func(ctx context.Context, v *Vault, base string) error
	}{
		{"write secret s", func(ctx context.Context, v *Vault, _ string) error {
			_, err := v.Put(ctx, "s", tokens.NewSecret(tokenValue), st)
			return err
		}},
		{"list versions of s", func(ctx context.Context, v *Vault, _ string) error {
			_, err := v.Claim(ctx, "s", ws)
			return err
		}},
		{"list versions of s", func(ctx context.Context, v *Vault, _ string) error {
			_, _, err := v.Find(ctx, "s", "t1")
			return err
		}},
		{"list versions of s", func(ctx context.Context, v *Vault, base string) error {
			_, err := v.Get(ctx, base+"/secrets/s/"+st.Version)
			return err
		}},
		{"disable secret s", func(ctx context.Context, v *Vault, _ string) error { return v.Disable(ctx, st) }},
		{"list secrets", func(ctx context.Context, v *Vault, _ string) error {
			_, err := v.Managed(ctx)
			return err
		}},
	} {
		v, _, base := failingAt(t, http.StatusForbidden, "Forbidden", nil)
		err := tt.call(t.Context(), v, base)
		want := tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceKeyVault, PermissionDenied: true,
			Message: "Key Vault refused to " + tt.op + " (Forbidden): give the function's identity Key Vault Secrets Officer on the vault"}
		if d := cmp.Diff(want, *unwrap(t, err), cmpopts.IgnoreFields(tokens.Error{}, "Err")); d != "" {
			t.Errorf("%s (-want +got):\n%s", tt.op, d)
		}
	}
}
