package databricks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

const (
	wsText     = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws-one"
	tokenValue = "dapi0123456789abcdef0123456789abcdef"
)

// scopedCred hands out a token that names its scope, so a test can tell
// which token went into which header.
type scopedCred struct{}

func (scopedCred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "entra-token-for-" + strings.Join(o.Scopes, " "), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// answer is one scripted reply of the workspace.
type answer struct {
	status int
	header http.Header
	body   string
}

// call is what reached the workspace.
type call struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// workspaceAPI is a Databricks workspace over TLS that replies with its
// script in order (the last answer repeats) and records every call.
type workspaceAPI struct {
	srv     *httptest.Server
	mu      sync.Mutex
	script  []answer
	calls   []call
	timeout time.Duration
}

func newWorkspaceAPI(t *testing.T, script ...answer) *workspaceAPI {
	t.Helper()
	w := &workspaceAPI{script: script}
	w.srv = httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.calls = append(w.calls, call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(b)})
		a := w.script[0]
		if len(w.script) > 1 {
			w.script = w.script[1:]
		}
		w.mu.Unlock()
		for k, v := range a.header {
			rw.Header()[k] = v
		}
		if rw.Header().Get("Content-Type") == "" {
			rw.Header().Set("Content-Type", "application/json")
		}
		rw.WriteHeader(a.status)
		fmt.Fprint(rw, a.body)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *workspaceAPI) client() *Client {
	return New(scopedCred{}, Options{DatabricksScope: "dbx/.default", ManagementScope: "mgmt/.default",
		ClientOptions: policy.ClientOptions{Transport: w.srv.Client()}})
}

func (w *workspaceAPI) workspace(t *testing.T) tokens.Workspace {
	t.Helper()
	id, err := tokens.ParseWorkspaceID(wsText)
	if err != nil {
		t.Fatal(err)
	}
	return tokens.Workspace{ID: id, URL: w.srv.URL}
}

func (w *workspaceAPI) recorded() []call {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]call(nil), w.calls...)
}

func ok(body string) answer { return answer{status: http.StatusOK, body: body} }

