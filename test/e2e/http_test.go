package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

func TestIssueListRevoke(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	dbw := e.stack.Workspaces[0]

	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "comment": "nightly ETL", "lifetimeSeconds": 3600})
	rec := r.json(t)
	value, _ := rec["tokenValue"].(string)
	tokenID, _ := rec["tokenId"].(string)
	live := dbw.LiveTokens()
	if len(live) != 1 || live[0].ID != tokenID || live[0].Value != value {
		t.Fatalf("workspace holds %d live tokens; the response's id/value must be the live one", len(live))
	}
	if rec["comment"] != "nightly ETL" || rec["workspaceResourceId"] != ws(0) || rec["workspaceUrl"] != "https://"+dbw.Host() {
		t.Errorf("record = %v", rec)
	}
	created, _ := time.Parse(time.RFC3339, rec["createdAt"].(string))
	expires, _ := time.Parse(time.RFC3339, rec["expiresAt"].(string))
	if d := expires.Sub(created); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("lifetime = %s, want 1h", d)
	}
	if !strings.HasSuffix(rec["expiresAt"].(string), "Z") {
		t.Errorf("expiresAt %v is not UTC", rec["expiresAt"])
	}
	if !strings.Contains(live[0].Comment, "nightly ETL") || live[0].Comment == "nightly ETL" {
		t.Errorf("Databricks comment %q should carry the caller's text and the service's marker", live[0].Comment)
	}

	r = e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(0), nil)
	list := r.json(t)["tokens"].([]any)
	if r.Status != 200 || len(list) != 1 || list[0].(map[string]any)["comment"] != "nightly ETL" || list[0].(map[string]any)["tokenId"] != tokenID {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if strings.Contains(string(r.Body), "dapi") {
		t.Error("list leaks a token value")
	}

	r = e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": tokenID})
	if r.Status != 200 || r.json(t)["status"] != "revoked" || r.json(t)["tokenId"] != tokenID {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if len(dbw.LiveTokens()) != 0 {
		t.Error("token still live after revoke")
	}
	r = e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": tokenID})
	if r.Status != 200 || r.json(t)["status"] != "notFound" {
		t.Fatalf("second revoke: %d %s", r.Status, r.Body)
	}
	r = e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(0), nil)
	if r.Status != 200 || len(r.json(t)["tokens"].([]any)) != 0 {
		t.Fatalf("list after revoke: %d %s", r.Status, r.Body)
	}

	// Every Databricks call carried the three headers, each token for its audience.
	for _, req := range dbw.Requests() {
		if req.BearerAudience != "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d" || !req.ManagementTokenPresent ||
			!strings.HasPrefix(req.ManagementAudience, "https://management.core.windows.net") || !strings.EqualFold(req.ResourceID, ws(0)) {
			t.Errorf("request %s %s: bearer aud %q, management %v %q, resource id %q", req.Method, req.Path,
				req.BearerAudience, req.ManagementTokenPresent, req.ManagementAudience, req.ResourceID)
		}
	}
}

func TestSameRequestIDGivesOneToken(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	body := map[string]any{"workspaceResourceId": ws(0), "requestId": "etl-2026-11-28"}
	first := e.create(body)
	again := e.create(body)
	if first.Status != 201 || again.Status != 200 {
		t.Fatalf("statuses %d, %d; want 201, 200", first.Status, again.Status)
	}
	if first.json(t)["tokenId"] != again.json(t)["tokenId"] || again.json(t)["tokenValue"] != nil || again.json(t)["requestId"] != "etl-2026-11-28" {
		t.Errorf("replay = %s", again.Body)
	}
	// The same through the x-ms-client-request-id header.
	h1 := e.create(map[string]any{"workspaceResourceId": ws(0)}, "x-ms-client-request-id", "hdr-1")
	h2 := e.create(map[string]any{"workspaceResourceId": ws(0)}, "x-ms-client-request-id", "hdr-1")
	if h1.Status != 201 || h2.Status != 200 || h1.json(t)["tokenId"] != h2.json(t)["tokenId"] || h1.json(t)["requestId"] != "hdr-1" {
		t.Errorf("header replay: %d %s / %d %s", h1.Status, h1.Body, h2.Status, h2.Body)
	}
	// And concurrently.
	var wg sync.WaitGroup
	statuses := make([]int, 12)
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "burst"}).Status
		})
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		if s == 201 {
			created++
		} else if s != 200 {
			t.Errorf("status %d in a concurrent burst", s)
		}
	}
	if created != 1 {
		t.Errorf("%d calls got 201; want exactly one", created)
	}
	if n := len(e.stack.Workspaces[0].LiveTokens()); n != 3 {
		t.Errorf("%d live tokens; want 3 (one per request id)", n)
	}
}

