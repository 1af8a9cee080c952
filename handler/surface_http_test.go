package handler

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func createBody(extra string) []byte {
	return []byte(`{"workspaceResourceId":"` + surfaceWS + `"` + extra + `}`)
}

// TestHTTPErrors: every contract code the service can fail with reaches
// the HTTP caller as its status, in the contract's error shape, with
// Retry-After on 503 only; the error's cause stays in the log, and the
// failure is published as a Failed result.
func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	field := tokens.FieldError(tokens.CodeInvalidRequest, "lifetimeSeconds", "lifetimeSeconds is over the workspace's maxTokenLifetimeDays (90)")
	field.Err = fmt.Errorf("%s", secretCause)
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		message    string
		retryAfter string // "" : no header
		target     string
		details    []tokens.Detail
	}{
		{"InvalidRequest", field, 400, "InvalidRequest", field.Message, "", "lifetimeSeconds", field.Details},
		{"DeliveryNotConfigured", failWith(tokens.CodeDeliveryNotConfigured, "no delivery", 0), 400, "DeliveryNotConfigured", "no delivery", "", "", nil},
		{"Unauthenticated", failWith(tokens.CodeUnauthenticated, "who are you", 0), 401, "Unauthenticated", "who are you", "", "", nil},
		{"NotAuthorized", failWith(tokens.CodeNotAuthorized, "not you", 0), 403, "NotAuthorized", "not you", "", "", nil},
		{"WorkspaceNotAllowed", failWith(tokens.CodeWorkspaceNotAllowed, "not there", 0), 403, "WorkspaceNotAllowed", "not there", "", "", nil},
		{"WorkspaceNotFound", failWith(tokens.CodeWorkspaceNotFound, "no such workspace", 0), 404, "WorkspaceNotFound", "no such workspace", "", "", nil},
		{"TokenQuotaExceeded", failWith(tokens.CodeTokenQuotaExceeded, "600 tokens", 0), 409, "TokenQuotaExceeded", "600 tokens", "", "", nil},
		{"UpstreamError without Retry-After though it has one", failWith(tokens.CodeUpstreamError, "Databricks refused", 5*time.Second), 502, "UpstreamError", "Databricks refused", "", "", nil},
		{"UpstreamUnavailable rounds Retry-After up", failWith(tokens.CodeUpstreamUnavailable, "throttled", 1500*time.Millisecond), 503, "UpstreamUnavailable", "throttled", "2", "", nil},
		{"UpstreamUnavailable without a wait says 1", failWith(tokens.CodeUpstreamUnavailable, "throttled", 0), 503, "UpstreamUnavailable", "throttled", "1", "", nil},
		{"WorkspaceNotReady", failWith(tokens.CodeWorkspaceNotReady, "provisioning", time.Minute), 503, "WorkspaceNotReady", "provisioning", "60", "", nil},
		{"a deadline is UpstreamUnavailable", fmt.Errorf("waiting: %w", context.DeadlineExceeded), 503, "UpstreamUnavailable", "an upstream service did not answer within the retry budget", "1", "", nil},
		{"InternalError", failWith(tokens.CodeInternal, "internal error", 0), 500, "InternalError", "internal error", "", "", nil},
		{"an error without a code is internal, its text hidden", fmt.Errorf("%s", secretCause), 500, "InternalError", "internal error", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, createAnswering(tokens.CreateResult{}, tt.err), baseOptions())
			rec := r.do(http.MethodPost, "/api/create-token", createBody(`,"requestId":"req-1"`), nil, false)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			got := decodeError(t, rec)
			var want apiError
			want.Error.Code, want.Error.Message, want.Error.Target, want.Error.Details = tt.code, tt.message, tt.target, tt.details
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("error body (-want +got):\n%s", d)
			}
			if got := rec.Header().Get("x-ms-request-id"); got != "" {
				t.Errorf("a failure carries x-ms-request-id %q", got)
			}
			out := r.pub.outcomes()
			if len(out) != 1 || out[0].Type != tokens.Failed || out[0].RequestID != "req-1" || out[0].CorrelationID != "req-1" ||
				out[0].Workspace != surfaceWS || string(out[0].Err.Code) != tt.code {
				t.Errorf("published %+v; want one Failed result for req-1", out)
			}
			if !strings.Contains(r.log.String(), secretCause) && tt.code != "UpstreamUnavailable" {
				t.Error("the cause is not in the log")
			}
		})
	}
}

