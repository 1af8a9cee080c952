package results

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func TestEventIDIsDeterministic(t *testing.T) {
	t.Parallel()
	a := tokens.Outcome{Type: tokens.Created, RequestID: "r1", TokenID: "t1"}
	if EventID(a) != EventID(a) {
		t.Fatal("same outcome, different ids")
	}
	b := a
	b.TokenID = "t2" // a replacement token is a different outcome
	c := a
	c.Type = tokens.Failed
	if EventID(a) == EventID(b) || EventID(a) == EventID(c) {
		t.Error("different outcomes share an id")
	}
	f1, f2 := tokens.Outcome{Type: tokens.Failed, RequestID: "r1", TokenID: "x"}, tokens.Outcome{Type: tokens.Failed, RequestID: "r1"}
	if EventID(f1) != EventID(f2) {
		t.Error("a Failed outcome's id must depend only on the request and type")
	}
}

func TestBuildKeepsTheValueUnlessAllowed(t *testing.T) {
	t.Parallel()
	now := func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) }
	ws, _ := tokens.ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws1")
	rec := tokens.Record{RequestID: "r1", Workspace: ws, TokenID: "t1", Value: tokens.NewSecret("dapi-secret-value"), CreatedAt: now(), ExpiresAt: now().Add(time.Hour)}
	o := tokens.Outcome{Type: tokens.Created, RequestID: "r1", Workspace: ws.String(), TokenID: "t1", Record: &rec}
	for _, include := range []bool{false, true} {
		p := &Publisher{includeValue: include, now: now}
		b, err := json.Marshal(p.Build(o))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "dapi-secret-value"); got != include {
			t.Errorf("includeValue=%v: value present = %v: %s", include, got, b)
		}
		var ev map[string]any
		_ = json.Unmarshal(b, &ev)
		if ev["specversion"] != "1.0" || ev["type"] != "Databricks.Token.Created" || ev["subject"] != "t1" || ev["source"] != ws.String() || ev["id"] != EventID(o) {
			t.Errorf("envelope: %v", ev)
		}
	}
	failed := (&Publisher{now: now}).Build(tokens.Outcome{Type: tokens.Failed, RequestID: "r2", Err: tokens.Errorf(tokens.CodeInvalidRequest, "bad")})
	if failed.Source != "/" {
		t.Errorf("a Failed outcome without a workspace needs a source: %q", failed.Source)
	}
}