func TestBadRequestsAreRefusedBeforeAnyUpstreamCall(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	long := strings.Repeat("x", 201)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
		targets            []string
	}{
		{"malformed JSON", "POST", "/api/create-token", `{"workspaceResourceId":`, 400, "InvalidRequest", []string{"body"}},
		{"empty body", "POST", "/api/create-token", ``, 400, "InvalidRequest", []string{"body"}},
		{"unknown field", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "scope": "all"}, 400, "InvalidRequest", []string{"scope"}},
		{"bad resource id", "POST", "/api/create-token", map[string]any{"workspaceResourceId": "/subscriptions/x"}, 400, "InvalidRequest", []string{"workspaceResourceId"}},
		{"lifetime 0", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 0}, 400, "InvalidRequest", []string{"lifetimeSeconds"}},
		{"lifetime negative", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": -5}, 400, "InvalidRequest", []string{"lifetimeSeconds"}},
		{"lifetime over max", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 7776001}, 400, "InvalidRequest", []string{"lifetimeSeconds"}},
		{"comment too long", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "comment": long}, 400, "InvalidRequest", []string{"comment"}},
		{"comment control char", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "comment": "a\x1bb"}, 400, "InvalidRequest", []string{"comment"}},
		{"secretName without Key Vault", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "secretName": "etl"}, 400, "InvalidRequest", []string{"secretName"}},
		{"several problems", "POST", "/api/create-token", map[string]any{"workspaceResourceId": "x", "lifetimeSeconds": 0, "comment": long}, 400, "InvalidRequest",
			[]string{"workspaceResourceId", "comment", "lifetimeSeconds"}},
		{"revoke without token id", "POST", "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0)}, 400, "InvalidRequest", []string{"tokenId"}},
		{"list without workspace", "GET", "/api/list-tokens", nil, 400, "InvalidRequest", []string{"workspaceResourceId"}},
		{"body over 64 KiB", "POST", "/api/create-token", `{"comment":"` + strings.Repeat("a", 70000) + `"}`, 413, "RequestTooLarge", nil},
		{"bad client request id", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0)}, 400, "InvalidRequest", []string{"x-ms-client-request-id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.name == "bad client request id" {
				hdr = []string{"x-ms-client-request-id", "has spaces in it"}
			}
			r := e.do(tt.method, tt.path, tt.body, hdr...)
			if r.Status != tt.status || r.errorCode(t) != tt.code {
				t.Fatalf("%d %s; want %d %s", r.Status, r.Body, tt.status, tt.code)
			}
			if r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
			}
			var got []string
			details, _ := r.json(t)["error"].(map[string]any)["details"].([]any)
			for _, d := range details {
				got = append(got, d.(map[string]any)["target"].(string))
			}
			if tt.targets != nil && strings.Join(got, ",") != strings.Join(tt.targets, ",") {
				t.Errorf("detail targets %v; want %v", got, tt.targets)
			}
		})
	}
	if n := len(e.stack.Workspaces[0].Requests()) + len(e.stack.ARM.Requests()); n != 0 {
		t.Errorf("%d upstream calls for requests that were all invalid", n)
	}
	if c := e.stack.MSI.Calls(); len(c) != 0 {
		t.Errorf("Entra was asked for tokens: %v", c)
	}
}

