package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

const (
	logicAppID   = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa" // the Logic App's managed identity (client id)
	intruderApp  = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
	readerObject = "cccccccc-3333-4333-8333-cccccccccccc"
)

// testPolicy grants the Tokens.Create role create and revoke on dbw-01 with at
// most one hour, a reader object id list on the whole subscription, and
// queue commands only dbw-01.
func testPolicy() string {
	return fmt.Sprintf(`{"version":1,"rules":[
	 {"principals":[{"appRole":"Tokens.Create"}],"actions":["create","revoke"],"workspaces":["%[1]s"],"maxLifetime":"1h"},
	 {"principals":[{"objectId":"%[2]s"}],"actions":["list"],"workspaces":["/subscriptions/%[3]s"]},
	 {"principals":["queue"],"actions":["create","revoke"],"workspaces":["%[1]s"]}]}`, ws(0), readerObject, stack.Subscription)
}

func bearer(c fakeeasyauth.Caller) []string {
	return []string{"Authorization", "Bearer " + fakeeasyauth.NewCallerToken(c)}
}

func TestAuthorizationPolicy(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{workspaces: 2, serviceBus: true, easyAuth: true, settings: []string{"AUTHZ_POLICY=" + testPolicy(), "RESULTS_INCLUDE_TOKEN_VALUE=true"}})
	creator := bearer(fakeeasyauth.Caller{AppID: logicAppID, Roles: []string{"Tokens.Create"}})
	intruder := bearer(fakeeasyauth.Caller{AppID: intruderApp})
	reader := bearer(fakeeasyauth.Caller{ObjectID: readerObject, AppID: intruderApp})

	// Allowed: create (the rule caps the default lifetime to 1 h), list, revoke.
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0)}, creator...)
	rec := r.json(t)
	created, _ := time.Parse(time.RFC3339, rec["createdAt"].(string))
	expires, _ := time.Parse(time.RFC3339, rec["expiresAt"].(string))
	if d := expires.Sub(created); d > time.Hour+time.Second {
		t.Errorf("lifetime %s; the rule caps it at 1h", d)
	}
	res := e.results(1, 20*time.Second)[0]
	if by, _ := res.data()["requestedBy"].(string); !strings.Contains(by, logicAppID) {
		t.Errorf("requestedBy = %q", by)
	}
	if r := e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(1), nil, reader...); r.Status != 200 {
		t.Errorf("allowed list: %d %s", r.Status, r.Body)
	}
	if r := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": rec["tokenId"]}, creator...); r.Status != 200 || r.json(t)["status"] != "revoked" {
		t.Errorf("allowed revoke: %d %s", r.Status, r.Body)
	}
	e.results(1, 20*time.Second)

	// Refusals, each before any upstream call.
	before := len(e.stack.Workspaces[0].Requests()) + len(e.stack.Workspaces[1].Requests())
	tests := []struct {
		name, method, path string
		body               map[string]any
		header             []string
		status             int
		code               string
	}{
		{"no role", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0)}, intruder, 403, "NotAuthorized"},
		{"other workspace", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(1)}, creator, 403, "NotAuthorized"},
		{"lifetime above the rule", "POST", "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 7200}, creator, 403, "NotAuthorized"},
		{"list not granted", "GET", "/api/list-tokens?workspaceResourceId=" + ws(0), nil, creator, 403, "NotAuthorized"},
		{"revoke not granted", "POST", "/api/revoke-token", map[string]any{"workspaceResourceId": ws(1), "tokenId": "abc"}, reader, 403, "NotAuthorized"},
	}
	for _, tt := range tests {
		r := e.do(tt.method, tt.path, tt.body, tt.header...)
		if r.Status != tt.status || r.errorCode(t) != tt.code {
			t.Errorf("%s: %d %s", tt.name, r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), "Tokens.Create") || strings.Contains(string(r.Body), readerObject) {
			t.Errorf("%s: the answer reveals the policy: %s", tt.name, r.Body)
		}
	}
	if r := e.create(map[string]any{"workspaceResourceId": ws(0)}, intruder...); !strings.Contains(string(r.Body), "create tokens in workspace") {
		t.Errorf("the refusal should name the action and workspace: %s", r.Body)
	}
	// Easy Auth itself refuses a caller without a token (the platform's 401).
	if r := e.create(map[string]any{"workspaceResourceId": ws(0)}); r.Status != 401 {
		t.Errorf("no token: %d", r.Status)
	}
	after := len(e.stack.Workspaces[0].Requests()) + len(e.stack.Workspaces[1].Requests())
	if after != before {
		t.Errorf("%d upstream calls for refused requests", after-before)
	}
	e.results(5, 20*time.Second) // the refused creates and revokes publish Failed results (lists publish nothing)

	// Forged or broken principal headers reaching the binary: 401, never a token.
	direct := handlerURL(t, e)
	good := fakeeasyauth.Headers(mustClaims(t), []string{"Tokens.Create"}, "")
	forged := []struct {
		name string
		hdr  http.Header
	}{
		{"no principal", http.Header{}},
		{"bad base64", http.Header{"X-Ms-Client-Principal": {"%%%"}, "X-Ms-Client-Principal-Id": {good.Get("X-Ms-Client-Principal-Id")}, "X-Ms-Client-Principal-Idp": {"aad"}}},
		{"not JSON", http.Header{"X-Ms-Client-Principal": {base64.StdEncoding.EncodeToString([]byte("nope"))}, "X-Ms-Client-Principal-Id": {good.Get("X-Ms-Client-Principal-Id")}, "X-Ms-Client-Principal-Idp": {"aad"}}},
		{"principal without companions", http.Header{"X-Ms-Client-Principal": good["X-Ms-Client-Principal"]}},
		{"id disagrees with the claims", http.Header{"X-Ms-Client-Principal": good["X-Ms-Client-Principal"], "X-Ms-Client-Principal-Id": {readerObject}, "X-Ms-Client-Principal-Idp": {"aad"}}},
	}
	for _, f := range forged {
		req, _ := http.NewRequest(http.MethodPost, direct+"/api/create-token", strings.NewReader(`{"workspaceResourceId":"`+ws(0)+`"}`))
		for k, v := range f.hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s: %d; want 401", f.name, resp.StatusCode)
		}
	}
	if n := len(e.stack.Workspaces[0].LiveTokens()); n != 0 {
		t.Errorf("%d live tokens after refusals", n)
	}

	// Queue commands are limited to what the queue rule allows.
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(1)}), "q-denied")
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0)}), "q-allowed")
	byCorr := map[string]result{}
	for _, r := range e.results(7, 20*time.Second) { // 5 Failed from the forged calls + 2 queue outcomes
		byCorr[r.CorrelationID] = r
	}
	if r := byCorr["q-denied"]; r.Subject != "Databricks.Token.Failed" || r.data()["error"].(map[string]any)["code"] != "NotAuthorized" {
		t.Errorf("queue command outside the rule: %+v", r)
	}
	if r := byCorr["q-allowed"]; r.Subject != "Databricks.Token.Created" || r.data()["requestedBy"] != "queue" {
		t.Errorf("queue command inside the rule: %+v", r)
	}

	// The audit trail: one line per decision, with the caller's ids and never a secret.
	logs := e.output.String()
	if !strings.Contains(logs, `"caller_app_id":"`+intruderApp+`"`) || !strings.Contains(logs, `"code":"NotAuthorized"`) {
		t.Errorf("no audit line for the refusal in:\n%s", logs)
	}
}

