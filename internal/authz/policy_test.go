package authz

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const (
	sub1   = "11111111-1111-4111-8111-111111111111"
	sub2   = "22222222-2222-4222-8222-222222222222"
	etlOID = "aaaaaaaa-0000-4000-8000-000000000001"
	opsOID = "aaaaaaaa-0000-4000-8000-000000000002"
	ciApp  = "bbbbbbbb-0000-4000-8000-000000000003"
)

// examplePolicy is the README's example.
const examplePolicy = `{
  "version": 1,
  "description": "Who may mint Databricks tokens",
  "rules": [
    {
      "description": "ETL Logic App: 24-hour tokens in the data workspaces of subscription 1",
      "principals": [{"objectId": "` + etlOID + `"}],
      "actions": ["create", "list", "revoke"],
      "workspaces": ["/subscriptions/` + sub1 + `/resourceGroups/rg-data-*/providers/Microsoft.Databricks/workspaces/*"],
      "maxLifetime": "24h"
    },
    {
      "description": "Holders of the Tokens.Create app role: 7-day tokens anywhere in subscription 1",
      "principals": [{"appRole": "Tokens.Create"}],
      "actions": ["create"],
      "workspaces": ["/subscriptions/` + sub1 + `"],
      "maxLifetime": 604800
    },
    {
      "description": "The CI application: tokens of any lifetime in one resource group of subscription 2",
      "principals": [{"appId": "` + ciApp + `"}],
      "actions": ["create", "revoke"],
      "workspaces": ["/subscriptions/` + sub2 + `/resourceGroups/RG-CI"]
    },
    {
      "description": "Operators read and revoke everywhere",
      "principals": [{"objectId": "` + opsOID + `"}, {"appRole": "Tokens.Revoke"}],
      "actions": ["list", "revoke"],
      "workspaces": ["/subscriptions/*"]
    },
    {
      "description": "Queue commands: only the ETL workspaces, 12 hours",
      "principals": ["queue"],
      "actions": ["create", "revoke"],
      "workspaces": ["/subscriptions/*/resourceGroups/*/providers/Microsoft.Databricks/workspaces/etl-*"],
      "maxLifetime": "12h"
    }
  ]
}`

func ws(sub, rg, name string) tokens.WorkspaceID {
	return tokens.WorkspaceID{Subscription: sub, ResourceGroup: rg, Name: name}
}

func mustParse(t *testing.T, s string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(s))
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	return p
}

func TestParsePolicyGood(t *testing.T) {
	p := mustParse(t, examplePolicy)
	if p.Rules() != 5 {
		t.Fatalf("%d rules", p.Rules())
	}
	if err := p.CheckMaxLifetime(2160 * time.Hour); err != nil {
		t.Errorf("CheckMaxLifetime: %v", err)
	}
	err := p.CheckMaxLifetime(20 * time.Hour)
	if err == nil || !strings.Contains(err.Error(), "rules[0].maxLifetime: 24h0m0s is above TOKEN_MAX_LIFETIME 20h0m0s") ||
		!strings.Contains(err.Error(), "rules[1].maxLifetime") || strings.Contains(err.Error(), "rules[4]") {
		t.Errorf("CheckMaxLifetime(20h) = %v", err)
	}
	// Minimal policy; whitespace around it is fine.
	mustParse(t, "\n  "+`{"version":1,"rules":[{"principals":["queue"],"actions":["list"],"workspaces":["/subscriptions/*"]}]}`+"\n")
}