func TestWrongMethodAnswers405WithAllow(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	// The host only forwards the methods function.json lists (others are
	// its 404), so the binary is also called directly, as curl would.
	direct := strings.Replace(e.host.URL(), e.host.URL(), handlerURL(t, e), 1)
	for path, allow := range map[string]string{"/api/create-token": "POST", "/api/revoke-token": "POST", "/api/list-tokens": "GET, HEAD", "/api/tokens": "GET, HEAD"} {
		req, _ := http.NewRequest(http.MethodPut, direct+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != allow || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("PUT %s: %d Allow=%q", path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

// TestWrongMethodThroughTheHostIs404 proves what a caller of the deployed
// app gets for a method the function does not list: the Functions host's
// router has no route for it (function.json's methods are a route
// constraint, WebScriptHostHttpRoutesManager) and answers an empty 404
// before the handler is involved, and the README and api/openapi.json say
// so next to the handler's own 405.
func TestWrongMethodThroughTheHostIs404(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	for path, methods := range map[string][]string{
		"/api/create-token": {http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch},
		"/api/revoke-token": {http.MethodGet, http.MethodPut},
		"/api/list-tokens":  {http.MethodPost, http.MethodHead, http.MethodDelete},
		"/api/tokens":       {http.MethodPost, http.MethodHead, http.MethodDelete},
	} {
		for _, m := range methods {
			before := len(e.host.Invocations())
			r := e.do(m, path, nil)
			if r.Status != 404 || len(r.Body) != 0 {
				t.Errorf("%s %s through the host: %d %q; want the host's empty 404", m, path, r.Status, r.Body)
			}
			if n := len(e.host.Invocations()); n != before {
				t.Errorf("%s %s reached the handler (%d invocations)", m, path, n-before)
			}
		}
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| 405 \\| `MethodNotAllowed` \\|([^\n]*)$").FindSubmatch(readme)
	if row == nil || !bytes.Contains(row[1], []byte("404")) || !bytes.Contains(row[1], []byte("host")) {
		t.Errorf("README.md's 405 row does not say that through the Functions host a wrong method is the host's 404: %q", row)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot(), "api", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(doc, []byte("through the Functions host, methods the function does not list are the host's 404")); n != 4 {
		t.Errorf("api/openapi.json explains the host's 404 on %d of the 4 operations' 405 responses", n)
	}
}

// handlerURL finds the binary's own address from its start-up log line.
func handlerURL(t *testing.T, e *env) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(e.output.String(), "\n") {
			if i := strings.Index(line, `"address":"`); i >= 0 && strings.Contains(line, `"msg":"listening"`) {
				addr := line[i+len(`"address":"`):]
				addr = addr[:strings.Index(addr, `"`)]
				if !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Errorf("the handler listens on %s, not loopback", addr)
				}
				return "http://" + addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no listening line in the handler's log")
	return ""
}

func TestWorkspaceErrors(t *testing.T) {
	t.Parallel()
	foreignSub := "/subscriptions/99999999-9999-9999-9999-999999999999/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/other"
	unknown := "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/missing"
	provisioning := "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/fresh"
	foreignHost := "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/elsewhere"
	var rogue *fakedatabricks.Workspace
	e := start(t, envOptions{before: func(s *stack.Stack) {
		if err := s.ARM.AddWorkspace(provisioning, "", "Accepted"); err != nil {
			t.Fatal(err)
		}
		// A workspace whose ARM record points at a host outside the allow-list.
		var err error
		rogue, err = fakedatabricks.StartWorkspace(s.CA, fakedatabricks.Options{ResourceID: foreignHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rogue.Close() })
		if err := s.ARM.AddWorkspace(foreignHost, rogue.Host(), "Succeeded"); err != nil {
			t.Fatal(err)
		}
	}})
	tests := []struct {
		name, workspace string
		status          int
		code            string
	}{
		{"subscription outside the allow-list", foreignSub, 403, "WorkspaceNotAllowed"},
		{"host outside the allow-list", foreignHost, 403, "WorkspaceNotAllowed"},
		{"unknown workspace", unknown, 404, "WorkspaceNotFound"},
		{"workspace still provisioning", provisioning, 503, "WorkspaceNotReady"},
	}
	for _, tt := range tests {
		r := e.create(map[string]any{"workspaceResourceId": tt.workspace})
		if r.Status != tt.status || r.errorCode(t) != tt.code {
			t.Errorf("%s: %d %s; want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
		if tt.status == 503 && r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tt.name)
		}
	}
	if n := len(rogue.Requests()); n != 0 {
		t.Errorf("the host outside the allow-list received %d requests (and with them the management token)", n)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{settings: []string{"UPSTREAM_RETRY_BUDGET=3s"}})
	dbw := e.stack.Workspaces[0]
	create := func() response { return e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 600}) }

	// Throttling that clears within the budget is invisible to the caller.
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "1"})
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{})
	if r := create(); r.Status != 201 {
		t.Fatalf("after two 429s: %d %s", r.Status, r.Body)
	}
	// A Retry-After beyond the budget is passed on at once.
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "120"})
	start := time.Now()
	r := create()
	if r.Status != 503 || r.errorCode(t) != "UpstreamUnavailable" || r.Header.Get("Retry-After") != "120" {
		t.Errorf("429 Retry-After 120: %d %s Retry-After=%q", r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("the handler waited %s for a retry it could not afford", time.Since(start))
	}
	// A workspace that drops the connection after creating: no orphan, one live token.
	before := len(dbw.LiveTokens())
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.DropAfterCreate{})
	if r := create(); r.Status != 201 {
		t.Fatalf("after a dropped create: %d %s", r.Status, r.Body)
	}
	if n := len(dbw.LiveTokens()); n != before+1 {
		t.Errorf("live tokens went from %d to %d; want exactly one more (the lost one revoked)", before, n)
	}
	// Gateway HTML 403 and missing CAN USE are UpstreamError with a useful message.
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.HTML403{})
	if r := create(); r.Status != 502 || r.errorCode(t) != "UpstreamError" {
		t.Errorf("HTML 403: %d %s", r.Status, r.Body)
	}
	dbw.SetCanUse(e.stack.MSI.Identity().ObjectID, false)
	r = create()
	if r.Status != 502 || !strings.Contains(string(r.Body), "CAN USE") {
		t.Errorf("no CAN USE: %d %s", r.Status, r.Body)
	}
	dbw.SetCanUse(e.stack.MSI.Identity().ObjectID, true)
	// 503 storms outlasting the budget end in 503 with Retry-After.
	for range 20 {
		dbw.InjectFault(fakedatabricks.OpList, fakedatabricks.Status503{})
	}
	r = e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(0), nil)
	if r.Status != 503 || r.Header.Get("Retry-After") == "" {
		t.Errorf("503 storm: %d %s", r.Status, r.Body)
	}
	dbw.ClearFaults()
	// Revoke is idempotent for ids Databricks never knew.
	r = e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": "0000"})
	if r.Status != 200 || r.json(t)["status"] != "notFound" {
		t.Errorf("revoke unknown: %d %s", r.Status, r.Body)
	}
}

