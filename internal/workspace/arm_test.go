package workspace

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/databricks/armdatabricks"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/databricks/armdatabricks/fake"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

const (
	sub    = "11111111-2222-3333-4444-555555555555"
	wsText = "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws-one"
)

func parse(t *testing.T, s string) tokens.WorkspaceID {
	t.Helper()
	id, err := tokens.ParseWorkspaceID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func succeeded(id, url string) armdatabricks.Workspace {
	return armdatabricks.Workspace{ID: &id, Properties: &armdatabricks.WorkspaceProperties{
		ProvisioningState: ptr(armdatabricks.ProvisioningStateSucceeded), WorkspaceURL: &url}}
}

func ptr[T any](v T) *T { return &v }

// fakeWorkspaces serves the workspace read through armdatabricks/fake: answer
// says what ARM replies, and calls counts the reads.
type fakeWorkspaces struct {
	calls  atomic.Int64
	answer func(rg, name string) (armdatabricks.Workspace, int, string) // workspace, or an error status and code
}

func (f *fakeWorkspaces) resolver(t *testing.T, opts Options) *Resolver {
	t.Helper()
	srv := &fake.WorkspacesServer{Get: func(_ context.Context, rg, name string, _ *armdatabricks.WorkspacesClientGetOptions) (resp azfake.Responder[armdatabricks.WorkspacesClientGetResponse], errResp azfake.ErrorResponder) {
		f.calls.Add(1)
		ws, status, code := f.answer(rg, name)
		if status != 0 {
			errResp.SetResponseError(status, code)
			return
		}
		resp.SetResponse(http.StatusOK, armdatabricks.WorkspacesClientGetResponse{Workspace: ws}, nil)
		return
	}}
	hosts, err := allowlist.ParseHosts("*.azuredatabricks.net")
	if err != nil {
		t.Fatal(err)
	}
	opts.Hosts = hosts
	opts.ARMEndpoint, opts.ManagementAudience = "https://management.azure.com", "https://management.core.windows.net/"
	opts.ClientOptions.Transport = fake.NewWorkspacesServerTransport(srv)
	return New(&azfake.TokenCredential{}, opts)
}

func TestResolve(t *testing.T) {
	t.Parallel()
	const notReady = 45 * time.Second
	id := parse(t, wsText)
	state := func(s armdatabricks.ProvisioningState, url *string) func(string, string) (armdatabricks.Workspace, int, string) {
		return func(string, string) (armdatabricks.Workspace, int, string) {
			return armdatabricks.Workspace{ID: ptr(wsText), Properties: &armdatabricks.WorkspaceProperties{ProvisioningState: &s, WorkspaceURL: url}}, 0, ""
		}
	}
	refusal := func(status int, code string) func(string, string) (armdatabricks.Workspace, int, string) {
		return func(string, string) (armdatabricks.Workspace, int, string) {
			return armdatabricks.Workspace{}, status, code
		}
	}
	at := func(url string) func(string, string) (armdatabricks.Workspace, int, string) {
		return func(string, string) (armdatabricks.Workspace, int, string) { return succeeded(wsText, url), 0, "" }
	}
	tests := []struct {
		name    string
		caller  string // the id as the caller wrote it; wsText when empty
		answer  func(rg, name string) (armdatabricks.Workspace, int, string)
		want    tokens.Workspace
		wantErr *tokens.Error // Err ignored
	}{
		{name: "ready", answer: at("adb-1234.5.azuredatabricks.net"),
			want: tokens.Workspace{ID: id, URL: "https://adb-1234.5.azuredatabricks.net"}},
		{name: "ARM's casing of the id and host wins", caller: strings.ToUpper(wsText[:52]) + wsText[52:],
			answer: at("ADB-1234.5.AzureDatabricks.net/"),
			want:   tokens.Workspace{ID: id, URL: "https://adb-1234.5.azuredatabricks.net"}},
		{name: "an id ARM returns for another workspace is ignored",
			answer: func(string, string) (armdatabricks.Workspace, int, string) {
				return succeeded(strings.Replace(wsText, "ws-one", "ws-two", 1), "adb-1.2.azuredatabricks.net"), 0, ""
			},
			want: tokens.Workspace{ID: id, URL: "https://adb-1.2.azuredatabricks.net"}},
		{name: "404", answer: refusal(http.StatusNotFound, "ResourceNotFound"),
			wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotFound, Target: "workspaceResourceId", Upstream: upstream.ServiceARM,
				Message: "Azure Resource Manager has no Databricks workspace " + wsText + " (ResourceNotFound)"}},
		{name: "403", answer: refusal(http.StatusForbidden, "AuthorizationFailed"),
			wantErr: &tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceARM, PermissionDenied: true,
				Message: "Azure Resource Manager refused to read workspace ws-one (AuthorizationFailed): give the function's identity Reader (Microsoft.Databricks/workspaces/read) or Contributor on it"}},
		{name: "401", answer: refusal(http.StatusUnauthorized, "InvalidAuthenticationToken"),
			wantErr: &tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceARM, PermissionDenied: true,
				Message: "Azure Resource Manager did not accept the function's token (InvalidAuthenticationToken)"}},
		{name: "400", answer: refusal(http.StatusBadRequest, "InvalidApiVersionParameter"),
			wantErr: &tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceARM, Message: "Azure Resource Manager refused the workspace lookup"}},
		{name: "503", answer: refusal(http.StatusServiceUnavailable, "ServiceUnavailable"),
			wantErr: &tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceARM, RetryAfter: upstream.DefaultRetryAfter,
				Message: "Azure Resource Manager is throttling or unavailable and did not recover within the retry budget (UPSTREAM_RETRY_BUDGET)"}},
		{name: "still provisioning", answer: state(armdatabricks.ProvisioningStateAccepted, nil),
			wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Target: "workspaceResourceId", RetryAfter: notReady,
				Message: "workspace ws-one is not ready yet (provisioning state Accepted)"}},
		{name: "updating, with a URL", answer: state(armdatabricks.ProvisioningStateUpdating, ptr("adb-1.2.azuredatabricks.net")),
			wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Target: "workspaceResourceId", RetryAfter: notReady,
				Message: "workspace ws-one is not ready yet (provisioning state Updating)"}},
		{name: "succeeded without a URL", answer: state(armdatabricks.ProvisioningStateSucceeded, ptr("")),
			wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Target: "workspaceResourceId", RetryAfter: notReady,
				Message: "workspace ws-one is not ready yet (provisioning state Succeeded)"}},
		{name: "no properties", answer: func(string, string) (armdatabricks.Workspace, int, string) {
			return armdatabricks.Workspace{ID: ptr(wsText)}, 0, ""
		}, wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Target: "workspaceResourceId", RetryAfter: notReady,
			Message: "workspace ws-one is not ready yet (provisioning state unknown)"}},
		{name: "host outside the allow-list", answer: at("adb-1.2.evil.example"),
			wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotAllowed, Target: "workspaceResourceId",
				Message: "workspace host adb-1.2.evil.example is not in DATABRICKS_ALLOWED_HOSTS"}},
		{name: "a subdomain trick", answer: at("adb-1.2.azuredatabricks.net.evil.example"),
			wantErr: &tokens.Error{Code: tokens.CodeWorkspaceNotAllowed, Target: "workspaceResourceId",
				Message: "workspace host adb-1.2.azuredatabricks.net.evil.example is not in DATABRICKS_ALLOWED_HOSTS"}},
		{name: "a URL with a path", answer: at("adb-1.2.azuredatabricks.net/o/1"),
			wantErr: &tokens.Error{Code: tokens.CodeUpstreamError, Message: "Azure Resource Manager returned an unusable workspaceUrl for ws-one"}},
		{name: "plain http", answer: at("http://adb-1.2.azuredatabricks.net"),
			wantErr: &tokens.Error{Code: tokens.CodeUpstreamError, Message: "Azure Resource Manager returned an unusable workspaceUrl for ws-one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeWorkspaces{answer: tt.answer}
			r := f.resolver(t, Options{NotReadyRetryAfter: notReady})
			caller := id
			if tt.caller != "" {
				caller = parse(t, tt.caller)
			}
			got, err := r.Resolve(t.Context(), caller)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tt.want, got); d != "" || got.ID.String() != wsText {
					t.Errorf("Resolve (-want +got):\n%s\nid %s", d, got.ID)
				}
				return
			}
			if d := cmp.Diff(tt.wantErr, tokens.AsError(err), cmpopts.IgnoreFields(tokens.Error{}, "Err")); d != "" {
				t.Errorf("Resolve error (-want +got):\n%s", d)
			}
			if got != (tokens.Workspace{}) {
				t.Errorf("a failed Resolve returned %+v", got)
			}
		})
	}
}

