package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

// scopePolicy: the Logic App may only get read-only SQL tokens on dbw-00;
// the admin app may mint authentication tokens (named literally); the
// operator may have anything scoped, but not authentication.
func scopePolicy() string {
	return fmt.Sprintf(`{"version":1,"rules":[
	 {"principals":[{"appId":"%[2]s"}],"actions":["create"],"workspaces":["%[1]s"],"requireScopes":true,"scopes":["sql:read*"]},
	 {"principals":[{"appId":"%[3]s"}],"actions":["create"],"workspaces":["%[1]s"],"scopes":["authentication"]},
	 {"principals":[{"appId":"%[4]s"}],"actions":["create"],"workspaces":["%[1]s"],"requireScopes":true,"scopes":["*"]}]}`,
		ws(0), logicAppID, adminApp, operatorApp)
}

const (
	adminApp    = "dddddddd-4444-4444-8444-dddddddddddd"
	operatorApp = "eeeeeeee-5555-4555-8555-eeeeeeeeeeee"
)

func TestScopePolicyRefusesBeforeAnyUpstreamCall(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{easyAuth: true, settings: []string{"AUTHZ_POLICY=" + scopePolicy()}})
	logicApp := bearer(fakeeasyauth.Caller{AppID: logicAppID})
	admin := bearer(fakeeasyauth.Caller{AppID: adminApp})
	operator := bearer(fakeeasyauth.Caller{AppID: operatorApp})
	dbw := e.stack.Workspaces[0]

	allowed := []struct {
		name   string
		who    []string
		scopes []string
	}{
		{"read-only SQL", logicApp, []string{"sql:read"}},
		{"read-only SQL queries", logicApp, []string{"sql:read:restricted-query"}},
		{"authentication named literally", admin, []string{"authentication"}},
		{"anything scoped", operator, []string{"jobs", "clusters:read"}},
	}
	for _, tt := range allowed {
		r := e.create(map[string]any{"workspaceResourceId": ws(0), "scopes": tt.scopes, "lifetimeSeconds": 600}, tt.who...)
		if r.Status != 201 {
			t.Errorf("%s: %d %s", tt.name, r.Status, r.Body)
			continue
		}
		if tok, _ := dbw.Token(r.json(t)["tokenId"].(string)); !slices.Equal(tok.Scopes, tt.scopes) {
			t.Errorf("%s: Databricks got scopes %v", tt.name, tok.Scopes)
		}
	}

	before := len(dbw.Requests())
	refused := []struct {
		name   string
		who    []string
		body   map[string]any
		target string
		says   string
	}{
		{"unscoped where scopes are required", logicApp, map[string]any{}, "scopes", "only scoped tokens"},
		{"autoscope counts as unscoped", logicApp, map[string]any{"scopes": []string{"sql:read"}, "autoscope": true}, "scopes", "only scoped tokens"},
		{"write SQL", logicApp, map[string]any{"scopes": []string{"sql"}}, "scopes", "sql"},
		{"one scope outside the rule", logicApp, map[string]any{"scopes": []string{"sql:read", "jobs:read"}}, "scopes", "jobs:read"},
		{"authentication through a wildcard", operator, map[string]any{"scopes": []string{"authentication"}}, "scopes", "authentication"},
		{"all-apis through a wildcard", operator, map[string]any{"scopes": []string{"all-apis"}}, "scopes", "all-apis"},
		{"authentication:read is not authentication", admin, map[string]any{"scopes": []string{"authentication:read"}}, "scopes", "authentication:read"},
	}
	for _, tt := range refused {
		body := map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 600}
		for k, v := range tt.body {
			body[k] = v
		}
		r := e.create(body, tt.who...)
		if r.Status != 403 || r.errorCode(t) != "NotAuthorized" || !strings.Contains(string(r.Body), tt.says) ||
			r.json(t)["error"].(map[string]any)["target"] != tt.target {
			t.Errorf("%s: %d %s", tt.name, r.Status, r.Body)
		}
		if strings.Contains(string(r.Body), "sql:read*") || strings.Contains(string(r.Body), adminApp) {
			t.Errorf("%s: the refusal quotes the policy: %s", tt.name, r.Body)
		}
	}
	if after := len(dbw.Requests()); after != before {
		t.Errorf("%d Databricks calls for requests the policy refused", after-before)
	}
}

func TestEventTokensGetTheConfiguredScopes(t *testing.T) {
	t.Parallel()
	queueRule := fmt.Sprintf(`AUTHZ_POLICY={"version":1,"rules":[{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/%s"],"requireScopes":true,"scopes":["sql:*"]}]}`, stack.Subscription)
	e := startVault(t, envOptions{workspaces: 2, settings: []string{queueRule, "EVENT_TOKEN_SCOPES=sql:read"}})
	e.send("workspace-events", gridEvent(ws(0), "ev-sc-1", "Microsoft.Databricks/workspaces/write"), "sb-sc-1")
	r := e.results(1, 20*time.Second)[0]
	tok, _ := e.stack.Workspaces[0].Token(r.data()["tokenId"].(string))
	if r.Subject != "Databricks.Token.Created" || !slices.Equal(tok.Scopes, []string{"sql:read"}) || !slices.Equal(scopesOf(r.data()["scopes"]), []string{"sql:read"}) {
		t.Fatalf("event token: %v; Databricks scopes %v", r.data(), tok.Scopes)
	}
	if v := versions(e, stack.SecretName(0)); len(v) != 1 || v[0].Tags["scopes"] != "sql:read" {
		t.Errorf("the event token's version tags: %v", v[0].Tags)
	}
}

func TestEventTokenScopesAreCheckedAtStart(t *testing.T) {
	t.Parallel()
	out, code := runHandler(t, "EVENT_TOKEN_SCOPES=sql,Jobs:read,sql")
	if code != 2 || !strings.Contains(out, "EVENT_TOKEN_SCOPES") || !strings.Contains(out, "Jobs:read") {
		t.Errorf("exit %d: %s", code, out)
	}
}

func TestQueueRuleRequiringScopesRefusesUnscopedEventTokens(t *testing.T) {
	t.Parallel()
	queueRule := fmt.Sprintf(`AUTHZ_POLICY={"version":1,"rules":[{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/%s"],"requireScopes":true}]}`, stack.Subscription)
	e := startVault(t, envOptions{settings: []string{queueRule}})
	e.send("workspace-events", gridEvent(ws(0), "ev-sc-2", "Microsoft.Databricks/workspaces/write"), "sb-sc-2")
	r := e.results(1, 20*time.Second)[0]
	if r.Subject != "Databricks.Token.Failed" || errorCode(r) != "NotAuthorized" {
		t.Fatalf("result %s %v", r.Subject, r.data())
	}
	if n := len(e.stack.Workspaces[0].Requests()); n != 0 {
		t.Errorf("%d Databricks calls for a refused event", n)
	}
}
