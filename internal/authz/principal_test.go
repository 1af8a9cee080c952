package authz

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
)

const (
	oid    = "6f1c2f9e-3b7a-4c1e-9d2a-0c5e8b7a1f01"
	appID  = "0a1b2c3d-0000-4000-8000-00000000c11e"
	tenant = "72f988bf-0000-4000-8000-00000000d5e7"
)

// msiPrincipal is X-MS-CLIENT-PRINCIPAL as App Service builds it for a v1.0
// app-only token of a managed identity with two app roles (claims mapped:
// oid and tid as URIs, appid and roles kept).
const msiPrincipal = `{"auth_typ":"aad","claims":[` +
	`{"typ":"aud","val":"api://5e7a0c1d-0000-4000-8000-00000000ea51"},` +
	`{"typ":"iss","val":"https://sts.windows.net/` + tenant + `/"},` +
	`{"typ":"iat","val":"1727285982"},{"typ":"nbf","val":"1727285982"},{"typ":"exp","val":"1727372682"},` +
	`{"typ":"aio","val":"k2BgYNi…"},` +
	`{"typ":"appid","val":"` + appID + `"},{"typ":"appidacr","val":"2"},` +
	`{"typ":"http://schemas.microsoft.com/identity/claims/identityprovider","val":"https://sts.windows.net/` + tenant + `/"},` +
	`{"typ":"idtyp","val":"app"},` +
	`{"typ":"http://schemas.microsoft.com/identity/claims/objectidentifier","val":"` + oid + `"},` +
	`{"typ":"rh","val":"0.AAAA…"},` +
	`{"typ":"roles","val":"Tokens.Create"},{"typ":"roles","val":"Tokens.Read"},` +
	`{"typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier","val":"` + oid + `"},` +
	`{"typ":"http://schemas.microsoft.com/identity/claims/tenantid","val":"` + tenant + `"},` +
	`{"typ":"uti","val":"Xy…"},{"typ":"ver","val":"1.0"}],` +
	`"name_typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",` +
	`"role_typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}`

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// principalJSON builds a client principal with the given claims (typ, val pairs).
func principalJSON(authType string, kv ...string) string {
	var b strings.Builder
	b.WriteString(`{"auth_typ":"` + authType + `","claims":[`)
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"typ":"` + kv[i] + `","val":"` + kv[i+1] + `"}`)
	}
	b.WriteString(`],"name_typ":"name","role_typ":"roles"}`)
	return b.String()
}

func TestPrincipalFromHeaders(t *testing.T) {
	valid := func(principal string) http.Header {
		return headers(HeaderPrincipal, b64(principal), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad")
	}
	tests := []struct {
		name    string
		h       http.Header
		want    *Principal
		wantErr string // substring; "" means no error
	}{
		{name: "no headers", h: http.Header{"Authorization": {"Bearer x"}}, want: nil},
		{
			name: "managed identity, App Service headers",
			h:    headers(HeaderPrincipal, b64(msiPrincipal), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"),
			want: &Principal{ObjectID: oid, AppID: appID, TenantID: tenant, IDP: "aad", Roles: []string{"Tokens.Create", "Tokens.Read"}},
		},
		{
			name: "user with name, v2.0 short claim names (oid, tid, azp), upper-case GUIDs",
			h: headers(HeaderPrincipal, b64(principalJSON("aad", "oid", strings.ToUpper(oid), "tid", tenant, "azp", strings.ToUpper(appID), "name", "Jane Doe")),
				HeaderPrincipalID, oid, HeaderPrincipalName, "jane@contoso.com", HeaderPrincipalIDP, "AAD"),
			want: &Principal{ObjectID: oid, AppID: appID, TenantID: tenant, Name: "jane@contoso.com", IDP: "aad"},
		},
		{
			name: "roles under the role URI and role_typ",
			h: valid(`{"auth_typ":"aad","claims":[{"typ":"http://schemas.microsoft.com/identity/claims/objectidentifier","val":"` + oid + `"},` +
				`{"typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role","val":"Tokens.Create"},{"typ":"custom-role","val":"Tokens.Revoke"},{"typ":"roles","val":"Tokens.Create"}],"role_typ":"custom-role"}`),
			want: &Principal{ObjectID: oid, IDP: "aad", Roles: []string{"Tokens.Create", "Tokens.Revoke"}},
		},
		{
			name: "unpadded base64 and lower-case header keys",
			h: http.Header{"x-ms-client-principal": {strings.TrimRight(b64(principalJSON("aad", "oid", oid)), "=")},
				"x-ms-client-principal-id": {oid}, "x-ms-client-principal-idp": {"aad"}},
			want: &Principal{ObjectID: oid, IDP: "aad"},
		},
		{name: "bad base64", h: headers(HeaderPrincipal, "%%%not-base64%%%", HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"), wantErr: "not base64"},
		{name: "not JSON", h: valid("this is not json"), wantErr: "not the JSON"},
		{name: "JSON but not an object", h: valid(`["aad"]`), wantErr: "not the JSON"},
		{name: "claim value not a string", h: valid(`{"auth_typ":"aad","claims":[{"typ":"oid","val":10}]}`), wantErr: "not the JSON"},
		{name: "no claims", h: valid(`{"auth_typ":"aad"}`), wantErr: "has no claims"},
		{name: "no object id claim", h: valid(principalJSON("aad", "appid", appID, "tid", tenant)), wantErr: "no object id claim"},
		{name: "object id not a GUID", h: headers(HeaderPrincipal, b64(principalJSON("aad", "oid", "admin")), HeaderPrincipalID, "admin", HeaderPrincipalIDP, "aad"), wantErr: "not a GUID"},
		{name: "conflicting object ids", h: valid(principalJSON("aad", "oid", oid, ClaimObjectID, appID)), wantErr: "conflicting object id"},
		{name: "app id not a GUID", h: valid(principalJSON("aad", "oid", oid, "appid", "x")), wantErr: "application id claim is not a GUID"},
		{name: "principal without companions", h: headers(HeaderPrincipal, b64(msiPrincipal)), wantErr: "without " + HeaderPrincipalID},
		{name: "principal without IDP", h: headers(HeaderPrincipal, b64(msiPrincipal), HeaderPrincipalID, oid), wantErr: "without " + HeaderPrincipalIDP},
		{name: "companions without principal", h: headers(HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad", HeaderPrincipalName, "x"), wantErr: HeaderPrincipal + " is missing"},
		{name: "empty principal", h: headers(HeaderPrincipal, "", HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"), wantErr: "is empty"},
		{name: "mismatching id header", h: headers(HeaderPrincipal, b64(msiPrincipal), HeaderPrincipalID, appID, HeaderPrincipalIDP, "aad"), wantErr: "disagrees with the object id"},
		{name: "other identity provider", h: headers(HeaderPrincipal, b64(principalJSON("github", "oid", oid)), HeaderPrincipalID, oid, HeaderPrincipalIDP, "github"), wantErr: "not supported"},
		{name: "auth_typ disagrees with IDP header", h: valid(principalJSON("google", "oid", oid)), wantErr: "auth_typ disagrees"},
		{name: "header twice", h: headers(HeaderPrincipal, b64(msiPrincipal), HeaderPrincipal, b64(msiPrincipal), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"), wantErr: "appears 2 times"},
		{name: "too long", h: headers(HeaderPrincipal, strings.Repeat("A", maxPrincipalHeader+4), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PrincipalFromHeaders(tt.h)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidPrincipal) {
					t.Errorf("err %v does not wrap ErrInvalidPrincipal", err)
				}
				if got != nil {
					t.Errorf("principal %v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalPrincipal(got, tt.want) {
				t.Fatalf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func equalPrincipal(a, b *Principal) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ObjectID == b.ObjectID && a.AppID == b.AppID && a.TenantID == b.TenantID &&
		a.Name == b.Name && a.IDP == b.IDP && slices.Equal(a.Roles, b.Roles)
}

// Error messages never repeat what the headers held.
func TestPrincipalErrorsHoldNoValues(t *testing.T) {
	secret := "eyJ0eXAiOiJKV1QiLCJhbGciOi.secret"
	for _, h := range []http.Header{
		headers(HeaderPrincipal, secret, HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"),
		headers(HeaderPrincipal, b64(`{"auth_typ":"aad","claims":[{"typ":"oid","val":"`+secret+`"}]}`), HeaderPrincipalID, secret, HeaderPrincipalIDP, "aad"),
		headers(HeaderPrincipal, b64(`{"auth_typ":"aad","claims":[{"typ":"oid","val":"`+oid+`"}]}`), HeaderPrincipalID, secret, HeaderPrincipalIDP, "aad"),
		headers(HeaderPrincipal, b64(`{"auth_typ":"aad","claims":[`+secret), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"),
	} {
		_, err := PrincipalFromHeaders(h)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("err = %v", err)
		}
	}
}

func TestPrincipalString(t *testing.T) {
	pr := &Principal{ObjectID: oid, AppID: appID, TenantID: tenant, Name: "etl\x1b[31m", IDP: "aad", Roles: []string{"Tokens.Create"}}
	want := "objectId=" + oid + " appId=" + appID + " tenantId=" + tenant + ` name="etl\x1b[31m" roles=["Tokens.Create"]`
	if got := pr.String(); got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got := (&Principal{ObjectID: oid, IDP: "aad"}).String(); got != "objectId="+oid {
		t.Errorf("String() = %s", got)
	}
	if got := Queue().String(); got != "queue" {
		t.Errorf("Queue().String() = %s", got)
	}
	var none *Principal
	if got := none.String(); got != "anonymous" {
		t.Errorf("nil String() = %s", got)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("audit", "principal", pr, "queue", Queue())
	for _, want := range []string{`"principal":{"objectId":"` + oid + `","appId":"` + appID + `"`, `"roles":["Tokens.Create"]`, `"queue":"queue"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("log line %s lacks %s", b.String(), want)
		}
	}
}