// TestSubscriptionAllowList: a subscription outside the allow-list is
// refused before anything goes to ARM; one inside, in any casing, resolves.
func TestSubscriptionAllowList(t *testing.T) {
	t.Parallel()
	subs, err := allowlist.ParseSubscriptions(strings.ToUpper(sub))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWorkspaces{answer: func(string, string) (armdatabricks.Workspace, int, string) {
		return succeeded(wsText, "adb-1.2.azuredatabricks.net"), 0, ""
	}}
	r := f.resolver(t, Options{Subscriptions: subs})
	other := "99999999-2222-3333-4444-555555555555"
	_, err = r.Resolve(t.Context(), parse(t, strings.Replace(wsText, sub, other, 1)))
	want := &tokens.Error{Code: tokens.CodeWorkspaceNotAllowed, Target: "workspaceResourceId",
		Message: "subscription " + other + " is not in DATABRICKS_ALLOWED_SUBSCRIPTIONS"}
	if d := cmp.Diff(want, tokens.AsError(err)); d != "" {
		t.Errorf("Resolve (-want +got):\n%s", d)
	}
	if n := f.calls.Load(); n != 0 {
		t.Errorf("ARM was asked %d times about a subscription outside the allow-list", n)
	}
	if _, err := r.Resolve(t.Context(), parse(t, wsText)); err != nil {
		t.Errorf("an allowed subscription: %v", err)
	}
}