// TestEveryRouteMapsErrorsAlike: revoke and list answer a service error
// the same way create does.
func TestEveryRouteMapsErrorsAlike(t *testing.T) {
	t.Parallel()
	notReady := failWith(tokens.CodeWorkspaceNotReady, "provisioning", 30*time.Second)
	r := newRig(t, &stubService{
		revoke: func(tokens.RevokeRequest) (tokens.RevokeResult, error) { return tokens.RevokeResult{}, notReady },
		list:   func(tokens.WorkspaceID) ([]tokens.TokenSummary, error) { return nil, notReady },
		inv:    func(tokens.InventoryQuery) (tokens.InventoryPage, error) { return tokens.InventoryPage{}, notReady },
	}, baseOptions())
	for _, rec := range []*httptest.ResponseRecorder{
		r.do(http.MethodPost, "/api/revoke-token", []byte(`{"workspaceResourceId":"`+surfaceWS+`","tokenId":"tok-1"}`), nil, false),
		r.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+surfaceWS, nil, nil, false),
		r.do(http.MethodGet, "/api/tokens", nil, nil, false),
	} {
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "30" || decodeError(t, rec).Error.Code != "WorkspaceNotReady" {
			t.Errorf("%d Retry-After %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
}

// TestCreateToken: a new token is 201, the same request's token again is
// 200; the value goes to the caller only, never into the result (whatever
// RESULTS_INCLUDE_TOKEN_VALUE says: the publisher would include a value it
// is given).
func TestCreateToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		result tokens.CreateResult
		status int
		body   map[string]any
	}{
		{"issued, inline", issued(t, true, secretValue), http.StatusCreated, map[string]any{"tokenValue": secretValue}},
		{"the earlier attempt's token", issued(t, false, ""), http.StatusOK, map[string]any{}},
		{"issued, into Key Vault", func() tokens.CreateResult {
			res := issued(t, true, "")
			res.Record.SecretURI = "https://v.vault.azure.net/secrets/etl-token/0123"
			return res
		}(), http.StatusCreated, map[string]any{"secretUri": "https://v.vault.azure.net/secrets/etl-token/0123"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, createAnswering(tt.result, nil), baseOptions())
			rec := r.do(http.MethodPost, "/api/create-token", createBody(`,"requestId":"r1","comment":"nightly ETL","lifetimeSeconds":3600`), nil, true)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("x-ms-request-id"); got != "r1" {
				t.Errorf("x-ms-request-id %q", got)
			}
			want := map[string]any{"requestId": "r1", "workspaceResourceId": surfaceWS, "workspaceUrl": "https://adb-1.2.azuredatabricks.net",
				"tokenId": "tok-1", "comment": "nightly ETL", "createdAt": "2026-11-28T09:00:00Z", "expiresAt": "2026-11-29T09:00:00Z"}
			for k, v := range tt.body {
				want[k] = v
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("body (-want +got):\n%s", d)
			}
			req := r.svc.creates[0]
			wantReq := tokens.CreateRequest{Workspace: workspaceID(t), Comment: "nightly ETL", Lifetime: time.Hour, LifetimeGiven: true, RequestID: "r1", RequestIDGiven: true}
			if d := cmp.Diff(wantReq, req); d != "" {
				t.Errorf("the service was asked (-want +got):\n%s", d)
			}
			if !r.svc.budgeted[0] {
				t.Error("the service ran without the retry budget's deadline")
			}
			out := r.pub.outcomes()
			if len(out) != 1 {
				t.Fatalf("published %d outcomes, want 1", len(out))
			}
			wantRec := tt.result.Record
			wantRec.Value = tokens.Secret{}
			wantOut := tokens.Outcome{Type: tokens.Created, RequestID: "r1", Workspace: surfaceWS, TokenID: "tok-1", CorrelationID: "r1", Record: &wantRec}
			if d := cmp.Diff(wantOut, out[0], secretsByValue); d != "" {
				t.Errorf("published (-want +got):\n%s", d)
			}
		})
	}
}