func TestParsePolicyErrors(t *testing.T) {
	// rule wraps one rule's members into a version 1 policy.
	rule := func(members string) string { return `{"version":1,"rules":[{` + members + `}]}` }
	const okP = `"principals":["queue"]`
	const okA = `"actions":["create"]`
	const okW = `"workspaces":["/subscriptions/*"]`
	tests := []struct {
		name   string
		policy string
		want   []string // every error line, in order (substrings)
	}{
		{"empty", "  ", []string{"the policy is empty"}},
		{"not JSON", `{"version":1,`, []string{"not valid JSON"}},
		{"trailing data", `{"version":1,"rules":[]} {}`, []string{"not valid JSON"}},
		{"not UTF-8", "{\"version\":1,\"description\":\"\xff\"}", []string{"not UTF-8"}},
		{"not an object", `[1]`, []string{"policy: must be a JSON object"}},
		{"missing everything", `{}`, []string{"version: is required", "rules: is required"}},
		{"bad version and unknown top field", `{"version":2,"Rules":[],"extra":true}`, []string{
			`Rules: unknown field "Rules" (field names are case-sensitive: did you mean "rules"?)`,
			`extra: unknown field "extra"; want one of version, description, rules`,
			"version: must be 1; got 2",
			"rules: is required"}},
		{"version not a number", `{"version":"1","rules":[]}`, []string{`version: must be 1; got "1"`, "rules: must not be empty"}},
		{"empty rules", `{"version":1,"rules":[]}`, []string{"rules: must not be empty"}},
		{"rules not an array", `{"version":1,"rules":{}}`, []string{"rules: must be an array"}},
		{"rules null", `{"version":1,"rules":null}`, []string{"rules: must be an array"}},
		{"duplicate key", `{"version":1,"version":1,"rules":[{` + okP + `,` + okA + `,` + okW + `}]}`, []string{"version: appears more than once"}},
		{"rule not an object", `{"version":1,"rules":["queue"]}`, []string{"rules[0]: must be a JSON object"}},
		{"rule missing fields", rule(``), []string{"rules[0].principals: is required", "rules[0].actions: is required", "rules[0].workspaces: is required"}},
		{"rule unknown field", rule(okP + `,` + okA + `,` + okW + `,"maxlifetime":"1h","deny":true`), []string{
			`rules[0].maxlifetime: unknown field "maxlifetime" (field names are case-sensitive: did you mean "maxLifetime"?)`,
			`rules[0].deny: unknown field "deny"`}},
		{"empty lists", rule(`"principals":[],"actions":[],"workspaces":[]`), []string{
			"rules[0].principals: must not be empty", "rules[0].actions: must not be empty", "rules[0].workspaces: must not be empty"}},
		{"unknown action", rule(okP + `,"actions":["create","delete","Create",3,"create"],` + okW), []string{
			`rules[0].actions[1]: unknown action "delete"; want create, revoke, list`,
			`rules[0].actions[2]: unknown action "Create"`,
			"rules[0].actions[3]: must be a string",
			`rules[0].actions[4]: repeats action "create"`}},
		{"bad principals", rule(`"principals":["everyone",{},{"objectId":"not-a-guid"},{"appId":"12345"},{"objectId":"` + etlOID + `","appId":"` + ciApp + `"},{"objectID":"` + etlOID + `"},{"group":"x"},{"appRole":""},{"appRole":"Tokens Create"},{"appRole":".x"},{"appRole":7},3,null,{"objectId":"` + strings.ToUpper(etlOID) + `"},{"objectId":"` + etlOID + `"}],` + okA + `,` + okW), []string{
			`rules[0].principals[0]: unknown principal "everyone"; want "queue" or an object`,
			`rules[0].principals[1]: must have exactly one of "objectId", "appId", "appRole"; has 0`,
			`rules[0].principals[2].objectId: "not-a-guid" is not a GUID`,
			`rules[0].principals[3].appId: "12345" is not a GUID`,
			`rules[0].principals[4]: must have exactly one of "objectId", "appId", "appRole"; has 2`,
			`rules[0].principals[5].objectID: unknown field "objectID" (field names are case-sensitive: did you mean "objectId"?)`,
			`rules[0].principals[6].group: unknown field "group"`,
			`rules[0].principals[7].appRole: app role must be 1-249 characters`,
			`rules[0].principals[8].appRole: app role "Tokens Create" may hold only printable ASCII`,
			`rules[0].principals[9].appRole: app role ".x" must not start with '.'`,
			`rules[0].principals[10].appRole: must be a string`,
			`rules[0].principals[11]: must be a JSON object`,
			`rules[0].principals[12]: must be a JSON object`,
			`rules[0].principals[14]: repeats an earlier principal`}},
		{"bad workspaces", rule(okP + `,` + okA + `,"workspaces":[` +
			`"*",` +
			`"/subscriptions/not-a-guid",` +
			`"/subscriptions/1111*",` +
			`"/subscriptions/` + sub1 + `/",` +
			`"/subscriptions/` + sub1 + `/resourceGroups",` +
			`"/subscriptions/` + sub1 + `/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws/extra",` +
			`"/subscriptions/` + sub1 + `/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/ws",` +
			`"/subscriptions/` + sub1 + `/resourceGroups/r g",` +
			`"/subscriptions/` + sub1 + `/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws.1",` +
			`"/subscriptions/` + sub1 + `/resourceGroups/` + strings.Repeat("r", 91) + `",` +
			`"/subscriptions/*",` +
			`"/Subscriptions/*",` +
			`"subscriptions/*/x",` +
			`"/subscriptions/*/*",` +
			`"/subscriptions/` + sub1 + `/resourceGroups/",` +
			`42]`), []string{
			`rules[0].workspaces[0]: "*" must be /subscriptions/`,
			`rules[0].workspaces[1]: "/subscriptions/not-a-guid": the subscription must be a GUID or *`,
			`rules[0].workspaces[2]: "/subscriptions/1111*": the subscription must be a GUID or *`,
			`rules[0].workspaces[3]: "/subscriptions/` + sub1 + `/" must be`,
			`rules[0].workspaces[4]: "/subscriptions/` + sub1 + `/resourceGroups" must be`,
			`rules[0].workspaces[5]:`,
			`rules[0].workspaces[6]:`,
			`rules[0].workspaces[7]: "/subscriptions/` + sub1 + `/resourceGroups/r g": the resource group must be`,
			`rules[0].workspaces[8]: "/subscriptions/` + sub1 + `/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws.1": the workspace name must be`,
			`rules[0].workspaces[9]:`,
			`rules[0].workspaces[11]: repeats an earlier workspace pattern`,
			`rules[0].workspaces[12]: "subscriptions/*/x" must be`,
			`rules[0].workspaces[13]: "/subscriptions/*/*" must be`,
			`rules[0].workspaces[14]: "/subscriptions/` + sub1 + `/resourceGroups/": the resource group must be`,
			`rules[0].workspaces[15]: must be a string`}},
		{"bad lifetimes", `{"version":1,"rules":[` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":"1 day"},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":"-1h"},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":"1500ms"},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":"17521h"},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":0},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":1.5},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":null},` +
			`{` + okP + `,` + okA + `,` + okW + `,"maxLifetime":63072001},` +
			`{` + okP + `,"actions":["list","revoke"],` + okW + `,"maxLifetime":"1h"}` +
			`]}`, []string{
			`rules[0].maxLifetime: "1 day" is not a Go duration`,
			`rules[1].maxLifetime: -1h0m0s must be positive`,
			`rules[2].maxLifetime: 1.5s is not a whole number of seconds`,
			`rules[3].maxLifetime: 17521h0m0s is above Databricks' limit`,
			`rules[4].maxLifetime: 0 seconds is out of range`,
			`rules[5].maxLifetime: 1.5 is not a Go duration string or a whole number of seconds`,
			`rules[6].maxLifetime: null is not`,
			`rules[7].maxLifetime: 63072001 seconds is out of range`,
			`rules[8].maxLifetime: applies only to rules that grant "create"`}},
		{"bad scope rules", `{"version":1,"rules":[` +
			`{` + okP + `,` + okA + `,` + okW + `,"scopes":["SQL","sql:write","sql:*","sql:*","",7,"sql read*","` + strings.Repeat("a", 129) + `"]},` +
			`{` + okP + `,` + okA + `,` + okW + `,"scopes":[],"requireScopes":"yes"},` +
			`{` + okP + `,` + okA + `,` + okW + `,"scopes":"sql","requireScopes":null},` +
			`{` + okP + `,"actions":["list"],` + okW + `,"scopes":["sql"],"requireScopes":true}` +
			`]}`, []string{
			`rules[0].scopes[0]: "SQL" must be lower case`,
			`rules[0].scopes[1]: "sql:write" has the modifier "write"`,
			`rules[0].scopes[3]: repeats scope pattern "sql:*"`,
			`rules[0].scopes[4]: must not be empty`,
			`rules[0].scopes[5]: must be a string`,
			`rules[0].scopes[6]: "sql read*" may hold only`,
			`rules[0].scopes[7]: is longer than 128 characters`,
			`rules[1].scopes: must not be empty`,
			`rules[1].requireScopes: must be true or false`,
			`rules[2].scopes: must be an array`,
			`rules[2].requireScopes: must be true or false`,
			`rules[3].scopes: applies only to rules that grant "create"`,
			`rules[3].requireScopes: applies only to rules that grant "create"`}},
		{"descriptions", `{"version":1,"description":7,"rules":[{"description":"` + strings.Repeat("d", 501) + `",` + okP + `,` + okA + `,` + okW + `}]}`, []string{
			"description: must be a string", "rules[0].description: must be at most 500 characters"}},
		{"errors in two rules", `{"version":1,"rules":[{` + okP + `,` + okA + `},{` + okP + `,` + okW + `,"actions":["write"]}]}`, []string{
			"rules[0].workspaces: is required", `rules[1].actions[0]: unknown action "write"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.policy))
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if p != nil {
				t.Error("policy returned with an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
			if j, ok := err.(interface{ Unwrap() []error }); len(tt.want) > 1 && (!ok || len(j.Unwrap()) != len(tt.want)) {
				t.Errorf("error is not a join of %d errors", len(tt.want))
			}
		})
	}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, examplePolicy)
	etl := &Principal{ObjectID: etlOID, AppID: appID, IDP: "aad"}
	creator := &Principal{ObjectID: oid, IDP: "aad", Roles: []string{"Tokens.Create"}}
	ci := &Principal{ObjectID: oid, AppID: ciApp, IDP: "aad"}
	ops := &Principal{ObjectID: opsOID, IDP: "aad"}
	revoker := &Principal{ObjectID: oid, IDP: "aad", Roles: []string{"Tokens.Revoke"}}
	stranger := &Principal{ObjectID: oid, AppID: appID, IDP: "aad", Roles: []string{"tokens.create", "Tokens.Read"}}
	// etl and creator at once: two create rules allow, the larger limit wins.
	both := &Principal{ObjectID: etlOID, IDP: "aad", Roles: []string{"Tokens.Create"}}

	data := ws(sub1, "rg-data-west", "lake")
	tests := []struct {
		name   string
		pr     *Principal
		action tokens.Action
		ws     tokens.WorkspaceID
		want   Decision
	}{
		{"object id, wildcard resource group", etl, ActionCreate, data, Decision{Allowed: true, MaxLifetime: 24 * time.Hour, Rule: 0}},
		{"object id, case-insensitive everything", &Principal{ObjectID: strings.ToUpper(etlOID), IDP: "aad"}, ActionList, ws(strings.ToUpper(sub1), "RG-DATA-EAST", "LAKE"), Decision{Allowed: true, MaxLifetime: 0, Rule: 0}},
		{"object id, revoke", etl, ActionRevoke, data, Decision{Allowed: true, MaxLifetime: 0, Rule: 0}},
		{"object id, resource group outside the pattern", etl, ActionCreate, ws(sub1, "rg-web", "lake"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"object id, prefix is not a match", etl, ActionCreate, ws(sub1, "rg-dat", "lake"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"object id, other subscription", etl, ActionCreate, ws(sub2, "rg-data-west", "lake"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"app role, subscription scope", creator, ActionCreate, ws(sub1, "any", "thing"), Decision{Allowed: true, MaxLifetime: 7 * 24 * time.Hour, Rule: 1}},
		{"app role, action not granted", creator, ActionList, ws(sub1, "any", "thing"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"app roles are case-sensitive", stranger, ActionCreate, ws(sub1, "any", "thing"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"app id, resource group scope, no limit", ci, ActionCreate, ws(sub2, "rg-ci", "build"), Decision{Allowed: true, MaxLifetime: 0, Rule: 2}},
		{"app id, other resource group", ci, ActionCreate, ws(sub2, "rg-ci2", "build"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"second principal of a rule", revoker, ActionRevoke, ws(sub2, "x", "y"), Decision{Allowed: true, MaxLifetime: 0, Rule: 3}},
		{"subscription wildcard", ops, ActionList, ws(sub2, "x", "y"), Decision{Allowed: true, MaxLifetime: 0, Rule: 3}},
		{"object id of another rule does not carry over", ops, ActionCreate, data, Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"queue principal, name pattern", Queue(), ActionCreate, ws(sub2, "rg", "etl-nightly"), Decision{Allowed: true, MaxLifetime: 12 * time.Hour, Rule: 4}},
		{"queue principal, name outside pattern", Queue(), ActionCreate, ws(sub2, "rg", "nightly-etl"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"queue principal, action not granted", Queue(), ActionList, ws(sub2, "rg", "etl-nightly"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"queue principal matches no header rule", Queue(), ActionCreate, data, Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"header principal never matches queue", etl, ActionCreate, ws(sub2, "rg", "etl-nightly"), Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"largest limit wins", both, ActionCreate, data, Decision{Allowed: true, MaxLifetime: 7 * 24 * time.Hour, Rule: 1}},
		{"default deny", stranger, ActionCreate, data, Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"nil principal", nil, ActionList, data, Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"unknown action", etl, "delete", data, Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
		{"action case matters", etl, "Create", data, Decision{Allowed: false, MaxLifetime: 0, Rule: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Decide(tt.pr, tt.action, tt.ws, tokens.Scopes{}); got != tt.want {
				t.Errorf("Decide(%v, %s, %s) = %+v, want %+v", tt.pr, tt.action, tt.ws, got, tt.want)
			}
		})
	}
	var none *Policy
	if got := none.Decide(nil, ActionCreate, data, tokens.Scopes{}); got != (Decision{Allowed: true, MaxLifetime: 0, Rule: -1}) {
		t.Errorf("nil policy: %+v", got)
	}
}

func TestDecideLifetimeOrder(t *testing.T) {
	// The largest limit wins whatever the rule order; the first rule with
	// that limit is reported.
	p := mustParse(t, `{"version":1,"rules":[
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"maxLifetime":"1h"},
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"maxLifetime":"3h"},
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"maxLifetime":10800},
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"maxLifetime":"2h"}]}`)
	if got := p.Decide(Queue(), ActionCreate, ws(sub1, "rg", "ws"), tokens.Scopes{}); got != (Decision{Allowed: true, MaxLifetime: 3 * time.Hour, Rule: 1}) {
		t.Errorf("got %+v", got)
	}
	// A rule without maxLifetime wins over every limit.
	p = mustParse(t, `{"version":1,"rules":[
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"maxLifetime":"1h"},
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*/resourceGroups/rg"]},
		{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"maxLifetime":"3h"}]}`)
	if got := p.Decide(Queue(), ActionCreate, ws(sub1, "rg", "ws"), tokens.Scopes{}); got != (Decision{Allowed: true, MaxLifetime: 0, Rule: 1}) {
		t.Errorf("got %+v", got)
	}
	if got := p.Decide(Queue(), ActionCreate, ws(sub1, "rg2", "ws"), tokens.Scopes{}); got != (Decision{Allowed: true, MaxLifetime: 3 * time.Hour, Rule: 2}) {
		t.Errorf("got %+v", got)
	}
}

func TestDecideScopes(t *testing.T) {
	p := mustParse(t, `{"version":1,"rules":[
		{"principals":[{"appId":"`+ciApp+`"}],"actions":["create"],"workspaces":["/subscriptions/*"],"requireScopes":true,"scopes":["sql:read*","unity-catalog:read"],"maxLifetime":"24h"},
		{"principals":[{"appId":"`+ciApp+`"}],"actions":["create"],"workspaces":["/subscriptions/`+sub2+`"],"requireScopes":true,"scopes":["jobs*"],"maxLifetime":"1h"},
		{"principals":[{"objectId":"`+etlOID+`"}],"actions":["create"],"workspaces":["/subscriptions/*"]},
		{"principals":[{"objectId":"`+opsOID+`"}],"actions":["create"],"workspaces":["/subscriptions/*"],"scopes":["*","authentication"]},
		{"principals":["queue"],"actions":["create","revoke"],"workspaces":["/subscriptions/*"],"requireScopes":true}]}`)
	ci := &Principal{ObjectID: "c0000000-0000-4000-8000-000000000009", AppID: ciApp, IDP: "aad"}
	etl := &Principal{ObjectID: etlOID, IDP: "aad"}
	ops := &Principal{ObjectID: opsOID, IDP: "aad"}
	sc := func(s ...string) tokens.Scopes { return tokens.Scopes{List: s} }
	w1, w2 := ws(sub1, "rg", "w"), ws(sub2, "rg", "w")
	tests := []struct {
		name   string
		pr     *Principal
		w      tokens.WorkspaceID
		scopes tokens.Scopes
		want   Decision
	}{
		{"read-only SQL", ci, w1, sc("sql:read"), Decision{Allowed: true, MaxLifetime: 24 * time.Hour, Rule: 0}},
		{"read-only SQL queries and catalog", ci, w1, sc("sql:read:restricted-query", "unity-catalog:read"), Decision{Allowed: true, MaxLifetime: 24 * time.Hour, Rule: 0}},
		{"unscoped where scopes are required", ci, w1, tokens.Scopes{}, Decision{Rule: -1, Scopes: ScopeRefusal{Unscoped: true}}},
		{"autoscope where scopes are required", ci, w1, tokens.Scopes{List: []string{"sql:read"}, Autoscope: true}, Decision{Rule: -1, Scopes: ScopeRefusal{Unscoped: true}}},
		{"write SQL", ci, w1, sc("sql"), Decision{Rule: -1, Scopes: ScopeRefusal{Denied: "sql"}}},
		{"each rule allows one, none both", ci, w2, sc("sql:read", "jobs"), Decision{Rule: -1, Scopes: ScopeRefusal{Together: true}}},
		{"the second rule, its lifetime", ci, w2, sc("jobs:read"), Decision{Allowed: true, MaxLifetime: time.Hour, Rule: 1}},
		{"names the scopes no rule allows", ci, w2, sc("sql:read", "clusters", "files"), Decision{Rule: -1, Scopes: ScopeRefusal{Denied: "clusters,files"}}},
		{"a rule without scopes allows unscoped", etl, w1, tokens.Scopes{}, Decision{Allowed: true, Rule: 2}},
		{"a rule without scopes allows any scope", etl, w1, sc("jobs", "clusters:read"), Decision{Allowed: true, Rule: 2}},
		{"but not authentication", etl, w1, sc("sql", "authentication"), Decision{Rule: -1, Scopes: ScopeRefusal{Denied: "authentication"}}},
		{"nor all-apis", etl, w1, sc("all-apis"), Decision{Rule: -1, Scopes: ScopeRefusal{Denied: "all-apis"}}},
		{"a wildcard does not grant authentication:read", ops, w1, sc("authentication:read"), Decision{Rule: -1, Scopes: ScopeRefusal{Denied: "authentication:read"}}},
		{"a literal does", ops, w1, sc("authentication", "sql"), Decision{Allowed: true, Rule: 3}},
		{"queue: unscoped refused", Queue(), w1, tokens.Scopes{}, Decision{Rule: -1, Scopes: ScopeRefusal{Unscoped: true}}},
		{"queue: scoped allowed", Queue(), w1, sc("sql"), Decision{Allowed: true, Rule: 4}},
		{"stranger: not a scope refusal", &Principal{ObjectID: opsOID[:35] + "9", IDP: "aad"}, w1, sc("sql"), Decision{Rule: -1}},
	}
	for _, tt := range tests {
		if got := p.Decide(tt.pr, ActionCreate, tt.w, tt.scopes); got != tt.want {
			t.Errorf("%s: Decide = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	// Scopes do not matter to other actions, even under requireScopes.
	if got := p.Decide(Queue(), ActionRevoke, w1, tokens.Scopes{}); !got.Allowed {
		t.Errorf("revoke under a requireScopes rule: %+v", got)
	}
}

func TestAuthorizerScopes(t *testing.T) {
	ci := &Principal{ObjectID: "c0000000-0000-4000-8000-000000000009", AppID: ciApp, IDP: "aad"}
	w := ws(sub1, "rg", "w")
	noQueue := Authorizer{Policy: mustParse(t, `{"version":1,"rules":[{"principals":[{"appId":"`+ciApp+`"}],"actions":["create"],"workspaces":["/subscriptions/*"],"requireScopes":true,"scopes":["sql:*"]}]}`)}
	for _, tt := range []struct {
		name   string
		by     tokens.Caller
		scopes tokens.Scopes
		target string // "" = allowed
		says   string
	}{
		{"allowed", ci, tokens.Scopes{List: []string{"sql:read"}}, "", ""},
		{"unscoped", ci, tokens.Scopes{}, "scopes", "only scoped tokens"},
		{"outside", ci, tokens.Scopes{List: []string{"jobs"}}, "scopes", "with scope jobs in workspace"},
		// Without queue rules the queue is unrestricted, except for the
		// scopes that mint tokens: no rule names them for it.
		{"queue without queue rules", Queue(), tokens.Scopes{}, "", ""},
		{"queue asks for authentication", Queue(), tokens.Scopes{List: []string{"sql", "authentication", "all-apis:read"}}, "scopes", "authentication, all-apis:read"},
		{"nobody", nil, tokens.Scopes{List: []string{"sql:read"}}, "workspaceResourceId", "not authorized to create tokens in workspace"},
	} {
		_, err := noQueue.Authorize(tt.by, ActionCreate, w, tt.scopes)
		switch {
		case tt.target == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.target != "" && (tokens.CodeOf(err) != tokens.CodeNotAuthorized || tokens.AsError(err).Target != tt.target || !strings.Contains(tokens.AsError(err).Message, tt.says)):
			t.Errorf("%s: %+v; want NotAuthorized on %s saying %q", tt.name, tokens.AsError(err), tt.target, tt.says)
		case err != nil && strings.Contains(tokens.AsError(err).Message, "sql:*"):
			t.Errorf("%s: the message quotes the policy: %s", tt.name, err)
		}
	}
	if _, err := (Authorizer{}).Authorize(Queue(), ActionCreate, w, tokens.Scopes{List: []string{"authentication"}}); err != nil {
		t.Errorf("no policy allows everything: %v", err)
	}
}

func TestGlob(t *testing.T) {
	for _, tt := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"abc", "abc", true}, {"abc", "abd", false},
		{"a*", "a", true}, {"a*c", "abbbc", true}, {"a*c", "abbbcd", false}, {"*-data-*", "rg-data-west", true},
		{"*-data-*", "rg-data", false}, {"a**b", "ab", true}, {"*a*a*a*a*b", strings.Repeat("a", 60), false},
		{"etl-*", "etl-", true}, {"", "", true}, {"", "a", false},
	} {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v", tt.pattern, tt.s, got)
		}
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(good, []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":1,"rules":[{"principals":["x"],"actions":["create"],"workspaces":["/subscriptions/*"]},{}]}`), 0o600); err != nil {
		t.Fatal(err)
	}

	if p, err := LoadPolicy("  ", nil); p != nil || err != nil {
		t.Errorf(`LoadPolicy("") = %v, %v`, p, err)
	}
	if p, err := LoadPolicy("@"+good, nil); err != nil || p.Rules() != 5 {
		t.Errorf("LoadPolicy(@file) = %v, %v", p, err)
	}
	if p, err := LoadPolicy(examplePolicy, nil); err != nil || p.Rules() != 5 {
		t.Errorf("LoadPolicy(inline) = %v, %v", p, err)
	}
	// Relative paths go to readFile as they are (the app root is the working directory).
	var asked string
	p, err := LoadPolicy(" @ policy/authz.json ", func(name string) ([]byte, error) { asked = name; return []byte(examplePolicy), nil })
	if err != nil || p.Rules() != 5 || asked != "policy/authz.json" {
		t.Errorf("LoadPolicy(@relative) = %v, %v; read %q", p, err, asked)
	}

	_, err = LoadPolicy("@"+filepath.Join(dir, "missing.json"), nil)
	if err == nil || !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "reading policy file "+filepath.Join(dir, "missing.json")+": ") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadPolicy("@", nil); err == nil || !strings.Contains(err.Error(), "must be followed by the path") {
		t.Errorf("bare @: %v", err)
	}
	_, err = LoadPolicy("@"+bad, nil)
	want := []string{bad + `: rules[0].principals[0]: unknown principal "x"`, bad + ": rules[1].principals: is required", bad + ": rules[1].actions: is required", bad + ": rules[1].workspaces: is required"}
	if err == nil || len(strings.Split(err.Error(), "\n")) != len(want) {
		t.Fatalf("bad file: %v", err)
	}
	for i, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, line, want[i])
		}
	}
	if _, err := LoadPolicy("not json", nil); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("inline garbage: %v", err)
	}
}

