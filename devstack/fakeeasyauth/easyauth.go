// Package fakeeasyauth stands in for App Service Authentication ("Easy Auth")
// with the Microsoft Entra provider, as infra/bicep configures it
// (requireAuthentication, unauthenticatedClientAction Return401, allowed
// audiences api://<client id> and <client id>), for hostsim.Options.Authenticate:
//
//	h, err := hostsim.Start(ctx, hostsim.Options{…, Authenticate: fakeeasyauth.Authenticate(fakeeasyauth.Validator())})
//	tok := fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{ObjectID: oid, AppID: appID, Roles: []string{"Tokens.Create"}})
//	req.Header.Set("Authorization", "Bearer "+tok)
//
// A request without a valid bearer token (minted in this process by
// fakeentra.NewToken, unexpired, for an allowed audience) is refused with 401 and
// never reaches the handler. An accepted one reaches it with the
// X-MS-CLIENT-PRINCIPAL* headers App Service builds: X-MS-CLIENT-PRINCIPAL
// is base64 (standard, padded) of
//
//	{"auth_typ":"aad","claims":[{"typ":…,"val":…},…],"name_typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name","role_typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
//
// with the token's claims after App Service's default claim mapping (oid as
// …/identity/claims/objectidentifier, tid as …/identity/claims/tenantid, sub
// as …/claims/nameidentifier, idp as …/identity/claims/identityprovider;
// aud, iss, iat, nbf, exp, appid, appidacr, idtyp, ver, xms_mirid kept; one
// "roles" claim per app role), X-MS-CLIENT-PRINCIPAL-ID the object id,
// X-MS-CLIENT-PRINCIPAL-IDP "aad" and, when the caller has a name,
// X-MS-CLIENT-PRINCIPAL-NAME. The host simulator removes client-sent copies
// of these headers before calling the hook.
//
// fakeentra.Claims has no roles claim, so app roles (and a display name) travel
// beside the token: NewCallerToken records them under the token's jti,
// which the signature covers, in a process-wide table; a "roles" array in
// the token payload is read as well. Like the tokens themselves, this only
// works within one process.
//
// Not emulated: the /.auth endpoints, the token store and X-MS-TOKEN-*
// headers, session cookies, login redirects, excludedPaths, issuer and
// tenant checks beyond what the validate function does, and
// defaultAuthorizationPolicy (allowed applications and principals).
package fakeeasyauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// ClientID is the client id of the stand-in app registration that fronts
// the Function App (authClientId in infra/bicep).
const ClientID = "5e7a0c1d-0000-4000-8000-00000000ea51"

// Audiences are the audiences Easy Auth accepts for the app registration
// clientID: its application id URI api://<clientID> (what a managed identity
// asks for, as v1.0 tokens carry it) and the bare client id (v2.0 tokens).
func Audiences(clientID string) []string { return []string{"api://" + clientID, clientID} }

// Validator returns the validate function for Authenticate: a token minted
// in this process, now within [nbf, exp), for one of audiences (default
// Audiences(ClientID)).
func Validator(audiences ...string) func(raw string) (fakeentra.Claims, error) {
	return ValidatorAt(time.Now, audiences...)
}

// ValidatorAt is Validator with a clock.
func ValidatorAt(now func() time.Time, audiences ...string) func(raw string) (fakeentra.Claims, error) {
	if len(audiences) == 0 {
		audiences = Audiences(ClientID)
	}
	audiences = slices.Clone(audiences)
	return func(raw string) (fakeentra.Claims, error) { return fakeentra.Validate(raw, now(), audiences...) }
}

// The X-MS-CLIENT-PRINCIPAL* headers.
const (
	HeaderPrincipal     = "X-MS-CLIENT-PRINCIPAL"
	HeaderPrincipalID   = "X-MS-CLIENT-PRINCIPAL-ID"
	HeaderPrincipalName = "X-MS-CLIENT-PRINCIPAL-NAME"
	HeaderPrincipalIDP  = "X-MS-CLIENT-PRINCIPAL-IDP"
)

// Claim types after App Service's default claim mapping.
const (
	claimObjectID     = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimTenantID     = "http://schemas.microsoft.com/identity/claims/tenantid"
	claimNameID       = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
	claimIdentityProv = "http://schemas.microsoft.com/identity/claims/identityprovider"
	nameType          = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	roleType          = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
)

// Authenticate returns a hostsim.Options.Authenticate hook: it reads
// "Authorization: Bearer <token>", validates the token with validate and
// returns the X-MS-CLIENT-PRINCIPAL* headers for it; no token, another
// scheme or a token validate refuses is 401.
func Authenticate(validate func(raw string) (fakeentra.Claims, error)) func(*http.Request) (http.Header, int) {
	return func(r *http.Request) (http.Header, int) {
		raw, ok := fakeentra.BearerToken(r.Header.Get("Authorization"))
		if !ok {
			return nil, http.StatusUnauthorized
		}
		c, err := validate(raw)
		if err != nil {
			return nil, http.StatusUnauthorized
		}
		ex := lookup(c.ID)
		roles := ex.roles
		if fromToken := payloadRoles(raw); len(fromToken) > 0 {
			roles = fromToken
		}
		return Headers(c, roles, ex.name), 0
	}
}

