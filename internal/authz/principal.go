package authz

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// The headers App Service Authentication forwards to the app.
const (
	HeaderPrincipal     = "X-MS-CLIENT-PRINCIPAL"
	HeaderPrincipalID   = "X-MS-CLIENT-PRINCIPAL-ID"
	HeaderPrincipalName = "X-MS-CLIENT-PRINCIPAL-NAME"
	HeaderPrincipalIDP  = "X-MS-CLIENT-PRINCIPAL-IDP"
)

// PrincipalHeaders are the four headers, in the order above.
var PrincipalHeaders = []string{HeaderPrincipal, HeaderPrincipalID, HeaderPrincipalName, HeaderPrincipalIDP}

// IDPEntra is the X-MS-CLIENT-PRINCIPAL-IDP value (and auth_typ) of the
// Microsoft Entra provider.
const IDPEntra = "aad"

// IDPQueue marks the Queue principal; no header principal ever has it.
const IDPQueue = "queue"

// Claim types in X-MS-CLIENT-PRINCIPAL, after App Service's claim mapping,
// and the short names the token itself uses.
const (
	ClaimObjectID      = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	ClaimObjectIDShort = "oid"
	ClaimTenantID      = "http://schemas.microsoft.com/identity/claims/tenantid"
	ClaimTenantIDShort = "tid"
	ClaimAppID         = "appid" // v1.0 access tokens
	ClaimAuthorizedApp = "azp"   // v2.0 access tokens
	ClaimRoles         = "roles"
	ClaimRole          = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
)

// ErrInvalidPrincipal is wrapped by every PrincipalFromHeaders error.
var ErrInvalidPrincipal = errors.New("invalid client principal headers")

// maxPrincipalHeader bounds the encoded X-MS-CLIENT-PRINCIPAL header.
const maxPrincipalHeader = 128 << 10

// maxNameLength bounds the display name kept from X-MS-CLIENT-PRINCIPAL-NAME.
const maxNameLength = 256

// Principal is an authenticated caller.
type Principal struct {
	ObjectID string // Entra object id (oid), lower case
	AppID    string // client application id (appid or azp), lower case; may be empty
	TenantID string // tid, lower case; may be empty
	Name     string // display name (X-MS-CLIENT-PRINCIPAL-NAME); for logs only, never for decisions
	IDP      string // "aad", or "queue" for the Queue principal
	Roles    []string
}

// Queue returns the principal of commands from the token-requests queue,
// which match the policy's "queue" principal and nothing else.
func Queue() *Principal { return &Principal{Name: "queue", IDP: IDPQueue} }

// IsQueue reports whether pr is the Queue principal.
func (pr *Principal) IsQueue() bool { return pr != nil && pr.IDP == IDPQueue && pr.ObjectID == "" }

// CallerID is the principal's object id (tokens.Caller); empty for the
// Queue principal and nil.
func (pr *Principal) CallerID() string {
	if pr == nil || pr.IsQueue() {
		return ""
	}
	return pr.ObjectID
}

// HasRole reports whether pr holds the app role (compared as .NET's
// IsInRole does: exactly).
func (pr *Principal) HasRole(role string) bool { return pr != nil && slices.Contains(pr.Roles, role) }

// String identifies the principal for audit logs: "objectId=… appId=…
// tenantId=… roles=[…]", "queue", or "anonymous" for nil. It never holds a
// token.
func (pr *Principal) String() string {
	switch {
	case pr == nil:
		return "anonymous"
	case pr.IsQueue():
		return "queue"
	}
	var b strings.Builder
	b.WriteString("objectId=" + pr.ObjectID)
	if pr.AppID != "" {
		b.WriteString(" appId=" + pr.AppID)
	}
	if pr.TenantID != "" {
		b.WriteString(" tenantId=" + pr.TenantID)
	}
	if pr.Name != "" {
		fmt.Fprintf(&b, " name=%q", pr.Name)
	}
	if len(pr.Roles) > 0 {
		fmt.Fprintf(&b, " roles=%q", pr.Roles)
	}
	return b.String()
}

