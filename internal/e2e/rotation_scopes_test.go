package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/devstack/stack"
)

func TestRotationKeepsScopes(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	dbw := e.stack.Workspaces[0]
	want := []string{"sql:read", "unity-catalog:read"}
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "comment": "bi", "scopes": want, "lifetimeSeconds": 3600})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
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
