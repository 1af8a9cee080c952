package tokens

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var lim = Limits{DefaultLifetime: 720 * time.Hour, MaxLifetime: 2160 * time.Hour}

const wsID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod"

func targets(err error) []string {
	e := AsError(err)
	if e == nil {
		return nil
	}
	var out []string
	for _, d := range e.Details {
		out = append(out, d.Target)
	}
	return out
}

func TestDecodeCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		lim     Limits
		want    CreateRequest
		targets []string // problems expected, by target; nil = valid
	}{
		{name: "minimal gets the default lifetime", body: `{"workspaceResourceId":"` + wsID + `"}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Lifetime: 720 * time.Hour}},
		{name: "every field", body: `{"workspaceResourceId":"` + wsID + `","comment":"nightly ETL ✓","lifetimeSeconds":86400,"requestId":"7f3c:a_b.c-d"}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Comment: "nightly ETL ✓",
				Lifetime: 24 * time.Hour, LifetimeGiven: true, RequestID: "7f3c:a_b.c-d", RequestIDGiven: true}},
		{name: "null optional fields are absent", body: `{"workspaceResourceId":"` + wsID + `","comment":null,"lifetimeSeconds":null}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Lifetime: 720 * time.Hour}},
		{name: "lowercase resourcegroups as Event Grid sends it", body: `{"workspaceResourceId":"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg/providers/microsoft.databricks/workspaces/ws1"}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg", "ws1"}, Lifetime: 720 * time.Hour}},
		{name: "empty body", body: ``, targets: []string{"body"}},
		{name: "whitespace body", body: " \n ", targets: []string{"body"}},
		{name: "not an object", body: `[1,2]`, targets: []string{"body"}},
		{name: "null", body: `null`, targets: []string{"body"}},
		{name: "syntax error", body: `{"workspaceResourceId":`, targets: []string{"body"}},
		{name: "trailing data", body: `{"workspaceResourceId":"` + wsID + `"} {}`, targets: []string{"body"}},
		{name: "missing workspace", body: `{}`, targets: []string{"workspaceResourceId"}},
		{name: "unknown fields, each reported", body: `{"workspaceResourceId":"` + wsID + `","zeta":1,"alpha":2}`, targets: []string{"alpha", "zeta"}},
		{name: "field names are case-sensitive", body: `{"WorkspaceResourceId":"` + wsID + `"}`, targets: []string{"WorkspaceResourceId", "workspaceResourceId"}},
		{name: "bad resource id", body: `{"workspaceResourceId":"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/s"}`, targets: []string{"workspaceResourceId"}},
		{name: "wrong type", body: `{"workspaceResourceId":42,"comment":false}`, targets: []string{"workspaceResourceId", "comment"}},
		{name: "lifetime zero", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":0}`, targets: []string{"lifetimeSeconds"}},
		{name: "lifetime negative", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":-1}`, targets: []string{"lifetimeSeconds"}},
		{name: "lifetime over the maximum", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":7776001}`, targets: []string{"lifetimeSeconds"}},
		{name: "lifetime at the maximum", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":7776000}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Lifetime: 2160 * time.Hour, LifetimeGiven: true}},
		{name: "lifetime fractional", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":1.5}`, targets: []string{"lifetimeSeconds"}},
		{name: "lifetime as string", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":"60"}`, targets: []string{"lifetimeSeconds"}},
		{name: "lifetime overflows", body: `{"workspaceResourceId":"` + wsID + `","lifetimeSeconds":99999999999999999999999}`, targets: []string{"lifetimeSeconds"}},
		{name: "comment too long", body: `{"workspaceResourceId":"` + wsID + `","comment":"` + strings.Repeat("é", 201) + `"}`, targets: []string{"comment"}},
		{name: "comment of 200 characters", body: `{"workspaceResourceId":"` + wsID + `","comment":"` + strings.Repeat("é", 200) + `"}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Comment: strings.Repeat("é", 200), Lifetime: 720 * time.Hour}},
		{name: "comment with a tab", body: `{"workspaceResourceId":"` + wsID + `","comment":"a\tb"}`, targets: []string{"comment"}},
		{name: "comment with DEL", body: `{"workspaceResourceId":"` + wsID + `","comment":"a\u007fb"}`, targets: []string{"comment"}},
		{name: "comment with NUL", body: `{"workspaceResourceId":"` + wsID + `","comment":"a\u0000b"}`, targets: []string{"comment"}},
		{name: "secretName without Key Vault", body: `{"workspaceResourceId":"` + wsID + `","secretName":"etl-token"}`, targets: []string{"secretName"}},
		{name: "secretName with Key Vault", lim: Limits{DefaultLifetime: time.Hour, MaxLifetime: 2 * time.Hour, KeyVault: true},
			body: `{"workspaceResourceId":"` + wsID + `","secretName":"etl-token"}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, SecretName: "etl-token", Lifetime: time.Hour}},
		{name: "bad secretName", lim: Limits{DefaultLifetime: time.Hour, MaxLifetime: 2 * time.Hour, KeyVault: true},
			body: `{"workspaceResourceId":"` + wsID + `","secretName":"etl_token"}`, targets: []string{"secretName"}},
		{name: "bad request id", body: `{"workspaceResourceId":"` + wsID + `","requestId":"has space"}`, targets: []string{"requestId"}},
		{name: "request id too long", body: `{"workspaceResourceId":"` + wsID + `","requestId":"` + strings.Repeat("a", 129) + `"}`, targets: []string{"requestId"}},
		{name: "scopes and autoscope", body: `{"workspaceResourceId":"` + wsID + `","scopes":["sql:read:restricted-query","unity-catalog"],"autoscope":true}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Lifetime: 720 * time.Hour,
				Scopes: Scopes{List: []string{"sql:read:restricted-query", "unity-catalog"}, Autoscope: true}}},
		{name: "null scopes are unscoped", body: `{"workspaceResourceId":"` + wsID + `","scopes":null,"autoscope":null}`,
			want: CreateRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, Lifetime: 720 * time.Hour}},
		{name: "empty scopes", body: `{"workspaceResourceId":"` + wsID + `","scopes":[]}`, targets: []string{"scopes"}},
		{name: "scopes not an array", body: `{"workspaceResourceId":"` + wsID + `","scopes":"sql"}`, targets: []string{"scopes"}},
		{name: "33 scopes", body: `{"workspaceResourceId":"` + wsID + `","scopes":[` + strings.TrimSuffix(strings.Repeat(`"sql",`, 33), ",") + `]}`, targets: []string{"scopes"}},
		{name: "each bad scope reported", body: `{"workspaceResourceId":"` + wsID + `","scopes":["Sql",1,"jobs:write","jobs:read","jobs:read","clusters:restricted-query","sql:restricted-query:read","-x","a--b",""],"autoscope":"yes"}`,
			targets: []string{"scopes[0]", "scopes[1]", "scopes[2]", "scopes[4]", "scopes[5]", "scopes[6]", "scopes[7]", "scopes[8]", "scopes[9]", "autoscope"}},
		{name: "all problems at once", body: `{"workspaceResourceId":"nope","lifetimeSeconds":0,"comment":"\n","requestId":"","x":1}`,
			targets: []string{"x", "workspaceResourceId", "comment", "lifetimeSeconds", "requestId"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := tt.lim
			if l == (Limits{}) {
				l = lim
			}
			got, err := DecodeCreate([]byte(tt.body), l)
			if tt.targets != nil {
				if CodeOf(err) != CodeInvalidRequest {
					t.Fatalf("err = %v, want InvalidRequest", err)
				}
				if diff := cmp.Diff(tt.targets, targets(err)); diff != "" {
					t.Errorf("problem targets (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    RevokeRequest
		targets []string
	}{
		{name: "by id", body: `{"workspaceResourceId":"` + wsID + `","tokenId":"abc123"}`,
			want: RevokeRequest{Workspace: WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg-data", "dbw-prod"}, TokenID: "abc123"}},
		{name: "by secret", body: `{"secretUri":"https://kv.vault.azure.net/secrets/a/b"}`, want: RevokeRequest{SecretURI: "https://kv.vault.azure.net/secrets/a/b"}},
		{name: "both forms", body: `{"secretUri":"https://kv/secrets/a","tokenId":"x"}`, targets: []string{"secretUri"}},
		{name: "token id missing", body: `{"workspaceResourceId":"` + wsID + `"}`, targets: []string{"tokenId"}},
		{name: "nothing", body: `{}`, targets: []string{"workspaceResourceId", "tokenId"}},
		{name: "bad token id", body: `{"workspaceResourceId":"` + wsID + `","tokenId":"a/b"}`, targets: []string{"tokenId"}},
		{name: "unknown field", body: `{"workspaceResourceId":"` + wsID + `","tokenId":"a","force":true}`, targets: []string{"force"}},
		{name: "empty secret uri", body: `{"secretUri":""}`, targets: []string{"secretUri"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeRevoke([]byte(tt.body))
			if tt.targets != nil {
				if diff := cmp.Diff(tt.targets, targets(err)); diff != "" {
					t.Errorf("problem targets (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseWorkspaceID(t *testing.T) {
	t.Parallel()
	good := []string{
		wsID,
		"/SUBSCRIPTIONS/00000000-0000-0000-0000-00000000000A/RESOURCEGROUPS/My.Group(1)/PROVIDERS/MICROSOFT.DATABRICKS/WORKSPACES/ws_1",
	}
	for _, s := range good {
		id, err := ParseWorkspaceID(s)
		if err != nil {
			t.Errorf("ParseWorkspaceID(%q) = %v", s, err)
			continue
		}
		again, err := ParseWorkspaceID(id.String())
		if err != nil || !again.Equal(id) {
			t.Errorf("round trip of %q: %v %v", s, again, err)
		}
	}
	bad := []string{"", "/", wsID + "/", wsID + "/extra", "subscriptions/x", "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws1",
		"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg./providers/Microsoft.Databricks/workspaces/ws1",
		"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/w",
		"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/accessConnectors/ws1",
		"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups//providers/Microsoft.Databricks/workspaces/ws1",
		strings.Repeat("/a", 300)}
	for _, s := range bad {
		if _, err := ParseWorkspaceID(s); err == nil {
			t.Errorf("ParseWorkspaceID(%q) accepted", s)
		}
	}
	a, _ := ParseWorkspaceID(wsID)
	b, _ := ParseWorkspaceID(strings.ToUpper(wsID[:60]) + wsID[60:])
	if !a.Equal(b) {
		t.Errorf("ids differing only in case are not equal: %v %v", a, b)
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	t.Parallel()
	for _, caller := range []string{"", "nightly ETL", "[dtb:req:x] looks like a marker", " leading space"} {
		m := Marker{Kind: MarkerRequest, RequestID: "a:b.c_d-1"}
		got, gotCaller, ok := SplitComment(m.Comment(caller))
		if !ok || got != m || gotCaller != caller {
			t.Errorf("SplitComment(Comment(%q)) = %v %q %v", caller, got, gotCaller, ok)
		}
	}
	for _, foreign := range []string{"", "manual token", "[dtb:zzz:abc] x", "[dtb:req:has space] x", "[dtb:req:abc"} {
		if _, caller, ok := SplitComment(foreign); ok || caller != foreign {
			t.Errorf("SplitComment(%q) claimed a foreign comment", foreign)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	s := NewSecret("dapi0123456789abcdef")
	for _, got := range []string{s.String(), s.GoString(), s.LogValue().String()} {
		if strings.Contains(got, "dapi") {
			t.Errorf("secret leaked: %q", got)
		}
	}
	if s.Reveal() != "dapi0123456789abcdef" {
		t.Error("Reveal lost the value")
	}
}

func TestValidScope(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"sql", "sql:read", "sql:restricted-query", "sql:read:restricted-query", "unity-catalog", "jobs:read", "all-apis", "authentication", "vector-search2"} {
		if err := ValidScope(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, says := range map[string]string{
		"":                          "empty",
		"SQL":                       "lower case",
		"sql:":                      "modifier",
		":read":                     "area",
		"sql:write":                 `modifier "write"`,
		"sql:read:read":             "repeats",
		"sql:restricted-query:read": "repeats or reorders",
		"jobs:restricted-query":     "only to the sql scope",
		"2fa":                       "area",
		"unity_catalog":             "area",
		"sql read":                  "area",
		strings.Repeat("a", 65):     "area",
	} {
		err := ValidScope(bad)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: %v; want a problem saying %q", bad, err, says)
		}
	}
}

func TestParseScopeList(t *testing.T) {
	t.Parallel()
	got, err := ParseScopeList(" sql:read , jobs ")
	if err != nil || !cmp.Equal(got, []string{"sql:read", "jobs"}) {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := ParseScopeList(""); got != nil || err != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	_, err = ParseScopeList("sql,Jobs,sql,,x:write")
	if err == nil || strings.Count(err.Error(), "\n") != 3 || !strings.Contains(err.Error(), "scope 2") || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("every problem, one line each: %v", err)
	}
}

// A caller's request id may not take the service's own forms (a rotation's
// id can be computed from a secret URI), and an invalid one is refused
// without being kept: it would otherwise be echoed, at any length, into
// the log line and the Failed result.
func TestCallerRequestIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"rot-359b9ce50c1fac4bf88eefbe", "ROT-1", "evt-2b6f0cc9", strings.Repeat("x", 48000), "a b"} {
		body := `{"workspaceResourceId":"` + testWS.String() + `","requestId":"` + id + `"}`
		req, err := DecodeCreate([]byte(body), Limits{DefaultLifetime: time.Hour, MaxLifetime: 24 * time.Hour})
		if !slices.Contains(targets(err), "requestId") || req.RequestID != "" || req.RequestIDGiven {
			t.Errorf("create with requestId %.20q: %v, kept %.20q", id, err, req.RequestID)
		}
		rev, err := DecodeRevoke([]byte(`{"workspaceResourceId":"` + testWS.String() + `","tokenId":"t1","requestId":"` + id + `"}`))
		if !slices.Contains(targets(err), "requestId") || rev.RequestID != "" {
			t.Errorf("revoke with requestId %.20q: %v, kept %.20q", id, err, rev.RequestID)
		}
	}
	for _, id := range []string{"rotation-7", "event-1", "r:o:t", "7f3c-rot-"} {
		if err := CallerRequestID(id); err != nil {
			t.Errorf("CallerRequestID(%q) = %v; want it allowed", id, err)
		}
	}
}