// budget is an invocation's retry budget, shorter than every Retry-After
// the tests send, so the client answers at once instead of waiting.
func budget(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := tokens.WithBudget(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestEveryCallCarriesTheHeaders: each Token API call sends the bearer
// token for the Databricks audience, the management token for ARM's and
// the workspace resource id, with the documented method, path and body.
func TestEveryCallCarriesTheHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		do   func(context.Context, *Client, tokens.Workspace) error
		want call
	}{
		{"create", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.CreateToken(ctx, ws, "[dtb:req:r1] nightly ETL", 90*time.Minute, tokens.Scopes{})
			return err
		}, call{Method: "POST", Path: "/api/2.0/token/create", Body: `{"comment":"[dtb:req:r1] nightly ETL","lifetime_seconds":5400}`}},
		{"list", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.ListTokens(ctx, ws)
			return err
		}, call{Method: "GET", Path: "/api/2.0/token/list"}},
		{"delete", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.DeleteToken(ctx, ws, "tok-123")
			return err
		}, call{Method: "POST", Path: "/api/2.0/token/delete", Body: `{"token_id":"tok-123"}`}},
		{"policy", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.Policy(ctx, ws)
			return err
		}, call{Method: "GET", Path: "/api/2.0/workspace-conf", Query: "keys=enableTokensConfig%2CmaxTokenLifetimeDays"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"token_value":"` + tokenValue + `","token_info":{"token_id":"t1","creation_time":1,"expiry_time":2},"token_infos":[]}`
			if tt.name == "policy" {
				body = `{"enableTokensConfig":"true"}`
			}
			w := newWorkspaceAPI(t, ok(body))
			if err := tt.do(t.Context(), w.client(), w.workspace(t)); err != nil {
				t.Fatal(err)
			}
			calls := w.recorded()
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			got := calls[0]
			for k, want := range map[string]string{
				"Authorization":           "Bearer entra-token-for-dbx/.default",
				HeaderManagementToken:     "entra-token-for-mgmt/.default",
				HeaderWorkspaceResourceID: wsText,
				"Accept":                  "application/json",
			} {
				if v := got.Header.Get(k); v != want {
					t.Errorf("header %s = %q, want %q", k, v, want)
				}
			}
			if d := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(call{}, "Header")); d != "" {
				t.Errorf("request (-want +got):\n%s", d)
			}
		})
	}
}

func TestCreateToken(t *testing.T) {
	t.Parallel()
	w := newWorkspaceAPI(t, ok(`{"token_value":"`+tokenValue+`","token_info":{"token_id":"t1","creation_time":1764324000123,"expiry_time":1764327600123,"comment":"c"}}`),
		ok(`{"token_value":"`+tokenValue+`","token_info":{"token_id":"t2","creation_time":1764324000000,"expiry_time":-1,"comment":"c"}}`))
	c, ws := w.client(), w.workspace(t)
	created := time.UnixMilli(1764324000123).UTC()
	for _, want := range []tokens.Issued{
		{Token: tokens.Token{ID: "t1", Comment: "c", CreatedAt: created, ExpiresAt: created.Add(time.Hour)}, Value: tokens.NewSecret(tokenValue)},
		{Token: tokens.Token{ID: "t2", Comment: "c", CreatedAt: time.UnixMilli(1764324000000).UTC()}, Value: tokens.NewSecret(tokenValue)},
	} {
		got, err := c.CreateToken(t.Context(), ws, "c", time.Hour, tokens.Scopes{})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want.Token, got.Token); d != "" || got.Value.Reveal() != tokenValue {
			t.Errorf("CreateToken (-want +got):\n%s", d)
		}
	}
	// Databricks reads 0 as its default lifetime, so less than a second never goes out.
	if _, err := c.CreateToken(t.Context(), ws, "c", 999*time.Millisecond, tokens.Scopes{}); tokens.CodeOf(err) != tokens.CodeInvalidRequest {
		t.Errorf("a sub-second lifetime: %v; want InvalidRequest", err)
	}
	if n := len(w.recorded()); n != 2 {
		t.Errorf("%d creates reached the workspace, want 2", n)
	}
}

// TestCreateErrors: how each refusal of token/create reaches the caller,
// and which ones may have created a token anyway (ambiguous, so the
// service reconciles by listing instead of creating a second one).
func TestCreateErrors(t *testing.T) {
	t.Parallel()
	html403 := "<html>\n<head><title>Error 403</title></head><body><h2>HTTP ERROR 403</h2><pre>Error 403 Invalid access token.</pre></body></html>"
	tests := []struct {
		name       string
		budget     time.Duration
		script     []answer
		want       tokens.Error // Err ignored
		msgHas     string
		ambiguous  bool
		wantCalls  int
		wantResult bool // the create succeeded after all
	}{
		{name: "PERMISSION_DENIED without CAN USE", script: []answer{{status: 403, body: `{"error_code":"PERMISSION_DENIED","message":"User 42 does not have permission to use tokens."}`}},
			want: tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks, PermissionDenied: true}, msgHas: "CAN USE", wantCalls: 1},
		{name: "PERMISSION_DENIED", script: []answer{{status: 403, body: `{"error_code":"PERMISSION_DENIED","message":"no"}`}},
			want: tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks, PermissionDenied: true,
				Message: "Azure Databricks refused: HTTP 403 PERMISSION_DENIED: no"}, wantCalls: 1},
		{name: "QUOTA_EXCEEDED", script: []answer{{status: 400, body: `{"error_code":"QUOTA_EXCEEDED","message":"Cannot create more than 600 tokens."}`}},
			want: tokens.Error{Code: tokens.CodeTokenQuotaExceeded, Upstream: upstream.ServiceDatabricks,
				Message: "the function's identity already holds the maximum number of live tokens in this workspace (600): revoke some first"}, wantCalls: 1},
		{name: "HTML 403 from the gateway", script: []answer{{status: 403, header: http.Header{"Content-Type": {"text/html"}}, body: html403}},
			want: tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks, PermissionDenied: true,
				Message: "Azure Databricks did not accept the function's Entra token (is the identity a member of the workspace, or does it hold Contributor on it?). Databricks said: HTTP 403: Error 403 Invalid access token."},
			wantCalls: 1},
		{name: "401", script: []answer{{status: 401, body: `{"error_code":"UNAUTHENTICATED","message":"Unauthorized"}`}},
			want: tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks, PermissionDenied: true}, msgHas: "Entra token", wantCalls: 1},
		{name: "not yet a member", script: []answer{{status: 400, body: `{"error_code":"INVALID_PARAMETER_VALUE","message":"Management API token must be provided for service principal admin user login"}`}},
			want: tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks, PermissionDenied: true}, msgHas: "Contributor on the workspace resource", wantCalls: 1},
		{name: "lifetime over the workspace's maximum", script: []answer{{status: 400, body: `{"error_code":"INVALID_PARAMETER_VALUE","message":"lifetime too long"}`}},
			want: tokens.Error{Code: tokens.CodeInvalidRequest, Upstream: upstream.ServiceDatabricks,
				Message: "Azure Databricks rejected the request: HTTP 400 INVALID_PARAMETER_VALUE: lifetime too long"}, wantCalls: 1},
		{name: "429 with a Retry-After past the budget", budget: 2 * time.Second, script: []answer{{status: 429, header: http.Header{"Retry-After": {"7"}}, body: `{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow down"}`}},
			want: tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: 7 * time.Second}, wantCalls: 1},
		{name: "429 with a short Retry-After, then created", budget: 2 * time.Second,
			script:    []answer{{status: 429, header: http.Header{"Retry-After-Ms": {"10"}}}, ok(`{"token_value":"` + tokenValue + `","token_info":{"token_id":"t1","creation_time":1,"expiry_time":-1}}`)},
			wantCalls: 2, wantResult: true},
		// Refused every time, so nothing was created: not ambiguous (the
		// service would otherwise list the throttled workspace three more
		// times over three seconds looking for a token that cannot exist).
		{name: "429 without Retry-After until the budget ends", budget: 50 * time.Millisecond, script: []answer{{status: 429}},
			want: tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: upstream.DefaultRetryAfter}, wantCalls: 1},
		{name: "500", script: []answer{{status: 500, body: `{"error_code":"INTERNAL_ERROR","message":"oops"}`}},
			want: tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: upstream.DefaultRetryAfter}, ambiguous: true, wantCalls: 1},
		{name: "503 with Retry-After", budget: 2 * time.Second, script: []answer{{status: 503, header: http.Header{"Retry-After": {"9"}}, body: "Service Unavailable"}},
			want: tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: 9 * time.Second}, ambiguous: true, wantCalls: 1},
		{name: "unreadable 200", script: []answer{ok(`{"token_value":"` + tokenValue + `","token_info":`)},
			want: tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: upstream.DefaultRetryAfter}, ambiguous: true, wantCalls: 1},
		{name: "200 without a value", script: []answer{ok(`{"token_info":{"token_id":"t1"}}`)},
			want: tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: upstream.DefaultRetryAfter}, ambiguous: true, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorkspaceAPI(t, tt.script...)
			ctx := t.Context()
			if tt.budget > 0 {
				ctx = budget(t, tt.budget)
			}
			issued, err := w.client().CreateToken(ctx, w.workspace(t), "c", time.Hour, tokens.Scopes{})
			if n := len(w.recorded()); n != tt.wantCalls {
				t.Errorf("%d creates reached the workspace, want %d", n, tt.wantCalls)
			}
			if tt.wantResult {
				if err != nil || issued.ID != "t1" {
					t.Fatalf("CreateToken = %+v, %v", issued.Token, err)
				}
				return
			}
			got, isErr := errors.AsType[*tokens.Error](err)
			if !isErr {
				t.Fatalf("CreateToken error %v (%T), want a *tokens.Error", err, err)
			}
			ignore := []string{"Err"}
			if tt.want.Message == "" {
				ignore = append(ignore, "Message")
			}
			if d := cmp.Diff(tt.want, *got, cmpopts.IgnoreFields(tokens.Error{}, ignore...)); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
			if !strings.Contains(got.Message, tt.msgHas) {
				t.Errorf("message %q does not say %q", got.Message, tt.msgHas)
			}
			if a := errors.Is(err, tokens.ErrAmbiguous); a != tt.ambiguous {
				t.Errorf("ambiguous = %v, want %v", a, tt.ambiguous)
			}
			for _, s := range []string{err.Error(), got.Message} {
				if strings.Contains(s, tokenValue) || strings.Contains(s, "entra-token-for") {
					t.Errorf("the error shows the token value or an access token: %s", s)
				}
			}
		})
	}
}

