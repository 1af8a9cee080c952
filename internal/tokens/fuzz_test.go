package tokens

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzDecodeCreate(f *testing.F) {
	for _, s := range []string{
		`{"workspaceResourceId":"` + wsID + `","comment":"nightly ETL","lifetimeSeconds":86400,"requestId":"7f3c"}`,
		`{"workspaceResourceId":"` + wsID + `","secretName":"etl-token"}`,
		`{"workspaceResourceId":"` + wsID + `","scopes":["sql:read:restricted-query","jobs"],"autoscope":true}`,
		`{"scopes":["",1,null,"SQL"],"autoscope":"no"}`,
		`{}`, `[]`, `null`, `{"lifetimeSeconds":1e400}`, `{"comment":"\u0000"}`, "\xff\xfe", `{"a":1}{"b":2}`,
	} {
		f.Add([]byte(s), true)
	}
	lim := Limits{DefaultLifetime: time.Hour, MaxLifetime: 24 * time.Hour}
	f.Fuzz(func(t *testing.T, body []byte, kv bool) {
		lim.KeyVault = kv
		req, err := DecodeCreate(body, lim)
		if err != nil {
			e := AsError(err)
			if e.Code != CodeInvalidRequest || len(e.Details) == 0 {
				t.Fatalf("error without details: %+v", e)
			}
			return
		}
		// Whatever is accepted is within the contract's bounds.
		if req.Lifetime < time.Second || req.Lifetime > lim.MaxLifetime {
			t.Fatalf("accepted lifetime %s", req.Lifetime)
		}
		if utf8.RuneCountInString(req.Comment) > MaxCommentLength || ValidComment(req.Comment) != nil {
			t.Fatalf("accepted comment %q", req.Comment)
		}
		if req.SecretName != "" && !kv {
			t.Fatal("accepted secretName without Key Vault")
		}
		if len(req.Scopes.List) > MaxScopes {
			t.Fatalf("accepted %d scopes", len(req.Scopes.List))
		}
		for _, s := range req.Scopes.List {
			if ValidScope(s) != nil {
				t.Fatalf("accepted scope %q", s)
			}
		}
		if _, err := ParseWorkspaceID(req.Workspace.String()); err != nil {
			t.Fatalf("accepted workspace %v does not parse back: %v", req.Workspace, err)
		}
	})
}

func FuzzParseWorkspaceID(f *testing.F) {
	f.Add(wsID)
	f.Add("/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod")
	f.Add("/subscriptions//resourceGroups//providers//workspaces/")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseWorkspaceID(s)
		if err != nil {
			return
		}
		again, err := ParseWorkspaceID(id.String())
		if err != nil || again != id {
			t.Fatalf("%q parsed to %v, which does not round-trip: %v %v", s, id, again, err)
		}
		if !strings.EqualFold(id.String(), s) {
			t.Fatalf("%q canonicalised to %q, which is not the same id", s, id.String())
		}
	})
}

func FuzzSplitComment(f *testing.F) {
	f.Add("[dtb:req:abc] hello")
	f.Add("[dtb:evt:x]")
	f.Add("plain")
	f.Fuzz(func(t *testing.T, comment string) {
		m, caller, ok := SplitComment(comment)
		if ok && m.Comment(caller) != comment && m.Comment(caller)+" " != comment {
			t.Fatalf("SplitComment(%q) = %v %q does not rebuild it", comment, m, caller)
		}
	})
}