// TestCache: a resolved URL is reused until the TTL ends; failures are
// never kept, so the next call asks ARM again.
func TestCache(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var ready atomic.Bool
	f := &fakeWorkspaces{answer: func(_, name string) (armdatabricks.Workspace, int, string) {
		if name == "ws-one" || ready.Load() {
			return succeeded("/subscriptions/"+sub+"/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/"+name, "adb-1."+name+".azuredatabricks.net"), 0, ""
		}
		return armdatabricks.Workspace{}, http.StatusNotFound, "ResourceNotFound"
	}}
	r := f.resolver(t, Options{TTL: time.Hour, Now: clock})
	one, two := parse(t, wsText), parse(t, strings.Replace(wsText, "ws-one", "ws-two", 1))
	steps := []struct {
		name      string
		before    func()
		id        tokens.WorkspaceID
		wantCalls int64 // ARM reads so far
		wantCode  tokens.Code
	}{
		{"first lookup", nil, one, 1, ""},
		{"cached", nil, one, 1, ""},
		{"cached, the id in another casing", nil, parse(t, strings.Replace(wsText, "rg", "RG", 1)), 1, ""},
		{"still cached just before the TTL", func() { advance(time.Hour - time.Second) }, one, 1, ""},
		{"looked up again after it", func() { advance(time.Second) }, one, 2, ""},
		{"not found", nil, two, 3, tokens.CodeWorkspaceNotFound},
		{"not found is not kept", func() { ready.Store(true) }, two, 4, ""},
		{"and then cached", nil, two, 4, ""},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		_, err := r.Resolve(t.Context(), s.id)
		if got := tokens.CodeOf(err); got != s.wantCode {
			t.Errorf("%s: %v; want code %q", s.name, err, s.wantCode)
		}
		if n := f.calls.Load(); n != s.wantCalls {
			t.Errorf("%s: %d ARM reads so far, want %d", s.name, n, s.wantCalls)
		}
	}
}

// TestConcurrentLookupsShareOneRead: callers that arrive while a lookup
// runs wait for it instead of asking ARM again; one that gives up waiting
// is told ARM is unavailable.
func TestConcurrentLookupsShareOneRead(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	f := &fakeWorkspaces{answer: func(string, string) (armdatabricks.Workspace, int, string) {
		started <- struct{}{}
		<-release
		return succeeded(wsText, "adb-1.2.azuredatabricks.net"), 0, ""
	}}
	r := f.resolver(t, Options{})
	id := parse(t, wsText)
	const n = 8
	var wg sync.WaitGroup
	results := make([]string, n)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ws, err := r.Resolve(t.Context(), id)
		results[0] = fmt.Sprint(ws.URL, err)
	}()
	<-started
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, err := r.Resolve(t.Context(), id)
			results[i] = fmt.Sprint(ws.URL, err)
		}()
	}
	// One more that stops waiting.
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := r.Resolve(ctx, id)
		gaveUp <- err
	}()
	for {
		if _, _, flights := r.retained(); flights == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; tokens.CodeOf(err) != tokens.CodeUpstreamUnavailable {
		t.Errorf("a caller that gave up waiting: %v; want UpstreamUnavailable", err)
	}
	time.Sleep(10 * time.Millisecond) // let the joiners reach the flight
	close(release)
	wg.Wait()
	for i, got := range results {
		if got != "https://adb-1.2.azuredatabricks.net<nil>" {
			t.Errorf("caller %d: %s", i, got)
		}
	}
	if c := f.calls.Load(); c != 1 {
		t.Errorf("%d concurrent callers made %d ARM reads, want 1", n, c)
	}
}