func TestListTokens(t *testing.T) {
	t.Parallel()
	w := newWorkspaceAPI(t, ok(`{"token_infos":[
		{"token_id":"t1","creation_time":1764324000123,"expiry_time":1764327600000,"comment":"[dtb:req:r1] etl"},
		{"token_id":"t2","creation_time":1764324000000,"expiry_time":-1,"comment":"forever"}]}`),
		ok(`{}`))
	c, ws := w.client(), w.workspace(t)
	got, err := c.ListTokens(t.Context(), ws)
	if err != nil {
		t.Fatal(err)
	}
	want := []tokens.Token{
		{ID: "t1", Comment: "[dtb:req:r1] etl", CreatedAt: time.UnixMilli(1764324000123).UTC(), ExpiresAt: time.UnixMilli(1764327600000).UTC()},
		{ID: "t2", Comment: "forever", CreatedAt: time.UnixMilli(1764324000000).UTC()},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ListTokens (-want +got):\n%s", d)
	}
	if got, err := c.ListTokens(t.Context(), ws); err != nil || got == nil || len(got) != 0 {
		t.Errorf("an empty list = %#v, %v; want an empty, non-nil list", got, err)
	}
}

// TestReadErrors: list, delete and workspace-conf refusals, translated the
// same way and naming the operation.
func TestReadErrors(t *testing.T) {
	t.Parallel()
	ops := map[string]func(context.Context, *Client, tokens.Workspace) error{
		"list tokens": func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.ListTokens(ctx, ws)
			return err
		},
		"revoke token": func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.DeleteToken(ctx, ws, "t1")
			return err
		},
		"read workspace settings": func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.Policy(ctx, ws)
			return err
		},
	}
	tests := []struct {
		name   string
		answer answer
		want   tokens.Error
		msg    func(op string) string
	}{
		{"403", answer{status: 403, body: `{"error_code":"PERMISSION_DENIED","message":"no"}`},
			tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks, PermissionDenied: true},
			func(string) string { return "Azure Databricks refused: HTTP 403 PERMISSION_DENIED: no" }},
		{"418", answer{status: 418, body: `I'm a teapot`},
			tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks},
			func(op string) string { return "Azure Databricks refused to " + op + ": HTTP 418: I'm a teapot" }},
		{"429", answer{status: 429, header: http.Header{"Retry-After": {"30"}}},
			tokens.Error{Code: tokens.CodeUpstreamUnavailable, Upstream: upstream.ServiceDatabricks, RetryAfter: 30 * time.Second},
			func(string) string {
				return "Azure Databricks is throttling or unavailable and did not recover within the retry budget (UPSTREAM_RETRY_BUDGET)"
			}},
	}
	for _, tt := range tests {
		for op, do := range ops {
			t.Run(tt.name+" on "+op, func(t *testing.T) {
				t.Parallel()
				w := newWorkspaceAPI(t, tt.answer)
				err := do(budget(t, 2*time.Second), w.client(), w.workspace(t))
				got, isErr := errors.AsType[*tokens.Error](err)
				if !isErr {
					t.Fatalf("error %v (%T), want a *tokens.Error", err, err)
				}
				want := tt.want
				want.Message = tt.msg(op)
				if d := cmp.Diff(want, *got, cmpopts.IgnoreFields(tokens.Error{}, "Err")); d != "" {
					t.Errorf("error (-want +got):\n%s", d)
				}
			})
		}
	}
	// An answer Databricks would never give is reported, not half-read.
	for op, body := range map[string]string{"list tokens": `{"token_infos":`, "read workspace settings": `["x"]`} {
		w := newWorkspaceAPI(t, ok(body))
		if err := ops[op](t.Context(), w.client(), w.workspace(t)); tokens.CodeOf(err) != tokens.CodeUpstreamError {
			t.Errorf("%s, unreadable answer: %v; want UpstreamError", op, err)
		}
	}
}

