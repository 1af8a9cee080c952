package fakedatabricks_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

const resourceID = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-data/providers/Microsoft.Databricks/workspaces/ws-one"

type env struct {
	t      *testing.T
	ws     *fakedatabricks.Workspace
	client *http.Client
}

func newEnv(t *testing.T, opts fakedatabricks.Options) *env {
	t.Helper()
	if opts.ResourceID == "" {
		opts.ResourceID = resourceID
	}
	ws := kittest.Start(t, fakedatabricks.StartWorkspace, opts)
	return &env{t: t, ws: ws, client: kittest.CA().Client()}
}

// principal mints tokens for one service principal.
type principal struct {
	oid, appid string
}

func (p principal) token(aud string, lifetime time.Duration) string {
	now := time.Now()
	return fakeentra.NewToken(fakeentra.Claims{
		Audience: aud, IssuedAt: now.Unix(), NotBefore: now.Add(-time.Minute).Unix(), ExpiresAt: now.Add(lifetime).Unix(),
		ObjectID: p.oid, AppID: p.appid, TenantID: fakeentra.DefaultTenantID,
	})
}

// headers returns all three Azure headers for p.
func (p principal) headers() map[string]string {
	return map[string]string{
		"Authorization":                      "Bearer " + p.token(fakeentra.DatabricksResource, time.Hour),
		fakedatabricks.HeaderManagementToken: p.token(fakeentra.ManagementResource, time.Hour),
		fakedatabricks.HeaderResourceID:      resourceID,
	}
}

// bearerOnly returns just the Databricks bearer token.
func (p principal) bearerOnly() map[string]string {
	return map[string]string{"Authorization": "Bearer " + p.token(fakeentra.DatabricksResource, time.Hour)}
}

var sp = principal{oid: "5ca1ab1e-0000-4000-8000-000000000001", appid: "a9911d00-0000-4000-8000-000000000001"}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (r response) wantError(t *testing.T, status int, code, msgRE string) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("transport error: %v", r.err)
	}
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q", ct)
	}
	m := r.json(t)
	if m["error_code"] != code {
		t.Fatalf("error_code = %v, want %s; body %s", m["error_code"], code, r.body)
	}
	if msg, _ := m["message"].(string); !regexp.MustCompile(msgRE).MatchString(msg) {
		t.Fatalf("message %q does not match %q", msg, msgRE)
	}
}

func (r response) wantHTML403(t *testing.T) {
	t.Helper()
	if r.err != nil || r.status != http.StatusForbidden || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(r.body), "<pre>    Invalid access token.</pre>") {
		t.Fatalf("want HTML 403, got %d %q %q %v", r.status, r.header.Get("Content-Type"), r.body, r.err)
	}
}

func (e *env) do(method, path string, headers map[string]string, body any) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.ws.URL()+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (e *env) create(h map[string]string, body any) response {
	return e.do(http.MethodPost, "/api/2.0/token/create", h, body)
}

func (e *env) list(h map[string]string) response {
	return e.do(http.MethodGet, "/api/2.0/token/list", h, nil)
}

func (e *env) del(h map[string]string, id string) response {
	return e.do(http.MethodPost, "/api/2.0/token/delete", h, map[string]string{"token_id": id})
}

func TestCreateListDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	h := sp.headers()
	r := e.create(h, map[string]any{"comment": "nightly ETL", "lifetime_seconds": 3600})
	if r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var cr struct {
		TokenValue string `json:"token_value"`
		TokenInfo  struct {
			TokenID      string `json:"token_id"`
			CreationTime int64  `json:"creation_time"`
			ExpiryTime   int64  `json:"expiry_time"`
			Comment      string `json:"comment"`
		} `json:"token_info"`
	}
	if err := json.Unmarshal(r.body, &cr); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^dapi[0-9a-f]{32}$`).MatchString(cr.TokenValue) {
		t.Errorf("token_value %q", cr.TokenValue)
	}
	sum := sha256.Sum256([]byte(cr.TokenValue))
	if cr.TokenInfo.TokenID != hex.EncodeToString(sum[:]) {
		t.Errorf("token_id is not sha256(value)")
	}
	if cr.TokenInfo.ExpiryTime-cr.TokenInfo.CreationTime != 3600_000 || cr.TokenInfo.Comment != "nightly ETL" {
		t.Errorf("token_info = %+v", cr.TokenInfo)
	}
	if d := time.Since(time.UnixMilli(cr.TokenInfo.CreationTime)); d < 0 || d > time.Minute {
		t.Errorf("creation_time off by %v", d)
	}

	// Another principal sees nothing; the owner sees its token.
	other := principal{oid: "other-oid", appid: "other-app"}
	if got := e.list(other.headers()); got.status != 200 || string(got.body) != "{}\n" {
		t.Errorf("other list: %d %s", got.status, got.body)
	}
	l := e.list(sp.bearerOnly()) // a member no longer needs the management header
	if l.status != 200 {
		t.Fatalf("list: %d %s", l.status, l.body)
	}
	infos := l.json(t)["token_infos"].([]any)
	if len(infos) != 1 || infos[0].(map[string]any)["token_id"] != cr.TokenInfo.TokenID {
		t.Fatalf("list = %s", l.body)
	}
	if _, ok := infos[0].(map[string]any)["token_value"]; ok {
		t.Error("list leaks token_value")
	}

	// Another principal cannot revoke it.
	e.del(other.headers(), cr.TokenInfo.TokenID).wantError(t, 404, "RESOURCE_DOES_NOT_EXIST", "No valid token with ID "+cr.TokenInfo.TokenID+" found")
	if d := e.del(h, cr.TokenInfo.TokenID); d.status != 200 || strings.TrimSpace(string(d.body)) != "{}" {
		t.Fatalf("delete: %d %s", d.status, d.body)
	}
	e.del(h, cr.TokenInfo.TokenID).wantError(t, 404, "RESOURCE_DOES_NOT_EXIST", "^No valid token with ID")
	e.del(h, "").wantError(t, 400, "INVALID_PARAMETER_VALUE", "token_id")

	toks := e.ws.Tokens()
	if len(toks) != 1 || toks[0].State != fakedatabricks.Revoked || toks[0].Value != cr.TokenValue || toks[0].PrincipalOID != sp.oid || toks[0].PrincipalAppID != sp.appid {
		t.Fatalf("Tokens() = %+v", toks)
	}
	if len(e.ws.LiveTokens()) != 0 {
		t.Error("revoked token still live")
	}
	calls := e.ws.Calls()
	if calls[fakedatabricks.OpCreate] != 1 || calls[fakedatabricks.OpList] != 2 || calls[fakedatabricks.OpDelete] != 4 {
		t.Errorf("calls = %v", calls)
	}
	reqs := e.ws.Requests()
	if len(reqs) != 7 {
		t.Fatalf("requests = %d", len(reqs))
	}
	first := reqs[0]
	if first.Op != fakedatabricks.OpCreate || first.Status != 200 || first.Auth != "entra" || first.BearerAudience != fakeentra.DatabricksResource ||
		!first.ManagementTokenPresent || first.ManagementAudience != fakeentra.ManagementResource || !first.ResourceIDPresent || first.PrincipalOID != sp.oid {
		t.Errorf("first request = %+v", first)
	}
	if reqs[2].ManagementTokenPresent || reqs[2].ResourceIDPresent {
		t.Errorf("bearer-only request recorded headers: %+v", reqs[2])
	}
}

func TestLifetimeRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	h := sp.headers()
	expiry := func(r response) int64 {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		ti := r.json(t)["token_info"].(map[string]any)
		exp, created := int64(ti["expiry_time"].(float64)), int64(ti["creation_time"].(float64))
		if exp < 0 {
			return exp
		}
		return (exp - created) / 1000
	}
	if got := expiry(e.create(h, map[string]any{})); got != 730*86400 {
		t.Errorf("default lifetime = %ds, want 2 years", got)
	}
	if got := expiry(e.create(h, nil)); got != 730*86400 {
		t.Errorf("no body: lifetime = %ds", got)
	}
	if got := expiry(e.create(h, map[string]any{"lifetime_seconds": -1})); got != -1 {
		t.Errorf("negative lifetime: expiry = %d, want -1", got)
	}
	e.create(h, map[string]any{"lifetime_seconds": 0}).wantError(t, 400, "INVALID_PARAMETER_VALUE", `^requirement failed: Invalid timeout: 0$`)
	e.create(h, map[string]any{"lifetime_seconds": "soon"}).wantError(t, 400, "MALFORMED_REQUEST", "lifetime_seconds")
	e.create(h, map[string]any{"lifetime_seconds": 1.5}).wantError(t, 400, "MALFORMED_REQUEST", "lifetime_seconds")

	e.ws.SetMaxTokenLifetimeDays(90)
	if got := expiry(e.create(h, map[string]any{})); got != 90*86400 {
		t.Errorf("default lifetime with max 90 days = %ds", got)
	}
	if got := expiry(e.create(h, map[string]any{"lifetime_seconds": 90 * 86400})); got != 90*86400 {
		t.Errorf("lifetime at the max = %ds", got)
	}
	e.create(h, map[string]any{"lifetime_seconds": 90*86400 + 1}).wantError(t, 400, "INVALID_PARAMETER_VALUE", `maximum lifetime.*90 days`)
	e.create(h, map[string]any{"lifetime_seconds": -1}).wantError(t, 400, "INVALID_PARAMETER_VALUE", `90 days`)

	e.ws.SetTokensEnabled(false)
	e.create(h, map[string]any{"lifetime_seconds": 60}).wantError(t, 403, "PERMISSION_DENIED", "disabled")
}

func TestQuotaAndExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{MaxLiveTokens: 3})
	h := sp.headers()
	e.ws.CreateToken(sp.oid, sp.appid, "seed", time.Hour)
	e.ws.CreateToken(sp.oid, sp.appid, "seed", 0) // never expires
	if r := e.create(h, map[string]any{"lifetime_seconds": 7200}); r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	e.create(h, map[string]any{"lifetime_seconds": 60}).wantError(t, 400, "QUOTA_EXCEEDED", "3 tokens")
	// Other principals have their own quota.
	if r := e.create(principal{"o2", "a2"}.headers(), map[string]any{"lifetime_seconds": 60}); r.status != 200 {
		t.Fatalf("other principal: %d %s", r.status, r.body)
	}
	e.ws.Advance(time.Hour) // the first seed expires; Entra tokens stay valid
	if r := e.create(h, map[string]any{"lifetime_seconds": 60}); r.status != 200 {
		t.Fatalf("after expiry: %d %s", r.status, r.body)
	}
	states := map[fakedatabricks.TokenState]int{}
	for _, tok := range e.ws.Tokens() {
		states[tok.State]++
	}
	// Expired: the one-hour seed and o2's 60 s token.
	if states[fakedatabricks.Expired] != 2 || states[fakedatabricks.Live] != 3 {
		t.Errorf("states = %v", states)
	}
	// Expired tokens are neither listed nor deletable.
	expired := e.ws.Tokens()[0]
	e.del(h, expired.ID).wantError(t, 404, "RESOURCE_DOES_NOT_EXIST", expired.ID)
	if infos := e.list(h).json(t)["token_infos"].([]any); len(infos) != 3 {
		t.Errorf("listed %d tokens, want 3", len(infos))
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	p := principal{oid: "auth-oid", appid: "auth-app"}
	create := func(h map[string]string) response { return e.create(h, map[string]any{"lifetime_seconds": 60}) }
	with := func(base map[string]string, k, v string) map[string]string {
		h := map[string]string{}
		for kk, vv := range base {
			h[kk] = vv
		}
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	all := p.headers()

	create(nil).wantHTML403(t)
	create(with(all, "Authorization", "Bearer "+p.token(fakeentra.ManagementResource, time.Hour))).wantHTML403(t)
	create(with(all, "Authorization", "Bearer "+p.token(fakeentra.DatabricksResource, -time.Second))).wantHTML403(t)
	create(with(all, "Authorization", "Bearer fake_token")).wantHTML403(t)
	create(with(all, "Authorization", "Bearer dapi0123456789abcdef0123456789abcdef")).wantHTML403(t)
	create(with(all, fakedatabricks.HeaderResourceID, strings.Replace(resourceID, "ws-one", "ws-two", 1))).wantError(t, 400, "INVALID_PARAMETER_VALUE", "does not identify this workspace")
	create(with(all, fakedatabricks.HeaderResourceID, "")).wantError(t, 400, "INVALID_PARAMETER_VALUE", fakedatabricks.HeaderResourceID)
	create(with(all, fakedatabricks.HeaderManagementToken, p.token(fakeentra.DatabricksResource, time.Hour))).wantError(t, 401, "UNAUTHENTICATED", "wrong audience")
	create(with(all, fakedatabricks.HeaderManagementToken, p.token(fakeentra.ManagementResource, -time.Minute))).wantError(t, 401, "UNAUTHENTICATED", "expired")
	create(with(all, fakedatabricks.HeaderManagementToken, principal{"x", "y"}.token(fakeentra.ManagementResource, time.Hour))).wantError(t, 403, "PERMISSION_DENIED", "different principal")
	create(p.bearerOnly()).wantError(t, 403, "PERMISSION_DENIED", `^Management API token must be provided for service principal admin user login$`)
	if e.ws.IsMember(p.oid) {
		t.Fatal("member before a management token was presented")
	}
	// The ARM audience is a management audience too, and the resource id is case-insensitive.
	h := with(all, fakedatabricks.HeaderManagementToken, p.token("https://management.azure.com", time.Hour))
	h[fakedatabricks.HeaderResourceID] = strings.ToLower(resourceID)
	if r := create(h); r.status != 200 {
		t.Fatalf("create with all headers: %d %s", r.status, r.body)
	}
	if !e.ws.IsMember(p.oid) {
		t.Fatal("not a member after a management token")
	}
	if r := create(p.bearerOnly()); r.status != 200 {
		t.Fatalf("member, bearer only: %d %s", r.status, r.body)
	}

	e.ws.SetCanUse(p.appid, false)
	create(all).wantError(t, 403, "PERMISSION_DENIED", `^User auth-app does not have permission to use tokens\.$`)
	e.list(all).wantError(t, 403, "PERMISSION_DENIED", "permission to use tokens")
	e.ws.SetCanUse(p.appid, true)
	if r := e.list(all); r.status != 200 {
		t.Fatalf("list after CAN USE restored: %d", r.status)
	}

	for _, r := range e.ws.Requests() {
		if strings.Contains(fmt.Sprintf("%+v", r), "eyJ") {
			t.Fatalf("request record holds a token: %+v", r)
		}
	}
}

func TestAllowNewPrincipals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{AllowNewPrincipalsWithoutManagementToken: true, TenantID: fakeentra.DefaultTenantID})
	if r := e.list(sp.bearerOnly()); r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	if !e.ws.IsMember(sp.oid) {
		t.Error("not a member")
	}
	wrongTenant := fakeentra.NewToken(fakeentra.Claims{Audience: fakeentra.DatabricksResource, ExpiresAt: time.Now().Add(time.Hour).Unix(), ObjectID: sp.oid, TenantID: "other"})
	e.list(map[string]string{"Authorization": "Bearer " + wrongTenant}).wantHTML403(t)
}

func TestPATAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	r := e.create(sp.headers(), map[string]any{"lifetime_seconds": 600})
	pat := r.json(t)["token_value"].(string)
	id := r.json(t)["token_info"].(map[string]any)["token_id"].(string)
	ph := map[string]string{"Authorization": "Bearer " + pat}
	if l := e.list(ph); l.status != 200 || !strings.Contains(string(l.body), id) {
		t.Fatalf("list with PAT: %d %s", l.status, l.body)
	}
	e.ws.SetTokensEnabled(false)
	e.list(ph).wantHTML403(t)
	e.ws.SetTokensEnabled(true)
	if !e.ws.RevokeToken(id) {
		t.Fatal("RevokeToken")
	}
	e.list(ph).wantHTML403(t)
	if reqs := e.ws.Requests(); reqs[1].Auth != "pat" || reqs[2].Auth != "invalid" {
		t.Errorf("auth kinds %q %q", reqs[1].Auth, reqs[2].Auth)
	}
}

func TestWorkspaceConf(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{MaxTokenLifetimeDays: 90})
	h := sp.headers()
	r := e.do(http.MethodGet, "/api/2.0/workspace-conf?keys=maxTokenLifetimeDays,enableTokensConfig", h, nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"enableTokensConfig":null,"maxTokenLifetimeDays":"90"}` {
		t.Fatalf("conf: %d %s", r.status, r.body)
	}
	e.do(http.MethodGet, "/api/2.0/workspace-conf?keys=nope", h, nil).wantError(t, 400, "INVALID_PARAMETER_VALUE", "nope")
	e.do(http.MethodGet, "/api/2.0/workspace-conf", h, nil).wantError(t, 400, "INVALID_PARAMETER_VALUE", "keys")
	if r := e.do(http.MethodPatch, "/api/2.0/workspace-conf", h, map[string]string{"enableTokensConfig": "false", "maxTokenLifetimeDays": "30"}); r.status != 204 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	e.do(http.MethodPatch, "/api/2.0/workspace-conf", h, map[string]any{"maxTokenLifetimeDays": 30}).wantError(t, 400, "INVALID_PARAMETER_VALUE", "string")
	r = e.do(http.MethodGet, "/api/2.0/workspace-conf?keys=maxTokenLifetimeDays,enableTokensConfig", h, nil)
	if m := r.json(t); m["enableTokensConfig"] != "false" || m["maxTokenLifetimeDays"] != "30" {
		t.Fatalf("conf after patch: %s", r.body)
	}
	e.do(http.MethodGet, "/api/2.0/clusters/list", h, nil).wantError(t, 404, "ENDPOINT_NOT_FOUND", "GET /clusters/list")
	e.do(http.MethodGet, "/api/2.0/token/create", h, nil).wantError(t, 404, "ENDPOINT_NOT_FOUND", "")
	if c := e.ws.Calls(); c[fakedatabricks.OpConf] != 6 || c[fakedatabricks.OpUnknown] != 2 {
		t.Errorf("calls = %v", c)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	h := sp.headers()
	body := map[string]any{"lifetime_seconds": 60}

	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "7"})
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{})
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status503{})
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status500{})
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.HTML403{})
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.PlainText{Status: 400, Body: "INVALID_STATE: workspace is being upgraded"})
	e.ws.InjectFault(fakedatabricks.OpList, fakedatabricks.Status503{RetryAfter: "1"})

	r := e.create(h, body)
	r.wantError(t, 429, "REQUEST_LIMIT_EXCEEDED", "")
	if r.header.Get("Retry-After") != "7" {
		t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
	}
	r = e.create(h, body)
	r.wantError(t, 429, "REQUEST_LIMIT_EXCEEDED", "")
	if _, ok := r.header["Retry-After"]; ok {
		t.Error("Retry-After present")
	}
	e.create(h, body).wantError(t, 503, "TEMPORARILY_UNAVAILABLE", "")
	e.create(h, body).wantError(t, 500, "INTERNAL_ERROR", "")
	e.create(h, body).wantHTML403(t)
	r = e.create(h, body)
	if r.status != 400 || string(r.body) != "INVALID_STATE: workspace is being upgraded" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("plain text: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if len(e.ws.Tokens()) != 0 {
		t.Fatal("a faulted create made a token")
	}
	r = e.list(h)
	r.wantError(t, 503, "TEMPORARILY_UNAVAILABLE", "")
	if r.header.Get("Retry-After") != "1" {
		t.Error("list Retry-After")
	}

	// Ambiguous failure: the token exists but the client hears nothing.
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.DropAfterCreate{})
	if r := e.create(h, map[string]any{"comment": "ambiguous", "lifetime_seconds": 60}); r.err == nil {
		t.Fatalf("DropAfterCreate: got a response %d %s", r.status, r.body)
	}
	live := e.ws.LiveTokens()
	if len(live) != 1 || live[0].Comment != "ambiguous" {
		t.Fatalf("live tokens after DropAfterCreate: %+v", live)
	}
	e.ws.InjectFault(fakedatabricks.OpAny, fakedatabricks.Drop{})
	if r := e.create(h, body); r.err == nil {
		t.Fatal("Drop: got a response")
	}
	if len(e.ws.Tokens()) != 1 {
		t.Fatal("Drop created a token")
	}

	// Delay, then a normal answer; queued per op and for any op, in order.
	e.ws.InjectFault(fakedatabricks.OpAny, fakedatabricks.Delay{D: 30 * time.Millisecond})
	e.ws.InjectFault(fakedatabricks.OpDelete, fakedatabricks.Status500{})
	start := time.Now()
	if r := e.list(h); r.status != 200 || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("delayed list: %d after %v", r.status, time.Since(start))
	}
	e.del(h, live[0].ID).wantError(t, 500, "INTERNAL_ERROR", "")
	if r := e.del(h, live[0].ID); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}

	faults := map[string]int{}
	for _, r := range e.ws.Requests() {
		faults[r.Fault]++
	}
	want := map[string]int{"429": 2, "503": 2, "500": 2, "html403": 1, "plaintext": 1, "dropAfter": 1, "drop": 1, "delay": 1, "": 1}
	for k, v := range want {
		if faults[k] != v {
			t.Errorf("fault %q recorded %d times, want %d (all: %v)", k, faults[k], v, faults)
		}
	}
}

func TestLatencyAndClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	e.ws.SetLatency(25 * time.Millisecond)
	start := time.Now()
	if r := e.list(sp.headers()); r.status != 200 || time.Since(start) < 25*time.Millisecond {
		t.Fatalf("latency: %d after %v", r.status, time.Since(start))
	}
	e.ws.SetLatency(0)
	e.ws.InjectFault(fakedatabricks.OpAny, fakedatabricks.Delay{D: time.Minute})
	done := make(chan response)
	go func() { done <- e.list(sp.headers()) }()
	time.Sleep(20 * time.Millisecond)
	_ = e.ws.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not cut a delay short")
	}
}

func TestRandomFaultsConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	e.ws.SetRandomFaults(42, fakedatabricks.FaultRates{Status429: 0.1, Status503: 0.1, DropAfterCreate: 0.1, Drop: 0.05, Delay: 0.1, MaxDelay: 2 * time.Millisecond, RetryAfter: "0"})
	principals := []principal{{"p1", "a1"}, {"p2", "a2"}, {"p3", "a3"}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := map[string]int{}
	for i := range 60 {
		p := principals[i%len(principals)]
		wg.Go(func() {
			r := e.create(p.headers(), map[string]any{"lifetime_seconds": 60})
			if r.err == nil && r.status == 200 {
				mu.Lock()
				ok[p.oid]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	e.ws.ClearFaults()
	total := 0
	for _, p := range principals {
		l := e.list(p.headers())
		var lr struct {
			TokenInfos []any `json:"token_infos"`
		}
		_ = json.Unmarshal(l.body, &lr)
		// Every acknowledged create is live; dropped-after-create ones are live too.
		if len(lr.TokenInfos) < ok[p.oid] {
			t.Errorf("%s: %d live < %d acknowledged", p.oid, len(lr.TokenInfos), ok[p.oid])
		}
		total += len(lr.TokenInfos)
	}
	if total != len(e.ws.LiveTokens()) {
		t.Errorf("listed %d, live %d", total, len(e.ws.LiveTokens()))
	}
	faulted := 0
	for _, r := range e.ws.Requests() {
		if r.Fault != "" {
			faulted++
		}
	}
	if faulted == 0 || faulted == 60 {
		t.Errorf("faulted %d of 60 calls; random faults look broken", faulted)
	}
	if e.ws.Calls()[fakedatabricks.OpCreate] != 60 {
		t.Errorf("calls = %v", e.ws.Calls())
	}
}

func TestRandomFaultsDeterministic(t *testing.T) {
	t.Parallel()
	seq := func() []string {
		e := newEnv(t, fakedatabricks.Options{AllowNewPrincipalsWithoutManagementToken: true})
		e.ws.SetRandomFaults(7, fakedatabricks.FaultRates{Status429: 0.3, Status500: 0.2, Ops: []string{fakedatabricks.OpList}})
		var out []string
		for range 20 {
			out = append(out, fmt.Sprint(e.list(sp.bearerOnly()).status))
		}
		if r := e.create(sp.bearerOnly(), nil); r.status != 200 {
			t.Errorf("create not restricted by Ops: %d", r.status)
		}
		return out
	}
	a, b := seq(), seq()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
}

func TestUntrustedClientFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	if _, err := http.Get(e.ws.URL() + "/api/2.0/token/list"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client without the test CA: err = %v", err)
	}
}

func TestRedirectFault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	// Look at the redirect itself rather than where it points.
	e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h := sp.headers()
	e.ws.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Redirect{Location: "https://elsewhere.example/api/2.0/token/create"})
	e.ws.InjectFault(fakedatabricks.OpList, fakedatabricks.Redirect{Location: "http://elsewhere.example/", Status: http.StatusMovedPermanently})
	for _, tt := range []struct {
		r        response
		status   int
		location string
	}{
		{e.create(h, map[string]any{"lifetime_seconds": 60}), http.StatusTemporaryRedirect, "https://elsewhere.example/api/2.0/token/create"},
		{e.list(h), http.StatusMovedPermanently, "http://elsewhere.example/"},
	} {
		if tt.r.err != nil || tt.r.status != tt.status || tt.r.header.Get("Location") != tt.location || string(tt.r.body) != fakedatabricks.RedirectBody {
			t.Errorf("redirect: %d Location %q body %q %v; want %d to %s", tt.r.status, tt.r.header.Get("Location"), tt.r.body, tt.r.err, tt.status, tt.location)
		}
	}
	if len(e.ws.Tokens()) != 0 {
		t.Error("a redirected create made a token")
	}
	if n := e.ws.Requests(); len(n) != 2 || n[0].Fault != "redirect" {
		t.Errorf("requests: %+v", n)
	}
}

func TestScopedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	h := sp.headers()
	r := e.create(h, map[string]any{"lifetime_seconds": 600, "scopes": []string{"sql:read", "jobs"}})
	if r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	info := r.json(t)["token_info"].(map[string]any)
	if got := fmt.Sprint(info["scopes"]); got != "[sql:read jobs]" {
		t.Errorf("token_info.scopes = %s", got)
	}
	pat := r.json(t)["token_value"].(string)
	ph := map[string]string{"Authorization": "Bearer " + pat}

	// Me is under every scope; the Token API needs authentication.
	if me := e.do(http.MethodGet, "/api/2.0/preview/scim/v2/Me", ph, nil); me.status != 200 || me.json(t)["applicationId"] != sp.appid {
		t.Errorf("Me with a scoped PAT: %d %s", me.status, me.body)
	}
	e.list(ph).wantError(t, 403, "PERMISSION_DENIED", "^Provided access token does not have required scopes: authentication$")

	// list shows the scopes; an unscoped token shows none and may call the Token API.
	l := e.list(sp.bearerOnly())
	if !strings.Contains(string(l.body), `"scopes":["sql:read","jobs"]`) {
		t.Errorf("list = %s", l.body)
	}
	plain := e.create(h, map[string]any{"lifetime_seconds": 600})
	if strings.Contains(string(plain.body), "scopes") {
		t.Errorf("an unscoped token lists scopes: %s", plain.body)
	}
	if l := e.list(map[string]string{"Authorization": "Bearer " + plain.json(t)["token_value"].(string)}); l.status != 200 {
		t.Errorf("list with an unscoped PAT: %d %s", l.status, l.body)
	}

	// :read allows GET only; authentication:read can list but not create.
	ar := e.create(h, map[string]any{"lifetime_seconds": 600, "scopes": []string{"authentication:read"}}).json(t)["token_value"].(string)
	arh := map[string]string{"Authorization": "Bearer " + ar}
	if l := e.list(arh); l.status != 200 {
		t.Errorf("list with authentication:read: %d %s", l.status, l.body)
	}
	e.create(arh, map[string]any{"lifetime_seconds": 60}).wantError(t, 403, "PERMISSION_DENIED", "required scopes: authentication$")

	// Autoscoped tokens hold all-apis while observed.
	auto := e.create(h, map[string]any{"lifetime_seconds": 600, "scopes": []string{"sql"}, "autoscope_enabled": true})
	if auto.json(t)["token_info"].(map[string]any)["autoscope_state"] != "AUTOSCOPE_STATE_RUNNING" {
		t.Errorf("autoscope: %s", auto.body)
	}
	if l := e.list(map[string]string{"Authorization": "Bearer " + auto.json(t)["token_value"].(string)}); l.status != 200 {
		t.Errorf("list with an autoscoped PAT: %d %s", l.status, l.body)
	}

	e.create(h, map[string]any{"scopes": []string{"SQL"}}).wantError(t, 400, "INVALID_PARAMETER_VALUE", `^Invalid scope: "SQL"$`)
	toks := e.ws.Tokens()
	if got := fmt.Sprint(toks[0].Scopes); got != "[sql:read jobs]" || toks[1].Scopes != nil || !toks[3].Autoscope {
		t.Errorf("Tokens() scopes: %v %v %v", toks[0].Scopes, toks[1].Scopes, toks[3].Autoscope)
	}
}

func TestIssueBrokenTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fakedatabricks.Options{})
	e.ws.IssueBrokenTokens(1)
	broken := e.create(sp.headers(), map[string]any{"lifetime_seconds": 600})
	good := e.create(sp.headers(), map[string]any{"lifetime_seconds": 600})
	if broken.status != 200 || good.status != 200 {
		t.Fatalf("creates: %d %d", broken.status, good.status)
	}
	me := func(r response) response {
		return e.do(http.MethodGet, "/api/2.0/preview/scim/v2/Me", map[string]string{"Authorization": "Bearer " + r.json(t)["token_value"].(string)}, nil)
	}
	me(broken).wantHTML403(t)
	if r := me(good); r.status != 200 {
		t.Errorf("the token after the broken one: %d %s", r.status, r.body)
	}
	if toks := e.ws.LiveTokens(); len(toks) != 2 || !toks[0].Broken || toks[1].Broken {
		t.Errorf("live tokens: %+v", toks)
	}
}