func TestDeniedMessage(t *testing.T) {
	id := ws(sub1, "rg-data", "lake")
	got := DeniedMessage(ActionCreate, id)
	if got != "the caller is not authorized to create tokens in workspace "+id.String() {
		t.Errorf("DeniedMessage = %q", got)
	}
}

// TestInventoryIsAnActionOfItsOwn: a policy may grant inventory, rules
// granting list (or anything else) do not grant it, and its workspace
// patterns decide per workspace, as for every action.
func TestInventoryIsAnActionOfItsOwn(t *testing.T) {
	p := mustParse(t, `{"version":1,"rules":[
		{"principals":[{"objectId":"`+opsOID+`"}],"actions":["inventory"],"workspaces":["/subscriptions/`+sub1+`/resourceGroups/rg-data"]},
		{"principals":[{"objectId":"`+etlOID+`"}],"actions":["create","list","revoke"],"workspaces":["/subscriptions/*"]}]}`)
	ops := &Principal{ObjectID: opsOID, IDP: "aad"}
	etl := &Principal{ObjectID: etlOID, IDP: "aad"}
	if got := p.Decide(ops, ActionInventory, ws(sub1, "RG-DATA", "lake"), tokens.Scopes{}); got != (Decision{Allowed: true, Rule: 0}) {
		t.Errorf("inventory in the rule's resource group: %+v", got)
	}
	if got := p.Decide(ops, ActionInventory, ws(sub1, "rg-web", "site"), tokens.Scopes{}); got.Allowed {
		t.Errorf("inventory outside the rule's resource group: %+v", got)
	}
	if got := p.Decide(etl, ActionInventory, ws(sub1, "rg-data", "lake"), tokens.Scopes{}); got.Allowed {
		t.Errorf("a rule granting list also granted inventory: %+v", got)
	}

	a := Authorizer{Policy: p}
	if err := a.AuthorizeAny(ops, ActionInventory); err != nil {
		t.Errorf("AuthorizeAny(ops): %v", err)
	}
	err := a.AuthorizeAny(etl, ActionInventory)
	if tokens.CodeOf(err) != tokens.CodeNotAuthorized || tokens.AsError(err).Message != "the caller is not authorized to inventory tokens in any workspace" {
		t.Errorf("AuthorizeAny(etl) = %v; want NotAuthorized naming the action", err)
	}
	if err := a.AuthorizeAny(nil, ActionInventory); tokens.CodeOf(err) != tokens.CodeNotAuthorized {
		t.Errorf("AuthorizeAny(nil) = %v; want NotAuthorized", err)
	}
	if err := (Authorizer{}).AuthorizeAny(etl, ActionInventory); err != nil {
		t.Errorf("no policy: %v", err)
	}
	if _, err := ParsePolicy([]byte(`{"version":1,"rules":[{"principals":["queue"],"actions":["inventory"],"workspaces":["/subscriptions/*"],"maxLifetime":"1h"}]}`)); err == nil ||
		!strings.Contains(err.Error(), `applies only to rules that grant "create"`) {
		t.Errorf("maxLifetime on an inventory rule: %v", err)
	}
}