// Headers builds the X-MS-CLIENT-PRINCIPAL* headers App Service forwards
// for a caller with claims c, app roles roles and display name name
// (X-MS-CLIENT-PRINCIPAL-NAME is omitted when name is empty).
func Headers(c fakeentra.Claims, roles []string, name string) http.Header {
	var claims []claim
	add := func(typ, val string) {
		if val != "" {
			claims = append(claims, claim{typ, val})
		}
	}
	num := func(n int64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	add("aud", c.Audience)
	add("iss", c.Issuer)
	add("iat", num(c.IssuedAt))
	add("nbf", num(c.NotBefore))
	add("exp", num(c.ExpiresAt))
	add("appid", c.AppID)
	add("appidacr", c.AppIDACR)
	add(claimIdentityProv, c.IdP)
	add("idtyp", c.IDType)
	add("name", name)
	add(claimObjectID, c.ObjectID)
	for _, r := range roles {
		add("roles", r)
	}
	add(claimNameID, c.Subject)
	add(claimTenantID, c.TenantID)
	add("ver", c.Version)
	add("xms_mirid", c.MIResourceID)
	body, err := json.Marshal(clientPrincipal{AuthType: "aad", Claims: claims, NameType: nameType, RoleType: roleType})
	if err != nil {
		panic(err) // strings only
	}
	id := c.ObjectID
	if id == "" {
		id = c.Subject
	}
	h := http.Header{}
	h.Set(HeaderPrincipal, base64.StdEncoding.EncodeToString(body))
	h.Set(HeaderPrincipalID, id)
	h.Set(HeaderPrincipalIDP, "aad")
	if name != "" {
		h.Set(HeaderPrincipalName, name)
	}
	return h
}

type clientPrincipal struct {
	AuthType string  `json:"auth_typ"`
	Claims   []claim `json:"claims"`
	NameType string  `json:"name_typ"`
	RoleType string  `json:"role_typ"`
}

type claim struct {
	Type  string `json:"typ"`
	Value string `json:"val"`
}

// payloadRoles reads a "roles" array from the token's payload, if any.
func payloadRoles(raw string) []string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var p struct {
		Roles []string `json:"roles"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return nil
	}
	return p.Roles
}

// Caller describes a principal calling through Easy Auth.
type Caller struct {
	ObjectID string // oid; a random GUID when empty
	AppID    string // appid: the client application (a managed identity's client id)
	TenantID string // tid; default fakeentra.DefaultTenantID
	Name     string // display name (X-MS-CLIENT-PRINCIPAL-NAME); empty for app-only callers
	Roles    []string
	Audience string        // default api://ClientID
	Lifetime time.Duration // default 1h
	Now      time.Time     // issue time; default time.Now()
}

// extras are the claims fakeentra.Claims cannot carry, by jti.
type extras struct {
	roles []string
	name  string
}

var table sync.Map // jti -> extras

func lookup(jti string) extras {
	if jti == "" {
		return extras{}
	}
	v, _ := table.Load(jti)
	ex, _ := v.(extras)
	return ex
}

// NewCallerToken mints an access token for c, as Entra would issue it to a
// managed identity or service principal calling the Function App's app
// registration (a v1.0 token, iss https://sts.windows.net/<tenant>/).
func NewCallerToken(c Caller) string {
	tok, _ := NewCallerTokenClaims(c)
	return tok
}

// NewCallerTokenClaims is NewCallerToken, also returning the claims.
func NewCallerTokenClaims(c Caller) (string, fakeentra.Claims) {
	if c.ObjectID == "" {
		c.ObjectID = NewGUID()
	}
	if c.TenantID == "" {
		c.TenantID = fakeentra.DefaultTenantID
	}
	if c.Audience == "" {
		c.Audience = "api://" + ClientID
	}
	if c.Lifetime <= 0 {
		c.Lifetime = time.Hour
	}
	if c.Now.IsZero() {
		c.Now = time.Now()
	}
	issuer := "https://sts.windows.net/" + c.TenantID + "/"
	idType := "app"
	if c.Name != "" {
		idType = "user"
	}
	cl := fakeentra.Claims{
		Audience:  c.Audience,
		Issuer:    issuer,
		IssuedAt:  c.Now.Unix(),
		NotBefore: c.Now.Unix(),
		ExpiresAt: c.Now.Add(c.Lifetime).Unix(),
		AppID:     c.AppID,
		AppIDACR:  "2",
		IdP:       issuer,
		IDType:    idType,
		ObjectID:  c.ObjectID,
		Subject:   c.ObjectID,
		TenantID:  c.TenantID,
		Version:   "1.0",
		ID:        kit.Hex(16),
	}
	table.Store(cl.ID, extras{roles: slices.Clone(c.Roles), name: c.Name})
	return fakeentra.NewToken(cl), cl
}

// NewGUID returns a random (version 4) GUID in lower case.
func NewGUID() string { return kit.GUID() }
