package fakeeasyauth_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/internal/authz"
)

const (
	logicAppOID = "3d1f0e2a-5b6c-4d7e-8f90-a1b2c3d4e5f6"
	logicAppID  = "9c8b7a6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
)

func request(auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/create-token", strings.NewReader("{}"))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

// apply adds the hook's headers to r as the host simulator does.
func apply(r *http.Request, add http.Header) {
	for k, vs := range add {
		r.Header.Del(k)
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	hook := fakeeasyauth.Authenticate(fakeeasyauth.Validator())
	tests := []struct {
		name   string
		caller fakeeasyauth.Caller
		want   authz.Principal
	}{
		{
			name:   "Logic App managed identity with an app role",
			caller: fakeeasyauth.Caller{ObjectID: logicAppOID, AppID: logicAppID, Roles: []string{"Tokens.Create", "Tokens.Read"}},
			want:   authz.Principal{ObjectID: logicAppOID, AppID: logicAppID, TenantID: fakeentra.DefaultTenantID, IDP: "aad", Roles: []string{"Tokens.Create", "Tokens.Read"}},
		},
		{
			name:   "no roles, upper-case ids, v2.0 audience (the bare client id)",
			caller: fakeeasyauth.Caller{ObjectID: strings.ToUpper(logicAppOID), AppID: strings.ToUpper(logicAppID), Audience: fakeeasyauth.ClientID},
			want:   authz.Principal{ObjectID: logicAppOID, AppID: logicAppID, TenantID: fakeentra.DefaultTenantID, IDP: "aad"},
		},
		{
			name:   "user with a name, other tenant",
			caller: fakeeasyauth.Caller{ObjectID: logicAppOID, AppID: logicAppID, TenantID: "0f0f0f0f-0000-4000-8000-000000000abc", Name: "jane@contoso.com", Roles: []string{"Tokens.Revoke"}},
			want:   authz.Principal{ObjectID: logicAppOID, AppID: logicAppID, TenantID: "0f0f0f0f-0000-4000-8000-000000000abc", Name: "jane@contoso.com", IDP: "aad", Roles: []string{"Tokens.Revoke"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request("Bearer " + fakeeasyauth.NewCallerToken(tt.caller))
			// A client-sent principal is replaced (hostsim also strips it first).
			r.Header.Set(authz.HeaderPrincipalID, "attacker")
			add, status := hook(r)
			if status != 0 {
				t.Fatalf("status %d", status)
			}
			apply(r, add)
			pr, err := authz.PrincipalFromHeaders(r.Header)
			if err != nil {
				t.Fatal(err)
			}
			if pr.ObjectID != tt.want.ObjectID || pr.AppID != tt.want.AppID || pr.TenantID != tt.want.TenantID ||
				pr.Name != tt.want.Name || pr.IDP != tt.want.IDP || !slices.Equal(pr.Roles, tt.want.Roles) {
				t.Fatalf("got %#v, want %#v", pr, tt.want)
			}
		})
	}
}

// The header is what App Service documents: base64 (padded) JSON with
// auth_typ, claims [{typ, val}], name_typ and role_typ, claims mapped.
func TestHeaderShape(t *testing.T) {
	tok, c := fakeeasyauth.NewCallerTokenClaims(fakeeasyauth.Caller{ObjectID: logicAppOID, AppID: logicAppID, Roles: []string{"Tokens.Create"}})
	add, status := fakeeasyauth.Authenticate(fakeeasyauth.Validator())(request("bearer " + tok))
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	if got := add.Get("X-MS-CLIENT-PRINCIPAL-ID"); got != logicAppOID {
		t.Errorf("principal id %q", got)
	}
	if got := add.Get("X-MS-CLIENT-PRINCIPAL-IDP"); got != "aad" {
		t.Errorf("idp %q", got)
	}
	if _, ok := add["X-Ms-Client-Principal-Name"]; ok {
		t.Error("app-only caller got a name header")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(add.Get("X-MS-CLIENT-PRINCIPAL"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"auth_typ", "claims", "name_typ", "role_typ"}) {
		t.Errorf("keys %q", keys)
	}
	var cp struct {
		AuthType string `json:"auth_typ"`
		Claims   []struct {
			Typ string `json:"typ"`
			Val string `json:"val"`
		} `json:"claims"`
		RoleType string `json:"role_typ"`
	}
	if err := json.Unmarshal(raw, &cp); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, cl := range cp.Claims {
		got[cl.Typ] = cl.Val
	}
	want := map[string]string{
		"aud":   "api://" + fakeeasyauth.ClientID,
		"appid": logicAppID,
		"http://schemas.microsoft.com/identity/claims/objectidentifier": logicAppOID,
		"http://schemas.microsoft.com/identity/claims/tenantid":         fakeentra.DefaultTenantID,
		"roles": "Tokens.Create",
		"iss":   "https://sts.windows.net/" + fakeentra.DefaultTenantID + "/",
		"exp":   jsonInt(c.ExpiresAt),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("claim %s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["oid"]; ok {
		t.Error("oid not mapped to the objectidentifier URI")
	}
	if cp.AuthType != "aad" || cp.RoleType != "http://schemas.microsoft.com/ws/2008/06/identity/claims/role" {
		t.Errorf("auth_typ %q role_typ %q", cp.AuthType, cp.RoleType)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestRefused(t *testing.T) {
	now := time.Now()
	hook := fakeeasyauth.Authenticate(fakeeasyauth.ValidatorAt(func() time.Time { return now }))
	valid := fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{ObjectID: logicAppOID, AppID: logicAppID})
	parts := strings.Split(valid, ".")
	for name, auth := range map[string]string{
		"no Authorization header": "",
		"basic scheme":            "Basic dXNlcjpwYXNz",
		"empty bearer":            "Bearer ",
		"not a token":             "Bearer not-a-token",
		"expired":                 "Bearer " + fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{ObjectID: logicAppOID, Now: now.Add(-2 * time.Hour), Lifetime: time.Hour}),
		"not yet valid":           "Bearer " + fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{ObjectID: logicAppOID, Now: now.Add(time.Hour)}),
		"other audience":          "Bearer " + fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{ObjectID: logicAppOID, Audience: fakeentra.ARMResource}),
		"ARM token from the MSI":  "Bearer " + fakeentra.NewToken(fakeentra.Claims{Audience: fakeentra.ManagementResource, ObjectID: logicAppOID, ExpiresAt: now.Add(time.Hour).Unix()}),
		"forged payload":          "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"api://`+fakeeasyauth.ClientID+`","oid":"`+logicAppOID+`","exp":9999999999}`)) + "." + parts[2],
	} {
		t.Run(name, func(t *testing.T) {
			add, status := hook(request(auth))
			if status != http.StatusUnauthorized || add != nil {
				t.Fatalf("status %d, headers %v", status, add)
			}
		})
	}
	// Configurable audience: a hook for another app registration refuses
	// this one's tokens and accepts its own.
	other := fakeeasyauth.Authenticate(fakeeasyauth.Validator(fakeeasyauth.Audiences("0e0e0e0e-0000-4000-8000-000000000001")...))
	if _, status := other(request("Bearer " + valid)); status != http.StatusUnauthorized {
		t.Errorf("other app: status %d", status)
	}
	own := fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{Audience: "api://0e0e0e0e-0000-4000-8000-000000000001"})
	if _, status := other(request("Bearer " + own)); status != 0 {
		t.Errorf("own token: status %d", status)
	}
}

// Headers builds what PrincipalFromHeaders reads, roles included.
func TestHeadersCarryRoles(t *testing.T) {
	h := fakeeasyauth.Headers(fakeentra.Claims{ObjectID: logicAppOID, AppID: logicAppID}, []string{"Tokens.Create", "Tokens.Revoke"}, "")
	pr, err := authz.PrincipalFromHeaders(h)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pr.Roles, []string{"Tokens.Create", "Tokens.Revoke"}) {
		t.Errorf("roles %q", pr.Roles)
	}
}

func TestNewGUID(t *testing.T) {
	a, b := fakeeasyauth.NewGUID(), fakeeasyauth.NewGUID()
	if a == b || len(a) != 36 || a[14] != '4' {
		t.Errorf("NewGUID: %s %s", a, b)
	}
	// An empty ObjectID gets a fresh GUID, which survives the round trip.
	tok, c := fakeeasyauth.NewCallerTokenClaims(fakeeasyauth.Caller{})
	r := request("Bearer " + tok)
	add, status := fakeeasyauth.Authenticate(fakeeasyauth.Validator())(r)
	if status != 0 {
		t.Fatal(status)
	}
	apply(r, add)
	pr, err := authz.PrincipalFromHeaders(r.Header)
	if err != nil || pr.ObjectID != c.ObjectID {
		t.Fatalf("%v %v (want %s)", pr, err, c.ObjectID)
	}
}