// scopedCred hands out tokens that name their scope.
type scopedCred struct{}

func (scopedCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "entra-token-for-" + strings.Join(o.Scopes, " "), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestARMOverTLS: the read goes to the configured endpoint with the ARM
// token for the management audience; throttling past the budget comes
// back at once with ARM's Retry-After.
func TestARMOverTLS(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []*http.Request
	throttle := atomic.Bool{}
	arm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(r.Context()))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if throttle.Load() {
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"code":"TooManyRequests","message":"slow down"}}`)
			return
		}
		fmt.Fprintf(w, `{"id":%q,"properties":{"provisioningState":"Succeeded","workspaceUrl":"adb-1.2.azuredatabricks.net"}}`, wsText)
	}))
	defer arm.Close()
	hosts, _ := allowlist.ParseHosts("*.azuredatabricks.net")
	r := New(scopedCred{}, Options{ARMEndpoint: arm.URL, ManagementAudience: "https://management.core.windows.net/", Hosts: hosts,
		ClientOptions: policy.ClientOptions{Transport: arm.Client()}})
	if _, err := r.Resolve(t.Context(), parse(t, wsText)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	req := seen[0]
	mu.Unlock()
	if req.Method != http.MethodGet || req.URL.Path != wsText || req.URL.Query().Get("api-version") == "" {
		t.Errorf("ARM read %s %s", req.Method, req.URL)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer entra-token-for-https://management.core.windows.net//.default" {
		t.Errorf("Authorization = %q", got)
	}

	throttle.Store(true)
	ctx, cancel := tokens.WithBudget(t.Context(), 2*time.Second)
	defer cancel()
	_, err := r.Resolve(ctx, parse(t, strings.Replace(wsText, "ws-one", "ws-two", 1)))
	want := &tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceARM, RetryAfter: 20 * time.Second,
		Message: "Azure Resource Manager is throttling or unavailable and did not recover within the retry budget (UPSTREAM_RETRY_BUDGET)"}
	if d := cmp.Diff(want, tokens.AsError(err), cmpopts.IgnoreFields(tokens.Error{}, "Err")); d != "" {
		t.Errorf("throttled (-want +got):\n%s", d)
	}
	if strings.Contains(err.Error(), "entra-token-for") {
		t.Errorf("the error shows the ARM token: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Errorf("%d ARM calls, want 2 (no retry the budget cannot fit)", len(seen))
	}
}

// A lookup whose leader's caller goes away says nothing of the workspace:
// the callers that joined it look again, and get it.
func TestJoinersOutliveTheLeadersCaller(t *testing.T) {
	t.Parallel()
	leaderCtx, leave := context.WithCancel(t.Context())
	f := &fakeWorkspaces{}
	f.answer = func(string, string) (armdatabricks.Workspace, int, string) {
		if f.calls.Load() == 1 {
			<-leaderCtx.Done() // the leader's read is slow, until its caller has gone
			return armdatabricks.Workspace{}, http.StatusServiceUnavailable, "ServiceUnavailable"
		}
		return succeeded(wsText, "adb-1.2.azuredatabricks.net"), 0, ""
	}
	r := f.resolver(t, Options{})
	id := parse(t, wsText)
	leaderDone := make(chan error, 1)
	go func() {
		_, err := r.Resolve(leaderCtx, id)
		leaderDone <- err
	}()
	for f.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	joined := make(chan string, 1)
	go func() {
		ws, err := r.Resolve(t.Context(), id)
		joined <- fmt.Sprint(ws.URL, err)
	}()
	time.Sleep(10 * time.Millisecond) // let it join the flight
	leave()
	<-leaderDone
	if got := <-joined; got != "https://adb-1.2.azuredatabricks.net<nil>" {
		t.Errorf("the caller that joined got %s; want the workspace", got)
	}
}