// TestDeleteToken: a token Databricks does not know is notFound (false,
// no error), however Databricks says so.
func TestDeleteToken(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		answer answer
		want   bool
	}{
		{"deleted", ok(`{}`), true},
		{"404 RESOURCE_DOES_NOT_EXIST", answer{status: 404, body: `{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Token t1 does not exist"}`}, false},
		{"400 RESOURCE_DOES_NOT_EXIST", answer{status: 400, body: `{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"x"}`}, false},
		{"400 No valid token", answer{status: 400, body: `{"error_code":"INVALID_PARAMETER_VALUE","message":"No valid token with ID t1 found"}`}, false},
		{"404 from the gateway", answer{status: 404, header: http.Header{"Content-Type": {"text/html"}}, body: "<html>Not Found</html>"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorkspaceAPI(t, tt.answer)
			got, err := w.client().DeleteToken(t.Context(), w.workspace(t), "t1")
			if err != nil || got != tt.want {
				t.Errorf("DeleteToken = %v, %v; want %v, nil", got, err, tt.want)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		body string
		want tokens.WorkspacePolicy
	}{
		{`{"enableTokensConfig":"false","maxTokenLifetimeDays":"90"}`, tokens.WorkspacePolicy{MaxLifetime: 90 * 24 * time.Hour}},
		{`{"enableTokensConfig":"true","maxTokenLifetimeDays":"0"}`, tokens.WorkspacePolicy{TokensEnabled: true}},
		{`{"enableTokensConfig":null,"maxTokenLifetimeDays":null}`, tokens.WorkspacePolicy{TokensEnabled: true}},
		{`{}`, tokens.WorkspacePolicy{TokensEnabled: true}},
		{`{"maxTokenLifetimeDays":"soon"}`, tokens.WorkspacePolicy{TokensEnabled: true}},
		{`{"maxTokenLifetimeDays":"-3"}`, tokens.WorkspacePolicy{TokensEnabled: true}},
	} {
		w := newWorkspaceAPI(t, ok(tt.body))
		got, err := w.client().Policy(t.Context(), w.workspace(t))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("Policy(%s) (-want +got):\n%s", tt.body, d)
		}
	}
}

// TestPlainHTTP: the tokens never go over plain http, except to loopback
// with AllowInsecureLoopback (the local stand-ins).
func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+"|"+r.Header.Get(HeaderManagementToken))
		mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"token_infos": []any{}})
	}))
	defer srv.Close()
	id, _ := tokens.ParseWorkspaceID(wsText)
	ws := tokens.Workspace{ID: id, URL: srv.URL}
	for _, allow := range []bool{false, true} {
		c := New(scopedCred{}, Options{DatabricksScope: "dbx/.default", ManagementScope: "mgmt/.default", AllowInsecureLoopback: allow,
			ClientOptions: policy.ClientOptions{Transport: srv.Client()}})
		_, err := c.ListTokens(t.Context(), ws)
		if (err == nil) != allow {
			t.Errorf("AllowInsecureLoopback=%v: %v", allow, err)
		}
		if err != nil && strings.Contains(err.Error(), "entra-token-for") {
			t.Errorf("the refusal shows a token: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"Bearer entra-token-for-dbx/.default|entra-token-for-mgmt/.default"}, seen); d != "" {
		t.Errorf("calls that reached the http workspace (-want +got):\n%s", d)
	}
}
