package tokens

import (
	"log/slog"
	"strings"
	"time"
)

// Secret holds a token value. It prints, formats and logs as REDACTED; the
// only way to the value is Reveal, which the few places that must hand it
// over (the HTTP response, Key Vault, a result message when configured) call.
type Secret struct{ v string }

// NewSecret wraps a token value.
func NewSecret(v string) Secret { return Secret{v: v} }

// Reveal returns the value. Call it only where the value leaves the service
// on purpose.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether there is no value.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string               { return "REDACTED" }
func (s Secret) GoString() string             { return "REDACTED" }
func (s Secret) LogValue() slog.Value         { return slog.StringValue("REDACTED") }
func (s Secret) MarshalText() ([]byte, error) { return []byte("REDACTED"), nil }

// Token is a Databricks personal access token as the Token API describes it.
type Token struct {
	ID        string
	Comment   string // as stored in Databricks, marker included
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never expires
	// Scopes are what Databricks says the token may call.
	Scopes Scopes
}

// Issued is a token just created, with its value.
type Issued struct {
	Token
	Value Secret
}

// Marker is what the service keeps at the front of a token's Databricks
// comment: who asked (request id) and why (a request or a workspace event).
// It lets a retried or redelivered request find the token its first attempt
// issued, and lets the service tell its own tokens from others. Callers
// never see it: responses and results carry their own comment exactly.
type Marker struct {
	Kind      string // MarkerRequest or MarkerEvent
	RequestID string
}

// Marker kinds.
const (
	MarkerRequest = "req"
	MarkerEvent   = "evt"
)

const markerPrefix = "[dtb:"

// Comment builds the Databricks comment for a caller comment.
func (m Marker) Comment(caller string) string {
	c := markerPrefix + m.Kind + ":" + m.RequestID + "]"
	if caller != "" {
		c += " " + caller
	}
	return c
}

// SplitComment separates the service's marker from the caller's comment.
// ok is false for tokens the service did not issue.
func SplitComment(comment string) (m Marker, caller string, ok bool) {
	rest, found := strings.CutPrefix(comment, markerPrefix)
	if !found || len(rest) < 4 || rest[3] != ':' {
		return Marker{}, comment, false
	}
	kind := rest[:3]
	id, after, found := strings.Cut(rest[4:], "]")
	if !found || (kind != MarkerRequest && kind != MarkerEvent) || ValidRequestID(id) != nil {
		return Marker{}, comment, false
	}
	if after != "" && after[0] != ' ' {
		return Marker{}, comment, false // not a comment this service wrote
	}
	after, _ = strings.CutPrefix(after, " ")
	return Marker{Kind: kind, RequestID: id}, after, true
}

// Record is what callers learn about an issued token: the HTTP response of
// create-token and the data of a Created or Rotated result.
type Record struct {
	RequestID    string
	Workspace    WorkspaceID
	WorkspaceURL string
	TokenID      string
	Comment      string // the caller's, without the marker
	CreatedAt    time.Time
	ExpiresAt    time.Time // zero: never expires
	Scopes       Scopes    // none: unscoped
	Value        Secret    // inline delivery only, and only while it can still be produced
	SecretURI    string    // Key Vault delivery only
}

// expired reports whether the record's token has expired at now.
func (r Record) expired(now time.Time) bool { return !r.ExpiresAt.IsZero() && !r.ExpiresAt.After(now) }

// withoutValue is the record without its value: what may be kept.
func (r Record) withoutValue() Record {
	r.Value = Secret{}
	return r
}

// TokenSummary is one entry of list-tokens.
type TokenSummary struct {
	TokenID   string
	Comment   string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never expires
	Scopes    Scopes    // as Databricks lists them; none: unscoped
}

// RevokeStatus is the outcome of a revoke.
type RevokeStatus string

// Revoke outcomes: revoking is idempotent, so an unknown token is NotFound, not an error.
const (
	StatusRevoked  RevokeStatus = "revoked"
	StatusNotFound RevokeStatus = "notFound"
)

// RevokeResult is the outcome of a revoke request.
type RevokeResult struct {
	RequestID string
	Workspace WorkspaceID
	TokenID   string
	Status    RevokeStatus
	SecretURI string // when revoked by its Key Vault secret
}

// OutcomeType is the CloudEvents type of a result message.
type OutcomeType string

// Result types published to the results queue.
const (
	Created OutcomeType = "Databricks.Token.Created"
	Revoked OutcomeType = "Databricks.Token.Revoked"
	Rotated OutcomeType = "Databricks.Token.Rotated"
	Failed  OutcomeType = "Databricks.Token.Failed"
	// Expiring: a token the service cannot rotate (inline delivery)
	// entered the rotation window; its holder must act (contract section 6).
	Expiring OutcomeType = "Databricks.Token.Expiring"
)

// Outcome is one finished operation, as published to the results queue.
// Exactly one of Record, Revoke and Err is set, matching Type.
type Outcome struct {
	Type      OutcomeType
	RequestID string
	// Workspace is the workspace resource id as known (the caller's text
	// when it could not be parsed; empty when there was none).
	Workspace string
	TokenID   string
	// CorrelationID is the triggering message's MessageId, or the HTTP
	// request id.
	CorrelationID string
	// RequestedBy names the caller, when known.
	RequestedBy string
	Record      *Record
	Revoke      *RevokeResult
	Err         *Error
	// Rotating is, for a rotation's outcome (Rotated or Failed), the Key
	// Vault version that was due: the token a Rotated outcome superseded,
	// or the one a Failed outcome leaves without a successor. Not published.
	Rotating *StoredToken
}