// LogValue makes slog log the principal as a group of its identifiers.
func (pr *Principal) LogValue() slog.Value {
	switch {
	case pr == nil:
		return slog.StringValue("anonymous")
	case pr.IsQueue():
		return slog.StringValue("queue")
	}
	attrs := []slog.Attr{slog.String("objectId", pr.ObjectID)}
	if pr.AppID != "" {
		attrs = append(attrs, slog.String("appId", pr.AppID))
	}
	if pr.TenantID != "" {
		attrs = append(attrs, slog.String("tenantId", pr.TenantID))
	}
	if pr.Name != "" {
		attrs = append(attrs, slog.String("name", pr.Name))
	}
	if len(pr.Roles) > 0 {
		attrs = append(attrs, slog.Any("roles", pr.Roles))
	}
	return slog.GroupValue(attrs...)
}

// clientPrincipal is the decoded X-MS-CLIENT-PRINCIPAL header.
type clientPrincipal struct {
	AuthType string        `json:"auth_typ"`
	Claims   []clientClaim `json:"claims"`
	NameType string        `json:"name_typ"`
	RoleType string        `json:"role_typ"`
}

type clientClaim struct {
	Type  string `json:"typ"`
	Value string `json:"val"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidPrincipal, fmt.Sprintf(format, args...))
}

// headerValues returns the values of the header name, matching keys
// without regard to case (also for maps not built through Header.Set).
func headerValues(h http.Header, name string) []string {
	var vs []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			vs = append(vs, v...)
		}
	}
	return vs
}

// PrincipalFromHeaders reads the caller App Service Authentication
// forwarded. It returns nil, nil when none of the X-MS-CLIENT-PRINCIPAL*
// headers is present, and an error wrapping ErrInvalidPrincipal when they
// are inconsistent. Error messages hold no header values.
func PrincipalFromHeaders(h http.Header) (*Principal, error) {
	vals := make(map[string][]string, len(PrincipalHeaders))
	present := false
	for _, name := range PrincipalHeaders {
		vs := headerValues(h, name)
		if len(vs) > 1 {
			return nil, invalid("%s appears %d times", name, len(vs))
		}
		if len(vs) == 1 {
			vals[name] = vs
			present = true
		}
	}
	if !present {
		return nil, nil
	}
	get := func(name string) (string, bool) {
		vs, ok := vals[name]
		if !ok {
			return "", false
		}
		return strings.TrimSpace(vs[0]), true
	}
	raw, ok := get(HeaderPrincipal)
	if !ok {
		return nil, invalid("%s is missing while other %s* headers are present", HeaderPrincipal, HeaderPrincipal)
	}
	idHeader, ok := get(HeaderPrincipalID)
	if !ok || idHeader == "" {
		return nil, invalid("%s without %s", HeaderPrincipal, HeaderPrincipalID)
	}
	idp, ok := get(HeaderPrincipalIDP)
	if !ok || idp == "" {
		return nil, invalid("%s without %s", HeaderPrincipal, HeaderPrincipalIDP)
	}
	name, _ := get(HeaderPrincipalName)

	if raw == "" {
		return nil, invalid("%s is empty", HeaderPrincipal)
	}
	if len(raw) > maxPrincipalHeader {
		return nil, invalid("%s is longer than %d bytes", HeaderPrincipal, maxPrincipalHeader)
	}
	data, err := decodeBase64(raw)
	if err != nil {
		return nil, invalid("%s is not base64", HeaderPrincipal)
	}
	var cp clientPrincipal
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, invalid("%s is not the JSON App Service writes ({\"auth_typ\",\"claims\":[{\"typ\",\"val\"}]}): %s", HeaderPrincipal, jsonProblem(err))
	}
	if cp.Claims == nil {
		return nil, invalid("%s has no claims", HeaderPrincipal)
	}
	if !strings.EqualFold(idp, IDPEntra) {
		return nil, invalid("identity provider %q is not supported (only Microsoft Entra, %q)", printable(idp, 32), IDPEntra)
	}
	if !strings.EqualFold(cp.AuthType, idp) {
		return nil, invalid("%s auth_typ disagrees with %s", HeaderPrincipal, HeaderPrincipalIDP)
	}

	pr := &Principal{IDP: IDPEntra, Name: printable(name, maxNameLength)}
	if pr.ObjectID, err = single(cp.Claims, "object id", ClaimObjectID, ClaimObjectIDShort); err != nil {
		return nil, err
	}
	if pr.ObjectID == "" {
		return nil, invalid("%s has no object id claim (%s or %s)", HeaderPrincipal, ClaimObjectID, ClaimObjectIDShort)
	}
	if !tokens.IsGUID(pr.ObjectID) {
		return nil, invalid("the object id claim is not a GUID")
	}
	if !strings.EqualFold(idHeader, pr.ObjectID) {
		return nil, invalid("%s disagrees with the object id claim", HeaderPrincipalID)
	}
	if pr.AppID, err = single(cp.Claims, "application id", ClaimAppID, ClaimAuthorizedApp); err != nil {
		return nil, err
	}
	if pr.AppID != "" && !tokens.IsGUID(pr.AppID) {
		return nil, invalid("the application id claim is not a GUID")
	}
	if pr.TenantID, err = single(cp.Claims, "tenant id", ClaimTenantID, ClaimTenantIDShort); err != nil {
		return nil, err
	}
	if pr.TenantID != "" && !tokens.IsGUID(pr.TenantID) {
		return nil, invalid("the tenant id claim is not a GUID")
	}
	pr.ObjectID, pr.AppID, pr.TenantID = strings.ToLower(pr.ObjectID), strings.ToLower(pr.AppID), strings.ToLower(pr.TenantID)

	roleTypes := []string{ClaimRoles, ClaimRole, "role"}
	if cp.RoleType != "" {
		roleTypes = append(roleTypes, cp.RoleType)
	}
	for _, c := range cp.Claims {
		if slices.ContainsFunc(roleTypes, func(t string) bool { return strings.EqualFold(t, c.Type) }) &&
			c.Value != "" && !slices.Contains(pr.Roles, c.Value) {
			pr.Roles = append(pr.Roles, c.Value)
		}
	}
	return pr, nil
}

// single returns the one value the claims of the given types hold (types
// compared without regard to case); several different values are an error.
func single(claims []clientClaim, what string, types ...string) (string, error) {
	var v string
	for _, c := range claims {
		if !slices.ContainsFunc(types, func(t string) bool { return strings.EqualFold(t, c.Type) }) {
			continue
		}
		val := strings.TrimSpace(c.Value)
		switch {
		case v == "":
			v = val
		case !strings.EqualFold(v, val):
			return "", invalid("%s has conflicting %s claims", HeaderPrincipal, what)
		}
	}
	return v, nil
}

// decodeBase64 accepts standard base64 with or without padding (App
// Service pads; some proxies strip it).
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s must be %s", typ.Field, typ.Type)
		}
		return fmt.Sprintf("want %s, got %s", typ.Type, typ.Value)
	}
	return "invalid JSON"
}

// printable keeps at most max runes of s, without control or format
// characters, so that a name can go into a log line.
func printable(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			break
		}
		if r == unicode.ReplacementChar || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			continue
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// PlatformAuthEnabled reports whether App Service Authentication is on for
// this app, from the WEBSITE_AUTH_ENABLED variable App Service sets (read
// with getenv, e.g. os.Getenv). Only then are X-MS-CLIENT-PRINCIPAL*
// headers set by the platform rather than by the client.
//
// The value is read as the Functions host reads it
// (HostEasyAuthOptionsSetup.IsSiteAuthEnabled): "true" or "false" in any
// case, else a whole number (32-bit, optional sign), non-zero meaning on;
// surrounding spaces are ignored and anything else is off.
func PlatformAuthEnabled(getenv func(string) string) bool {
	v := strings.TrimSpace(getenv(EnvPlatformAuthEnabled))
	switch {
	case strings.EqualFold(v, "true"):
		return true
	case strings.EqualFold(v, "false"):
		return false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	return err == nil && n != 0
}

// EnvPlatformAuthEnabled is the variable App Service sets to "True" when
// App Service Authentication is enabled (Microsoft.Identity.Web reads it too).
const EnvPlatformAuthEnabled = "WEBSITE_AUTH_ENABLED"