func TestQuotaExceeded(t *testing.T) {
	t.Parallel()
	quotaWS := "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/full"
	e := start(t, envOptions{before: func(s *stack.Stack) {
		w, err := fakedatabricks.StartWorkspace(s.CA, fakedatabricks.Options{ResourceID: quotaWS, MaxLiveTokens: 2})
		if err != nil {
			t.Fatal(err)
		}
		s.Workspaces = append(s.Workspaces, w)
		if err := s.ARM.AddWorkspace(quotaWS, w.Host(), "Succeeded"); err != nil {
			t.Fatal(err)
		}
	}})
	for i := range 3 {
		r := e.create(map[string]any{"workspaceResourceId": quotaWS})
		want := 201
		if i == 2 {
			want = 409
		}
		if r.Status != want {
			t.Fatalf("create %d: %d %s", i, r.Status, r.Body)
		}
		if want == 409 && r.errorCode(t) != "TokenQuotaExceeded" {
			t.Errorf("code = %s", r.errorCode(t))
		}
	}
}

func TestUpstreamCallsAreAmortised(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	const n = 25
	for i := range n {
		e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "comment": fmt.Sprint(i)})
	}
	entra := 0
	for _, c := range e.stack.MSI.Calls() {
		entra += c
	}
	arm := len(e.stack.ARM.Requests())
	dbx := len(e.stack.Workspaces[0].Requests())
	t.Logf("%d creates: Entra %d, ARM %d, Databricks %d calls", n, entra, arm, dbx)
	// One workspace-conf read per workspace and hour checks lifetimes over a day.
	if entra > 2 || arm != 1 || dbx > n+1 || e.stack.Workspaces[0].Calls()[fakedatabricks.OpCreate] != n {
		t.Errorf("Entra %d (want ≤ 2), ARM %d (want 1), Databricks %d (want %d creates and at most one settings read)", entra, arm, dbx, n)
	}
}

