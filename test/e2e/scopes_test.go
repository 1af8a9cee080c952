package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/audit"
)

// scopesOf reads a JSON "scopes" array.
func scopesOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

func TestScopedCreateReachesDatabricks(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: []string{"RESULTS_INCLUDE_TOKEN_VALUE=true"}})
	dbw := e.stack.Workspaces[0]
	want := []string{"sql:read:restricted-query", "unity-catalog"}

	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "scopes": want, "autoscope": false, "lifetimeSeconds": 600, "requestId": "sc-1"})
	if got := scopesOf(r.json(t)["scopes"]); !slices.Equal(got, want) {
		t.Errorf("record scopes = %v, want %v", got, want)
	}
	tok, ok := dbw.Token(r.json(t)["tokenId"].(string))
	if !ok || !slices.Equal(tok.Scopes, want) || tok.Autoscope {
		t.Fatalf("Databricks holds scopes %v (autoscope %v); want %v", tok.Scopes, tok.Autoscope, want)
	}
	if res := e.results(1, 20*time.Second)[0]; !slices.Equal(scopesOf(res.data()["scopes"]), want) {
		t.Errorf("Created result scopes = %v", res.data()["scopes"])
	}
	// Operators see which privilege each token got.
	if l := e.lineOf(audit.TokenIssued, func(l auditLine) bool { return l.str("request_id") == "sc-1" }); l.str("scopes") != strings.Join(want, ",") {
		t.Errorf("token.issued line: scopes %q", l.str("scopes"))
	}
	// The repeat answers with the same record, scopes included.
	if again := e.create(map[string]any{"workspaceResourceId": ws(0), "scopes": want, "lifetimeSeconds": 600, "requestId": "sc-1"}); again.Status != 200 || !slices.Equal(scopesOf(again.json(t)["scopes"]), want) {
		t.Errorf("repeat: %d %s", again.Status, again.Body)
	}
	// (Its Created result repeats the first one's id: duplicate detection drops it.)

	// An unscoped create says nothing about scopes, and Databricks gets none.
	plain := e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 600})
	if _, has := plain.json(t)["scopes"]; plain.Status != 201 || has {
		t.Errorf("unscoped create: %d %s", plain.Status, plain.Body)
	}
	if tok, _ := dbw.Token(plain.json(t)["tokenId"].(string)); tok.Scopes != nil {
		t.Errorf("an unscoped request reached Databricks with scopes %v", tok.Scopes)
	}
	e.results(1, 20*time.Second)

	// list-tokens shows what Databricks says each token may call.
	l := e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(0), nil)
	byID := map[string][]string{}
	for _, x := range l.json(t)["tokens"].([]any) {
		m := x.(map[string]any)
		byID[m["tokenId"].(string)] = scopesOf(m["scopes"])
	}
	if !slices.Equal(byID[r.json(t)["tokenId"].(string)], want) || byID[plain.json(t)["tokenId"].(string)] != nil {
		t.Errorf("list-tokens scopes: %v", byID)
	}

	// A queued create and an autoscoped one.
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "scopes": []string{"jobs:read"}, "autoscope": true, "lifetimeSeconds": 600}), "sc-q-1")
	qr := e.results(1, 20*time.Second)[0]
	qtok, _ := dbw.Token(qr.data()["tokenId"].(string))
	if qr.Subject != "Databricks.Token.Created" || !slices.Equal(qtok.Scopes, []string{"jobs:read"}) || !qtok.Autoscope || qr.data()["autoscope"] != true {
		t.Errorf("queued scoped create: %v; Databricks scopes %v autoscope %v", qr.data(), qtok.Scopes, qtok.Autoscope)
	}
}

func TestScopeShapeIsCheckedBeforeAnyCall(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "scopes": []any{"SQL", "sql:write", "jobs:read:read", "", 7, "sql", "sql"}, "autoscope": "yes"})
	if r.Status != 400 || r.errorCode(t) != "InvalidRequest" {
		t.Fatalf("bad scopes: %d %s", r.Status, r.Body)
	}
	details, _ := r.json(t)["error"].(map[string]any)["details"].([]any)
	var targets []string
	for _, d := range details {
		targets = append(targets, d.(map[string]any)["target"].(string))
	}
	want := []string{"scopes[0]", "scopes[1]", "scopes[2]", "scopes[3]", "scopes[4]", "scopes[6]", "autoscope"}
	if !slices.Equal(targets, want) {
		t.Errorf("one detail per problem, all at once: targets %v, want %v\n%s", targets, want, r.Body)
	}
	for _, body := range []map[string]any{
		{"workspaceResourceId": ws(0), "scopes": []string{}},
		{"workspaceResourceId": ws(0), "scopes": "sql"},
	} {
		if r := e.create(body); r.Status != 400 || !strings.Contains(string(r.Body), `"target":"scopes"`) {
			t.Errorf("%v: %d %s", body["scopes"], r.Status, r.Body)
		}
	}
	if n := len(e.stack.Workspaces[0].Requests()); n != 0 {
		t.Errorf("%d calls reached Databricks for invalid requests", n)
	}
}
