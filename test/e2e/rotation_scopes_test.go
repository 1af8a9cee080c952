package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

func TestRotationKeepsScopes(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	dbw := e.stack.Workspaces[0]
	want := []string{"sql:read", "unity-catalog:read"}
	e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "comment": "bi", "scopes": want, "lifetimeSeconds": 3600})
	e.results(1, 20*time.Second)
	if _, err := e.host.InvokeTimer(e.t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	rot := e.results(1, 20*time.Second)[0]
	if rot.Subject != "Databricks.Token.Rotated" {
		t.Fatalf("rotation: %s %v", rot.Subject, rot.data())
	}
	succ, _ := dbw.Token(rot.data()["tokenId"].(string))
	if !slices.Equal(succ.Scopes, want) || lifetimeOf(succ) != time.Hour || rot.data()["comment"] != "bi" || !slices.Equal(scopesOf(rot.data()["scopes"]), want) {
		t.Errorf("successor: scopes %v lifetime %s; result %v", succ.Scopes, lifetimeOf(succ), rot.data())
	}
	vs := versions(e, stack.SecretName(0))
	if len(vs) != 2 || vs[1].Tags["scopes"] != "sql:read,unity-catalog:read" || vs[1].Tags["tokenId"] != succ.ID {
		t.Errorf("versions: %d; latest tags %v", len(vs), vs[len(vs)-1].Tags)
	}
}
func TestRotationVerifiesTheSuccessorBeforeItBecomesLatest(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	dbw := e.stack.Workspaces[0]
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "scopes": []string{"sql:read"}, "lifetimeSeconds": 3600})
	e.results(1, 20*time.Second)
	old := r.json(t)["tokenId"].(string)

	// The successor Databricks hands out does not work.
	dbw.IssueBrokenTokens(1)
	if _, err := e.host.InvokeTimer(e.t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	f := e.results(1, 20*time.Second)[0]
	if f.Subject != "Databricks.Token.Failed" || !strings.Contains(fmt.Sprint(f.data()["error"]), "verif") {
		t.Fatalf("result %s %v", f.Subject, f.data())
	}
	var broken fakedatabricks.Token
	for _, tok := range dbw.Tokens() {
		if tok.Broken {
			broken = tok
		}
	}
	if broken.ID == "" || broken.State != fakedatabricks.Revoked {
		t.Errorf("the successor that failed verification is %q (want revoked)", broken.State)
	}
	vs := versions(e, stack.SecretName(0))
	if len(vs) != 1 || vs[0].Tags["tokenId"] != old || !vs[0].Enabled {
		t.Errorf("the old version must stay latest: %d versions, latest holds %s", len(vs), vs[len(vs)-1].Tags["tokenId"])
	}
	if tok, _ := dbw.Token(old); tok.State != fakedatabricks.Live {
		t.Errorf("the old token is %s", tok.State)
	}

	// The check is one call with the new token itself, and nothing else.
	var checks []fakedatabricks.Request
	for _, q := range dbw.Requests() {
		if q.Op == fakedatabricks.OpMe {
			checks = append(checks, q)
		}
	}
	if len(checks) != 1 || checks[0].Auth != "invalid" || checks[0].ManagementTokenPresent || checks[0].ResourceIDPresent {
		t.Errorf("verification calls: %+v", checks)
	}

	// The next run, with a working successor, rotates.
	if _, err := e.host.InvokeTimer(e.t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	rot := e.results(1, 20*time.Second)[0]
	if rot.Subject != "Databricks.Token.Rotated" {
		t.Fatalf("second run: %s %v", rot.Subject, rot.data())
	}
	if vs := versions(e, stack.SecretName(0)); len(vs) != 2 || vs[1].Tags["tokenId"] != rot.data()["tokenId"] {
		t.Errorf("after the second run: %d versions", len(vs))
	}
	var ok int
	for _, q := range dbw.Requests() {
		if q.Op == fakedatabricks.OpMe && q.Auth == "pat" && q.Status == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d successful verification calls; want 1", ok)
	}
}