// TestRequestID: the idempotency key is the body's requestId, else the
// x-ms-client-request-id header, else a new one (which no retry can
// repeat, so the service need not look for an earlier attempt).
func TestRequestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		header    string
		wantID    string // "" : generated
		wantGiven bool
	}{
		{"body wins over the header", `,"requestId":"from-body"`, "from-header", "from-body", true},
		{"the header", "", "from-header", "from-header", true},
		{"generated", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, &stubService{create: func(req tokens.CreateRequest, _ tokens.CreateOptions) (tokens.CreateResult, error) {
				res := issued(t, true, "")
				res.Record.RequestID = req.RequestID
				return res, nil
			}}, baseOptions())
			h := http.Header{}
			if tt.header != "" {
				h.Set("x-ms-client-request-id", tt.header)
			}
			rec := r.do(http.MethodPost, "/api/create-token", createBody(tt.body), h, false)
			if rec.Code != http.StatusCreated {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			req := r.svc.creates[0]
			id := req.RequestID
			if tt.wantID != "" && id != tt.wantID {
				t.Errorf("request id %q, want %q", id, tt.wantID)
			}
			if tt.wantID == "" && (len(id) != 36 || tokens.ValidRequestID(id) != nil) {
				t.Errorf("generated request id %q is not a UUID", id)
			}
			if req.RequestIDGiven != tt.wantGiven {
				t.Errorf("RequestIDGiven = %v, want %v", req.RequestIDGiven, tt.wantGiven)
			}
			var body struct{ RequestID string }
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			if rec.Header().Get("x-ms-request-id") != id || body.RequestID != id || r.pub.outcomes()[0].RequestID != id {
				t.Errorf("x-ms-request-id %q, body %q, result %q; want %q everywhere", rec.Header().Get("x-ms-request-id"), body.RequestID, r.pub.outcomes()[0].RequestID, id)
			}
		})
	}
	t.Run("an unusable header", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, &stubService{}, baseOptions())
		rec := r.do(http.MethodPost, "/api/create-token", createBody(""), http.Header{"X-Ms-Client-Request-Id": {"not allowed!"}}, false)
		e := decodeError(t, rec)
		if rec.Code != 400 || e.Error.Code != "InvalidRequest" || e.Error.Target != "x-ms-client-request-id" {
			t.Errorf("%d %+v", rec.Code, e)
		}
	})
}

// TestValidationReachesTheCaller: a body the contract refuses is 400 with
// one detail per problem, and the service is never asked.
func TestValidationReachesTheCaller(t *testing.T) {
	t.Parallel()
	r := newRig(t, &stubService{}, baseOptions())
	rec := r.do(http.MethodPost, "/api/create-token", []byte(`{"workspaceResourceId":"nope","lifetimeSeconds":0,"colour":"red"}`), nil, false)
	e := decodeError(t, rec)
	if rec.Code != 400 || e.Error.Code != "InvalidRequest" || len(e.Error.Details) != 3 {
		t.Errorf("%d %+v; want InvalidRequest with 3 details", rec.Code, e)
	}
	for _, path := range []string{"/api/create-token", "/api/revoke-token"} {
		if rec := r.do(http.MethodPost, path, []byte(`not json`), nil, false); rec.Code != 400 {
			t.Errorf("%s, not JSON: %d", path, rec.Code)
		}
	}
	if r.svc.calls() != 0 {
		t.Errorf("the service was asked %d times", r.svc.calls())
	}
	if out := r.pub.outcomes(); len(out) != 3 || out[0].Type != tokens.Failed {
		t.Errorf("published %+v; want a Failed result per refused request", out)
	}
}

func TestRevokeToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		result tokens.RevokeResult
		want   string
	}{
		{"by id", `{"workspaceResourceId":"` + surfaceWS + `","tokenId":"tok-1","requestId":"rv-1"}`,
			tokens.RevokeResult{Workspace: workspaceID(t), TokenID: "tok-1", Status: tokens.StatusRevoked, RequestID: "rv-1"},
			`{"tokenId":"tok-1","status":"revoked"}`},
		{"unknown: notFound, not an error", `{"workspaceResourceId":"` + surfaceWS + `","tokenId":"tok-9","requestId":"rv-1"}`,
			tokens.RevokeResult{Workspace: workspaceID(t), TokenID: "tok-9", Status: tokens.StatusNotFound, RequestID: "rv-1"},
			`{"tokenId":"tok-9","status":"notFound"}`},
		{"by secret", `{"secretUri":"https://v.vault.azure.net/secrets/s/0123","requestId":"rv-1"}`,
			tokens.RevokeResult{Workspace: workspaceID(t), TokenID: "tok-1", Status: tokens.StatusRevoked, SecretURI: "https://v.vault.azure.net/secrets/s/0123", RequestID: "rv-1"},
			`{"tokenId":"tok-1","status":"revoked"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, &stubService{revoke: func(tokens.RevokeRequest) (tokens.RevokeResult, error) { return tt.result, nil }}, baseOptions())
			rec := r.do(http.MethodPost, "/api/revoke-token", []byte(tt.body), nil, false)
			if rec.Code != 200 || rec.Body.String() != tt.want {
				t.Errorf("%d %s, want 200 %s", rec.Code, rec.Body, tt.want)
			}
			if got := r.svc.revokes[0].RequestID; got != "rv-1" {
				t.Errorf("the service got request id %q", got)
			}
			res := tt.result
			want := []tokens.Outcome{{Type: tokens.Revoked, RequestID: "rv-1", Workspace: surfaceWS, TokenID: res.TokenID, CorrelationID: "rv-1", Revoke: &res}}
			r.checkPublished(want)
		})
	}
}

func TestListTokens(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	r := newRig(t, &stubService{list: func(id tokens.WorkspaceID) ([]tokens.TokenSummary, error) {
		if !id.Equal(workspaceID(t)) {
			t.Errorf("listed %s", id)
		}
		return []tokens.TokenSummary{{TokenID: "t2", Comment: "forever", CreatedAt: created}, {TokenID: "t1", Comment: "etl", CreatedAt: created, ExpiresAt: created.Add(time.Hour)}}, nil
	}}, baseOptions())
	rec := r.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+surfaceWS, nil, nil, false)
	want := `{"tokens":[{"tokenId":"t2","comment":"forever","createdAt":"2026-11-28T09:00:00Z","expiresAt":null},` +
		`{"tokenId":"t1","comment":"etl","createdAt":"2026-11-28T09:00:00Z","expiresAt":"2026-11-28T10:00:00Z"}]}`
	if rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("%d %s\nwant %s", rec.Code, rec.Body, want)
	}
	if rec := r.do(http.MethodHead, "/api/list-tokens?workspaceResourceId="+surfaceWS, nil, nil, false); rec.Code != 200 {
		t.Errorf("HEAD: %d", rec.Code)
	}
	for _, q := range []string{"", "?workspaceResourceId=", "?workspaceResourceId=/subscriptions/x"} {
		rec := r.do(http.MethodGet, "/api/list-tokens"+q, nil, nil, false)
		if e := decodeError(t, rec); rec.Code != 400 || e.Error.Code != "InvalidRequest" {
			t.Errorf("list-tokens%s: %d %+v", q, rec.Code, e)
		}
	}
	if len(r.pub.outcomes()) != 0 {
		t.Errorf("a list published %+v", r.pub.outcomes())
	}
}

// TestRoutes: the readiness probe, wrong methods (405 with Allow) and
// unknown paths (404), all in the contract's JSON and without touching
// the service.
// TestInventory: GET /api/tokens renders the ledger's page as the
// contract shapes it (optional members absent, a never-expiring token's
// expiresAt null), hands the service the parsed query within the budget,
// refuses a bad query before the service is asked, and publishes nothing.
func TestInventory(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	var asked []tokens.InventoryQuery
	r := newRig(t, &stubService{inv: func(q tokens.InventoryQuery) (tokens.InventoryPage, error) {
		asked = append(asked, q)
		if q.ContinuationToken == "page-2" {
			return tokens.InventoryPage{}, nil
		}
		return tokens.InventoryPage{ContinuationToken: "page-2", Entries: []tokens.Entry{
			{Workspace: workspaceID(t), RequestID: "r2", TokenID: "t2", Comment: "etl", Scopes: []string{"sql:read"}, CreatedAt: created,
				ExpiresAt: created.Add(time.Hour), State: tokens.TokenRevoked, SecretURI: "https://kv.vault.azure.net/secrets/s/v1", RequestedBy: "cccccccc-3333-4333-8333-cccccccccccc"},
			{Workspace: workspaceID(t), RequestID: "r1", TokenID: "t1", CreatedAt: created, State: tokens.TokenLive},
		}}, nil
	}}, baseOptions())
	rec := r.do(http.MethodGet, "/api/tokens?status=revoked,live&top=2&code=function-key", nil, nil, false)
	want := `{"tokens":[{"requestId":"r2","workspaceResourceId":"` + surfaceWS + `","tokenId":"t2","comment":"etl","scopes":["sql:read"],` +
		`"createdAt":"2026-11-28T09:00:00Z","expiresAt":"2026-11-28T10:00:00Z","status":"revoked","secretUri":"https://kv.vault.azure.net/secrets/s/v1",` +
		`"requestedBy":"cccccccc-3333-4333-8333-cccccccccccc"},` +
		`{"requestId":"r1","workspaceResourceId":"` + surfaceWS + `","tokenId":"t1","comment":"","createdAt":"2026-11-28T09:00:00Z","expiresAt":null,"status":"live"}],` +
		`"continuationToken":"page-2"}`
	if rec.Code != 200 || rec.Body.String() != want {
		t.Errorf("%d %s\nwant %s", rec.Code, rec.Body, want)
	}
	if len(asked) != 1 || asked[0].Top != 2 || !slices.Equal(asked[0].States, []tokens.TokenState{tokens.TokenRevoked, tokens.TokenLive}) {
		t.Errorf("the service was asked %+v", asked)
	}
	if rec := r.do(http.MethodGet, "/api/tokens?continuationToken=page-2", nil, nil, false); rec.Code != 200 || rec.Body.String() != `{"tokens":[]}` {
		t.Errorf("the last page: %d %s; want an empty list and no continuationToken", rec.Code, rec.Body)
	}
	if rec := r.do(http.MethodHead, "/api/tokens", nil, nil, false); rec.Code != 200 {
		t.Errorf("HEAD: %d", rec.Code)
	}
	calls := r.svc.calls()
	rec = r.do(http.MethodGet, "/api/tokens?top=0&status=stale", nil, nil, false)
	if e := decodeError(t, rec); rec.Code != 400 || e.Error.Code != "InvalidRequest" || len(e.Error.Details) != 2 {
		t.Errorf("bad query: %d %s", rec.Code, rec.Body)
	}
	if r.svc.calls() != calls {
		t.Error("a bad query reached the service")
	}
	if !strings.Contains(r.log.String(), `"event":"tokens.inventoried"`) || !strings.Contains(r.log.String(), `"more":true`) {
		t.Errorf("no tokens.inventoried line saying more pages follow:\n%s", r.log)
	}
	if len(r.pub.outcomes()) != 0 {
		t.Errorf("an inventory published %+v", r.pub.outcomes())
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	r := newRig(t, &stubService{}, baseOptions())
	tests := []struct {
		method, path string
		status       int
		allow        string
		body         string
	}{
		{http.MethodGet, "/", 200, "", `{"status":"ready"}`},
		{http.MethodHead, "/", 200, "", ""},
		{http.MethodPost, "/", 405, "GET, HEAD", ""},
		{http.MethodGet, "/api/create-token", 405, "POST", ""},
		{http.MethodPut, "/api/revoke-token", 405, "POST", ""},
		{http.MethodPost, "/api/list-tokens", 405, "GET, HEAD", ""},
		{http.MethodDelete, "/api/list-tokens", 405, "GET, HEAD", ""},
		{http.MethodPost, "/api/tokens", 405, "GET, HEAD", ""},
		{http.MethodGet, "/token-requests", 405, "POST", ""},
		{http.MethodGet, "/workspace-events", 405, "POST", ""},
		{http.MethodGet, "/rotate-tokens", 405, "POST", ""},
		{http.MethodGet, "/api/nope", 404, "", `{"error":{"code":"NotFound","message":"no function is served at /api/nope"}}`},
		{http.MethodPost, "/token-requests/extra", 404, "", `{"error":{"code":"NotFound","message":"no function is served at /token-requests/extra"}}`},
	}
	for _, tt := range tests {
		rec := r.do(tt.method, tt.path, nil, nil, false)
		if rec.Code != tt.status || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tt.method, tt.path, rec.Code, rec.Header().Get("Allow"), tt.status, tt.allow)
		}
		if tt.body != "" && rec.Body.String() != tt.body {
			t.Errorf("%s %s: %s, want %s", tt.method, tt.path, rec.Body, tt.body)
		}
		if tt.status == 405 {
			want := fmt.Sprintf("%s is not allowed here; use %s", tt.method, strings.ReplaceAll(tt.allow, ", ", " or "))
			if e := decodeError(t, rec); e.Error.Code != "MethodNotAllowed" || e.Error.Message != want {
				t.Errorf("%s %s: %+v", tt.method, tt.path, e)
			}
		}
	}
	if r.svc.calls() != 0 || len(r.pub.outcomes()) != 0 {
		t.Errorf("the probe or a refused route reached the service (%d calls) or published", r.svc.calls())
	}
}

// TestRequestTooLarge: a body over 64 KiB is 413 whether or not it says
// its length; the service is never asked.
func TestRequestTooLarge(t *testing.T) {
	t.Parallel()
	r := newRig(t, &stubService{}, baseOptions())
	big := createBody(`,"comment":"` + strings.Repeat("x", MaxBody) + `"`)
	for _, path := range []string{"/api/create-token", "/api/revoke-token"} {
		for _, chunked := range []bool{false, true} {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(big))
			if chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			r.h.ServeHTTP(rec, req)
			if e := decodeError(t, rec); rec.Code != 413 || e.Error.Code != "RequestTooLarge" {
				t.Errorf("%s (chunked %v): %d %+v", path, chunked, rec.Code, e)
			}
		}
	}
	if r.svc.calls() != 0 {
		t.Errorf("the service was asked %d times", r.svc.calls())
	}
}

// principalHeaders are what App Service Authentication forwards for an
// Entra caller with object id oid.
func principalHeaders(oid string) http.Header {
	p := `{"auth_typ":"aad","claims":[{"typ":"oid","val":"` + oid + `"}],"name_typ":"name","role_typ":"roles"}`
	return http.Header{
		authz.HeaderPrincipal:    {base64.StdEncoding.EncodeToString([]byte(p))},
		authz.HeaderPrincipalID:  {oid},
		authz.HeaderPrincipalIDP: {"aad"},
	}
}

// TestCallers: with a policy, an HTTP caller must be authenticated (401
// before the service is asked); the principal App Service vouches for is
// what the service authorizes and what results name; headers nothing
// vouches for are ignored.
func TestCallers(t *testing.T) {
	t.Parallel()
	const oid = "6f1c2f9e-3b7a-4c1e-9d2a-0c5e8b7a1f01"
	policy, err := authz.ParsePolicy([]byte(`{"version":1,"rules":[{"principals":[{"objectId":"` + oid + `"}],"actions":["create","list","revoke"],"workspaces":["/subscriptions/*"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ok := func(tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error) {
		return issued(t, true, ""), nil
	}
	tests := []struct {
		name          string
		trust         bool
		policy        *authz.Policy
		header        http.Header
		status        int
		wantRequested string
	}{
		{"no caller, with a policy", true, policy, nil, 401, ""},
		{"headers that do not hold together", true, policy, http.Header{authz.HeaderPrincipal: {"e30="}}, 401, ""},
		{"an Entra caller", true, policy, principalHeaders(oid), 201, "objectId=" + oid},
		{"unreadable headers without a policy are ignored", true, nil, http.Header{authz.HeaderPrincipal: {"e30="}}, 201, ""},
		{"headers nothing vouches for are ignored", false, nil, principalHeaders(oid), 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions()
			opts.TrustCallerHeaders, opts.Policy = tt.trust, tt.policy
			r := newRig(t, &stubService{create: ok, list: func(tokens.WorkspaceID) ([]tokens.TokenSummary, error) { return nil, nil },
				revoke: func(tokens.RevokeRequest) (tokens.RevokeResult, error) {
					return tokens.RevokeResult{TokenID: "t", Status: tokens.StatusRevoked}, nil
				}}, opts)
			rec := r.do(http.MethodPost, "/api/create-token", createBody(""), tt.header, false)
			if rec.Code != tt.status {
				t.Fatalf("create: %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			if tt.status == 401 {
				if e := decodeError(t, rec); e.Error.Code != "Unauthenticated" {
					t.Errorf("%+v", e)
				}
				for _, rec := range []*httptest.ResponseRecorder{
					r.do(http.MethodPost, "/api/revoke-token", []byte(`{"workspaceResourceId":"`+surfaceWS+`","tokenId":"t"}`), tt.header, false),
					r.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+surfaceWS, nil, tt.header, false),
				} {
					if rec.Code != 401 {
						t.Errorf("revoke or list: %d %s", rec.Code, rec.Body)
					}
				}
				if r.svc.calls() != 0 {
					t.Errorf("an unauthenticated caller reached the service %d times", r.svc.calls())
				}
				return
			}
			by := r.svc.callers[0]
			if got := requestedByOf(by); got != tt.wantRequested {
				t.Errorf("the service was told the caller is %q, want %q", got, tt.wantRequested)
			}
			if got := r.pub.outcomes()[0].RequestedBy; got != tt.wantRequested {
				t.Errorf("the result names %q, want %q", got, tt.wantRequested)
			}
		})
	}
}

func requestedByOf(by tokens.Caller) string {
	if by == nil {
		return ""
	}
	return by.String()
}

// TestHTTPPublishFailureIsLoggedNotReturned: the caller of an HTTP function
// already has the answer; a result that cannot be published does not
// change it.
func TestHTTPPublishFailureIsLoggedNotReturned(t *testing.T) {
	t.Parallel()
	r := newRig(t, createAnswering(issued(t, true, secretValue), nil), baseOptions())
	r.pub.publishErr = fmt.Errorf("service bus is down")
	rec := r.do(http.MethodPost, "/api/create-token", createBody(""), nil, true)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), secretValue) {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(r.log.String(), "service bus is down") {
		t.Error("the publish failure is not logged")
	}
	if len(r.svc.withdrawn) != 0 {
		t.Error("an HTTP token whose caller has it was withdrawn")
	}
}

// TestPanicIsAnInternalError: a panic below the handler answers 500 in the
// contract's shape, and the next request is served as usual.
func TestPanicIsAnInternalError(t *testing.T) {
	t.Parallel()
	calls := 0
	r := newRig(t, &stubService{create: func(tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error) {
		calls++
		if calls == 1 {
			panic("the service fell over")
		}
		return issued(t, true, ""), nil
	}}, baseOptions())
	rec := r.do(http.MethodPost, "/api/create-token", createBody(""), nil, false)
	if rec.Code != 500 || rec.Body.String() != `{"error":{"code":"InternalError","message":"internal error"}}` {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(r.log.String(), "the service fell over") {
		t.Error("the panic is not logged")
	}
	if rec := r.do(http.MethodPost, "/api/create-token", createBody(""), nil, false); rec.Code != 201 {
		t.Errorf("after the panic: %d %s", rec.Code, rec.Body)
	}
}

// A header request id in one of the service's own forms is refused before
// the service is asked, like a body's.
func TestReservedHeaderRequestIDIsRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t, &stubService{}, baseOptions())
	h := http.Header{}
	h.Set("x-ms-client-request-id", "rot-359b9ce50c1fac4bf88eefbe")
	rec := r.do(http.MethodPost, "/api/create-token", createBody(""), h, false)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"target":"x-ms-client-request-id"`) || len(r.svc.creates) != 0 {
		t.Errorf("%d %s; %d creates", rec.Code, rec.Body, len(r.svc.creates))
	}
}

// The host routes without regard to case or a trailing slash and forwards
// the caller's path as written: those paths reach their function.
func TestRoutesAsTheHostMatchesThem(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/api/Create-Token", "/API/create-token", "/api/create-token/"} {
		r := newRig(t, createAnswering(issued(t, true, secretValue), nil), baseOptions())
		if rec := r.do(http.MethodPost, path, createBody(""), nil, true); rec.Code != http.StatusCreated {
			t.Errorf("POST %s: %d %s; want 201", path, rec.Code, rec.Body)
		}
	}
	r := newRig(t, &stubService{}, baseOptions())
	if rec := r.do(http.MethodGet, "/api/nothing-here", nil, nil, false); rec.Code != http.StatusNotFound {
		t.Errorf("an unknown path: %d; want 404", rec.Code)
	}
}
