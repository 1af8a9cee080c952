package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

type countingCred struct {
	calls    atomic.Int64
	lifetime time.Duration
	now      func() time.Time
}

func (c *countingCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := c.calls.Add(1)
	time.Sleep(5 * time.Millisecond) // concurrent callers must wait for this one fetch
	return azcore.AccessToken{Token: o.Scopes[0] + "-" + string(rune('a'+n)), ExpiresOn: c.now().Add(c.lifetime)}, nil
}

func TestCacheSharesAndRenewsEarly(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cred := &countingCred{lifetime: time.Hour, now: clock}
	c := NewCache(cred, clock)
	opts := policy.TokenRequestOptions{Scopes: []string{"2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"}}

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.GetToken(context.Background(), opts); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := cred.calls.Load(); n != 1 {
		t.Fatalf("%d Entra requests for 20 concurrent callers; want 1", n)
	}
	// Another scope is another token.
	if _, err := c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"https://management.core.windows.net//.default"}}); err != nil || cred.calls.Load() != 2 {
		t.Fatalf("second scope: %v, %d calls", err, cred.calls.Load())
	}
	// Ten minutes before expiry the token is still served; five minutes before, it is renewed
	// (Databricks refuses tokens with 30 s or less to live).
	mu.Lock()
	now = now.Add(50 * time.Minute)
	mu.Unlock()
	if _, _ = c.GetToken(context.Background(), opts); cred.calls.Load() != 2 {
		t.Errorf("renewed too early")
	}
	mu.Lock()
	now = now.Add(6 * time.Minute)
	mu.Unlock()
	tok, _ := c.GetToken(context.Background(), opts)
	if cred.calls.Load() != 3 || tok.ExpiresOn.Sub(clock()) < 59*time.Minute {
		t.Errorf("not renewed with under 5 minutes left (calls %d)", cred.calls.Load())
	}
}

// A claims challenge (continuous access evaluation) names claims the
// upstream chose; each such token is fetched for that one retry and is
// never served from the cache, so it must not be kept either.
func TestClaimsChallengesAreNotKept(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	cred := &countingCred{lifetime: time.Hour, now: clock}
	c := NewCache(cred, clock)
	scopes := []string{"https://management.azure.com/.default"}
	for i := range 200 {
		claims := fmt.Sprintf(`{"access_token":{"nbf":{"essential":true,"value":"%d"}}}`, i)
		if _, err := c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: scopes, Claims: claims}); err != nil {
			t.Fatal(err)
		}
	}
	if n := cred.calls.Load(); n != 200 {
		t.Errorf("%d Entra requests for 200 claims challenges; want 200 (never from the cache)", n)
	}
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("the cache keeps %d entries after 200 claims challenges; want 0", n)
	}
	// The plain token is still cached as before.
	for range 2 {
		if _, err := c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: scopes}); err != nil {
			t.Fatal(err)
		}
	}
	if n := cred.calls.Load(); n != 201 {
		t.Errorf("%d Entra requests; want 201", n)
	}
}

// TestAdviceNamesTheChainInUse proves the advice attached to a failed token
// request names the identity the settings select, and sends a local user
// with nothing configured to `az login`.
func TestAdviceNamesTheChainInUse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"nothing set, locally", nil, []string{"DefaultAzureCredential", "az login", "AZURE_TOKEN_CREDENTIALS=AzureCLICredential", "managed identity"}},
		{"the developer chain", map[string]string{"AZURE_TOKEN_CREDENTIALS": "dev"}, []string{"Azure CLI", "az login"}},
		{"Azure, user-assigned identity", map[string]string{"WEBSITE_SITE_NAME": "func-x", "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential", "AZURE_CLIENT_ID": "id"}, []string{"managed identity", "AZURE_CLIENT_ID"}},
		{"a service principal", map[string]string{"AZURE_CLIENT_SECRET": "s3cr3t-value", "AZURE_CLIENT_ID": "id", "AZURE_TENANT_ID": "t"}, []string{"service principal", "AZURE_CLIENT_SECRET"}},
	}
	for _, tt := range tests {
		got := Advice(func(k string) string { return tt.env[k] })
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: advice %q lacks %q", tt.name, got, w)
			}
		}
		if strings.Contains(got, "s3cr3t") {
			t.Errorf("%s: advice %q holds the client secret", tt.name, got)
		}
	}
}

type failingCred struct{ err error }

func (f failingCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, f.err
}

// TestCacheAttachesAdvice proves a failure keeps azidentity's error (for
// errors.As) and carries the advice.
func TestCacheAttachesAdvice(t *testing.T) {
	t.Parallel()
	cause := errors.New("DefaultAzureCredential: failed to acquire a token")
	c := NewCache(failingCred{cause}, time.Now)
	c.advice = Advice(func(string) string { return "" })
	_, err := c.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{"s"}})
	var ce *CredentialError
	if !errors.As(err, &ce) || !errors.Is(err, cause) || !strings.Contains(ce.Advice(), "az login") {
		t.Fatalf("error %v (%T): want a CredentialError wrapping the cause, advising az login", err, err)
	}
}

// blockingCred answers only when released.
type blockingCred struct{ release chan struct{} }

func (b blockingCred) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	select {
	case <-b.release:
		return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
	case <-ctx.Done():
		return azcore.AccessToken{}, ctx.Err()
	}
}

// A caller waiting for another's fetch of the same token stops waiting
// when its own context ends: one slow fetch (the timer's, with minutes of
// budget) must not hold a create with seconds of budget.
func TestWaiterStopsAtItsOwnDeadline(t *testing.T) {
	t.Parallel()
	cred := blockingCred{release: make(chan struct{})}
	c := NewCache(cred, time.Now)
	opts := policy.TokenRequestOptions{Scopes: []string{"x/.default"}}
	started := make(chan struct{})
	go func() {
		close(started)
		_, _ = c.GetToken(context.Background(), opts) // the slow fetch
	}()
	<-started
	time.Sleep(10 * time.Millisecond) // let it take the turn
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.GetToken(ctx, opts); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with an ended context: %v; want context.Canceled", err)
	}
	close(cred.release)
}