// TestErrorMessagesReadAsWritten proves a refusal says what is wrong in
// plain text: a huge whole-number lifetime is out of range (not "not a whole
// number"), and the contract's JSON is not HTML-escaped, so the resource id
// shape reads /subscriptions/<subscription id>/… rather than \u003c…\u003e.
func TestErrorMessagesReadAsWritten(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	for _, huge := range []string{"99999999999999999999", "-99999999999999999999"} {
		r := e.do("POST", "/api/create-token", `{"workspaceResourceId":"`+ws(0)+`","lifetimeSeconds":`+huge+`}`)
		msg := string(r.Body)
		if r.Status != 400 || !strings.Contains(msg, "must be between 1 and 7776000") || !strings.Contains(msg, "got "+huge) || strings.Contains(msg, "whole number") {
			t.Errorf("lifetimeSeconds %s: %d %s; want 400 saying it must be between 1 and 7776000", huge, r.Status, msg)
		}
	}
	r := e.do("POST", "/api/create-token", map[string]any{"workspaceResourceId": "/subscriptions/x"})
	if r.Status != 400 || !strings.Contains(string(r.Body), "/subscriptions/<subscription id>/resourceGroups/<group>") {
		t.Errorf("bad resource id: %d %s; want the shape with literal < and >", r.Status, r.Body)
	}
	if bytes.Contains(r.Body, []byte(`\u003c`)) || bytes.Contains(r.Body, []byte(`\u003e`)) || bytes.Contains(r.Body, []byte(`\u0026`)) {
		t.Errorf("the error body is HTML-escaped: %s", r.Body)
	}
}

// An identity endpoint that drops its connections or is not listening is
// unavailable, not a refusal of the identity: 503 with Retry-After, never
// the permission_denied that pages someone (azidentity reports both as an
// authentication failure; only one with an answer is a refusal).
func TestUnreachableIdentityEndpointIsUnavailable(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]envOptions{
		"dropping":      {before: func(s *stack.Stack) { s.MSI.InjectFault(fakeentra.Fault{Drop: true}) }},
		"not listening": {settings: []string{"IDENTITY_ENDPOINT=http://127.0.0.1:1/msi/token"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if o.before != nil {
				before := o.before
				o.before = func(s *stack.Stack) {
					for range 8 {
						before(s)
					}
				}
			}
			e := start(t, o)
			r := e.create(map[string]any{"workspaceResourceId": ws(0)})
			if r.Status != http.StatusServiceUnavailable || r.errorCode(t) != "UpstreamUnavailable" || r.Header.Get("Retry-After") == "" {
				t.Errorf("%d %s Retry-After=%q; want 503 UpstreamUnavailable with Retry-After", r.Status, r.Body, r.Header.Get("Retry-After"))
			}
			for _, l := range e.auditLines() {
				if l["permission_denied"] == true {
					t.Errorf("audit line %v says permission_denied", l)
				}
			}
		})
	}
}