func mustClaims(t *testing.T) fakeentra.Claims {
	t.Helper()
	_, c := fakeeasyauth.NewCallerTokenClaims(fakeeasyauth.Caller{AppID: logicAppID, Roles: []string{"Tokens.Create"}})
	return c
}

func TestStartRefusedForBadPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   []string
		wants string
	}{
		{"malformed policy", []string{"AUTHZ_POLICY={\"version\":1,\"rules\":[{\"actions\":[\"mint\"]}]}"}, "AUTHZ_POLICY: rules[0]"},
		{"policy file missing", []string{"AUTHZ_POLICY=@/nonexistent/policy.json"}, "AUTHZ_POLICY:"},
		{"policy behind a non-loopback listener", []string{"AUTHZ_POLICY=" + testPolicy(), "LISTEN_ADDRESS=0.0.0.0"}, "LISTEN_ADDRESS 0.0.0.0 is not a loopback address"},
		{"policy without Easy Auth in Azure", []string{"AUTHZ_POLICY=" + testPolicy(), "WEBSITE_SITE_NAME=app", "WEBSITE_AUTH_ENABLED=False"}, "App Service Authentication is off"},
	}
	for _, tt := range tests {
		out, code := runHandler(t, tt.env...)
		if code != 2 || !strings.Contains(out, tt.wants) {
			t.Errorf("%s: exit %d, output:\n%s", tt.name, code, out)
		}
	}
}

// runHandler runs the binary with only env set and returns its output and
// exit code; for settings that must stop it at start.
func runHandler(t *testing.T, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(handlerBinary)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "FUNCTIONS_CUSTOMHANDLER_PORT=0"}, env...)
	// A binary that does not stop is a failure too: it would be serving.
	timer := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}
