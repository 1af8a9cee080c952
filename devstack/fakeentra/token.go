package fakeentra

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// Well-known resources (v1 audiences) the product asks for.
const (
	// DatabricksResource is the Azure Databricks first-party application id,
	// the audience of the bearer token sent to a workspace.
	DatabricksResource = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
	// ManagementResource is the classic Azure Service Management audience,
	// used for X-Databricks-Azure-SP-Management-Token and accepted by ARM.
	ManagementResource = "https://management.core.windows.net/"
	// ARMResource is the Azure Resource Manager audience.
	ARMResource = "https://management.azure.com/"
	// VaultResource is the Key Vault audience (what the vault's challenge names).
	VaultResource = "https://vault.azure.net"
)

// ManagementAudiences are the audiences ARM accepts (compared with
// SameAudience, so the forms with and without a trailing slash both match).
var ManagementAudiences = []string{ManagementResource, ARMResource}

// Default principal of the stand-in identity endpoint.
const (
	DefaultTenantID = "72f988bf-0000-4000-8000-00000000d5e7"
	DefaultClientID = "0a1b2c3d-0000-4000-8000-00000000c11e"
	DefaultObjectID = "0a1b2c3d-0000-4000-8000-000000000b1d"
)

// Errors returned (wrapped) by Validate.
var (
	ErrMalformed   = errors.New("entra: malformed token")
	ErrSignature   = errors.New("entra: token signature is invalid (not issued by a devstack stand-in in this process)")
	ErrExpired     = errors.New("entra: token has expired")
	ErrNotYetValid = errors.New("entra: token is not yet valid")
	ErrAudience    = errors.New("entra: token audience is not accepted")
)

// Claims are the claims of a stand-in access token; they mirror the v1.0
// access tokens Entra issues to managed identities and service principals.
type Claims struct {
	Audience  string `json:"aud"`
	Issuer    string `json:"iss"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ExpiresAt int64  `json:"exp"`
	AppID     string `json:"appid,omitempty"`
	AppIDACR  string `json:"appidacr,omitempty"`
	IdP       string `json:"idp,omitempty"`
	IDType    string `json:"idtyp,omitempty"`
	ObjectID  string `json:"oid,omitempty"`
	Subject   string `json:"sub,omitempty"`
	TenantID  string `json:"tid,omitempty"`
	// MIResourceID is xms_mirid: the ARM id of a managed identity.
	MIResourceID string `json:"xms_mirid,omitempty"`
	Version      string `json:"ver,omitempty"`
	// ID is jti: random, so every token is unique and unguessable.
	ID string `json:"jti"`
}

// Expiry returns exp as a time.
func (c Claims) Expiry() time.Time { return time.Unix(c.ExpiresAt, 0) }

// signingKey makes tokens minted in this process verifiable by the other
// stand-ins in the same process, and nothing else.
var signingKey = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

var b64 = base64.RawURLEncoding

const tokenHeader = `{"alg":"HS256","typ":"JWT","kid":"devstack"}`

// NewToken returns a JWT-shaped token (header.payload.signature, base64url)
// carrying c, signed with a per-process key so that Validate accepts it. An
// empty c.ID gets a random jti, so two tokens are never equal.
func NewToken(c Claims) string {
	if c.ID == "" {
		c.ID = kit.Hex(16)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		panic(err) // Claims has only strings and integers
	}
	signed := b64.EncodeToString([]byte(tokenHeader)) + "." + b64.EncodeToString(payload)
	mac := hmac.New(sha256.New, signingKey)
	mac.Write([]byte(signed))
	return signed + "." + b64.EncodeToString(mac.Sum(nil))
}

// ParseToken decodes the claims of a token without checking its signature,
// times or audience.
func ParseToken(raw string) (Claims, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("%w: want 3 dot-separated parts, got %d", ErrMalformed, len(parts))
	}
	if _, err := b64.DecodeString(parts[0]); err != nil {
		return Claims{}, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return c, nil
}

// Validate parses raw, checks that it was minted by NewToken in this process,
// that now lies in [nbf, exp) (no clock skew allowance), and, when
// wantAudiences is not empty, that aud matches one of them (SameAudience).
// The claims are returned also with an error, when they could be parsed.
func Validate(raw string, now time.Time, wantAudiences ...string) (Claims, error) {
	c, err := ParseToken(raw)
	if err != nil {
		return c, err
	}
	i := strings.LastIndexByte(raw, '.')
	sig, err := b64.DecodeString(raw[i+1:])
	if err != nil {
		return c, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	mac := hmac.New(sha256.New, signingKey)
	mac.Write([]byte(raw[:i]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return c, ErrSignature
	}
	if now.Unix() >= c.ExpiresAt {
		return c, fmt.Errorf("%w: expired at %s, now %s", ErrExpired, c.Expiry().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.Unix() < c.NotBefore {
		return c, fmt.Errorf("%w: nbf %s", ErrNotYetValid, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339))
	}
	if len(wantAudiences) > 0 && !AudienceIn(c.Audience, wantAudiences...) {
		return c, fmt.Errorf("%w: %q, want one of %q", ErrAudience, c.Audience, wantAudiences)
	}
	return c, nil
}

// SameAudience reports whether two audiences are the same, ignoring one
// trailing slash and ASCII case: https://management.core.windows.net/ and
// https://management.core.windows.net are the same audience.
func SameAudience(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

// AudienceIn reports whether aud is the same audience as one of want.
func AudienceIn(aud string, want ...string) bool {
	for _, w := range want {
		if SameAudience(aud, w) {
			return true
		}
	}
	return false
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header
// value (scheme compared case-insensitively) and whether there was one.
func BearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