func TestNamesAreSanitised(t *testing.T) {
	h := headers(HeaderPrincipal, b64(principalJSON("aad", "oid", oid)), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad",
		HeaderPrincipalName, "jane\r\n\u202edoe"+strings.Repeat("x", 400))
	pr, err := PrincipalFromHeaders(h)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(pr.Name, "\r\n\u202e") || len(pr.Name) != maxNameLength {
		t.Errorf("Name = %q (%d)", pr.Name, len(pr.Name))
	}
}

func TestQueuePrincipal(t *testing.T) {
	q := Queue()
	if !q.IsQueue() || q.ObjectID != "" {
		t.Fatalf("Queue() = %#v", q)
	}
	// A header principal is never the queue principal.
	pr, err := PrincipalFromHeaders(headers(HeaderPrincipal, b64(msiPrincipal), HeaderPrincipalID, oid, HeaderPrincipalIDP, "aad"))
	if err != nil || pr.IsQueue() {
		t.Fatalf("header principal %v, %v", pr, err)
	}
	if _, err := PrincipalFromHeaders(headers(HeaderPrincipal, b64(principalJSON("queue", "oid", oid)), HeaderPrincipalID, oid, HeaderPrincipalIDP, "queue")); err == nil {
		t.Fatal("IDP queue accepted from headers")
	}
}

// TestPlatformAuthEnabled reads WEBSITE_AUTH_ENABLED as the Functions host
// does (HostEasyAuthOptionsSetup.IsSiteAuthEnabled: bool.TryParse, else a
// non-zero int.TryParse), so App Service's "True" and a "1" both count.
func TestPlatformAuthEnabled(t *testing.T) {
	for v, want := range map[string]bool{"True": true, "true": true, " TRUE ": true, "": false, "False": false,
		"1": true, " 2 ": true, "-1": true, "+1": true, "0": false, "00": false, "1.0": false, "yes": false, "99999999999": false} {
		if got := PlatformAuthEnabled(func(string) string { return v }); got != want {
			t.Errorf("WEBSITE_AUTH_ENABLED=%q: %v, want %v", v, got, want)
		}
	}
}
