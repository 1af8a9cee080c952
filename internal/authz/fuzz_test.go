package authz

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func FuzzPrincipalFromHeaders(f *testing.F) {
	f.Add(msiPrincipal, true, oid, "", "aad", uint8(0b1111))
	f.Add(principalJSON("aad", "oid", oid, "azp", appID, "roles", "Tokens.Create"), true, oid, "jane@contoso.com", "aad", uint8(0b1111))
	f.Add(principalJSON("aad", "oid", oid), true, appID, "", "aad", uint8(0b1011))
	f.Add(`{"auth_typ":"aad","claims":null}`, true, oid, "", "aad", uint8(0b1011))
	f.Add(`{"auth_typ":"aad","claims":[{"typ":"oid","val":1}]}`, true, oid, "", "aad", uint8(0b1011))
	f.Add("not base64 at all", false, oid, "", "aad", uint8(0b1011))
	f.Add("", false, "", "", "", uint8(0))
	f.Add(msiPrincipal, true, "", "", "", uint8(0b0001))
	f.Add("{}", true, oid, "", "github", uint8(0b1011))
	f.Fuzz(func(t *testing.T, principal string, encode bool, id, name, idp string, present uint8) {
		if encode {
			principal = b64(principal)
		}
		h := http.Header{}
		for i, kv := range [][2]string{{HeaderPrincipal, principal}, {HeaderPrincipalID, id}, {HeaderPrincipalName, name}, {HeaderPrincipalIDP, idp}} {
			if present&(1<<i) != 0 {
				h[kv[0]] = []string{kv[1]}
			}
		}
		pr, err := PrincipalFromHeaders(h)
		switch {
		case present&0b1111 == 0:
			if pr != nil || err != nil {
				t.Fatalf("no headers: %v, %v", pr, err)
			}
		case err != nil:
			if pr != nil || !errors.Is(err, ErrInvalidPrincipal) {
				t.Fatalf("error %v with principal %v", err, pr)
			}
		default:
			if pr == nil {
				t.Fatal("headers present, neither principal nor error")
			}
			if !tokens.IsGUID(pr.ObjectID) || pr.ObjectID != strings.ToLower(pr.ObjectID) || !strings.EqualFold(strings.TrimSpace(id), pr.ObjectID) {
				t.Fatalf("object id %q (header %q)", pr.ObjectID, id)
			}
			if pr.IDP != IDPEntra || pr.IsQueue() || present&0b1011 != 0b1011 {
				t.Fatalf("accepted %#v with headers %04b", pr, present)
			}
			if pr.AppID != "" && !tokens.IsGUID(pr.AppID) || pr.TenantID != "" && !tokens.IsGUID(pr.TenantID) {
				t.Fatalf("accepted ids %#v", pr)
			}
			if strings.ContainsAny(pr.Name, "\r\n\x00") || len([]rune(pr.Name)) > maxNameLength {
				t.Fatalf("name %q", pr.Name)
			}
			_ = pr.String()
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		examplePolicy,
		`{"version":1,"rules":[{"principals":["queue"],"actions":["list"],"workspaces":["/subscriptions/*"]}]}`,
		`{"version":1,"rules":[{"principals":[{"appRole":"Tokens.Create"}],"actions":["create"],"workspaces":["/subscriptions/*/resourceGroups/rg-*/providers/Microsoft.Databricks/workspaces/*a*"],"maxLifetime":86400}]}`,
		`{"version":1,"rules":[]}`, `{}`, `[]`, `null`, `{"version":1,"version":2}`, `{"version":1,"rules":[{"maxLifetime":1e400}]}`,
		`{"version":1,"rules":[{"principals":[{"objectId":"` + oid + `","appId":"` + appID + `"}]}]}`, "\xff\xfe", `{"a":1}{"b":2}`,
		`{"version":1,"rules":[{"principals":["queue"],"actions":["create"],"workspaces":["/subscriptions/*"],"requireScopes":true,"scopes":["sql:read*","authentication","*"]}]}`,
	} {
		f.Add([]byte(s))
	}
	prs := []*Principal{
		nil, Queue(),
		{ObjectID: oid, AppID: appID, IDP: IDPEntra, Roles: []string{"Tokens.Create"}},
		{ObjectID: etlOID, IDP: IDPEntra},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			if p != nil {
				t.Fatal("policy with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.TrimSpace(line) == "" {
					t.Fatalf("empty problem line in %q", err)
				}
			}
			return
		}
		if p.Rules() == 0 {
			t.Fatal("accepted a policy without rules")
		}
		for _, r := range p.rules {
			if len(r.principals) == 0 || len(r.actions) == 0 || len(r.workspaces) == 0 ||
				r.maxLifetime < 0 || r.maxLifetime > MaxRuleLifetime || r.maxLifetime%time.Second != 0 {
				t.Fatalf("accepted rule %+v", r)
			}
		}
		for _, r := range p.rules {
			if (r.scopes != nil || r.requireScopes) && !slices.Contains(r.actions, ActionCreate) {
				t.Fatalf("accepted scope rules on a rule that does not grant create: %+v", r)
			}
		}
		for _, pr := range prs {
			// However the rules are written, a wildcard never grants the
			// scopes that mint tokens.
			for _, priv := range []string{"authentication", "all-apis:read"} {
				d := p.Decide(pr, ActionCreate, ws(sub1, "rg-data-x", "etl-lake"), tokens.Scopes{List: []string{priv}})
				if d.Allowed && !slices.ContainsFunc(p.rules, func(r rule) bool { return slices.Contains(r.scopes, priv) }) {
					t.Fatalf("%s granted without a rule naming it", priv)
				}
			}
			for _, a := range slices.Concat(Actions, []tokens.Action{"delete"}) {
				d := p.Decide(pr, a, ws(sub1, "rg-data-x", "etl-lake"), tokens.Scopes{})
				if d.Allowed != (d.Rule >= 0) || d.Rule >= p.Rules() || (!d.Allowed || a != ActionCreate) && d.MaxLifetime != 0 {
					t.Fatalf("Decide(%v, %s) = %+v", pr, a, d)
				}
				if pr == nil && d.Allowed {
					t.Fatal("nil principal allowed")
				}
			}
		}
	})
}
