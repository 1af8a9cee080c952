// Package api is the contract's JSON (section 2): the bodies of HTTP
// responses and the data of result messages. Both transports render
// through it, so an HTTP response and the result message of the same
// outcome cannot drift apart.
package api

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/contoso/databricks-token-broker/internal/redact"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Marshal renders v as the contract's JSON: like json.Marshal, but without
// HTML escaping, so that a message saying "/subscriptions/<subscription
// id>/…" reads that way rather than "\u003csubscription id\u003e". The JSON
// goes to API clients, the Functions host and queue consumers, never into
// an HTML page, so there is nothing to escape for.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Record is the create-token response and the data of Created/Rotated results:
// the token as list-tokens shows it, with where it came from and where it went.
type Record struct {
	RequestID           string `json:"requestId"`
	WorkspaceResourceID string `json:"workspaceResourceId"`
	WorkspaceURL        string `json:"workspaceUrl"`
	TokenSummary
	TokenValue  string `json:"tokenValue,omitempty"`
	SecretURI   string `json:"secretUri,omitempty"`
	RequestedBy string `json:"requestedBy,omitempty"`
}

// NewRecord renders r. The token value is included only when withValue is
// true: the HTTP response of inline delivery, or a result message with
// RESULTS_INCLUDE_TOKEN_VALUE=true.
func NewRecord(r tokens.Record, withValue bool) Record {
	out := Record{
		RequestID:           r.RequestID,
		WorkspaceResourceID: r.Workspace.String(),
		WorkspaceURL:        r.WorkspaceURL,
		TokenSummary:        newSummary(r.TokenID, r.Comment, r.CreatedAt, r.ExpiresAt, r.Scopes),
		SecretURI:           r.SecretURI,
	}
	if withValue && !r.Value.IsZero() {
		out.TokenValue = r.Value.Reveal()
	}
	return out
}

// Time renders an instant as RFC 3339 in UTC.
func Time(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// OptionalTime renders an expiry; nil (JSON null) for "never expires".
func OptionalTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := Time(t)
	return &s
}

// RevokeResponse is the revoke-token response.
type RevokeResponse struct {
	TokenID string `json:"tokenId"`
	Status  string `json:"status"`
}

// Revoke is the data of Revoked results: the response plus where it came from.
type Revoke struct {
	TokenID             string `json:"tokenId"`
	Status              string `json:"status"`
	RequestID           string `json:"requestId,omitempty"`
	WorkspaceResourceID string `json:"workspaceResourceId,omitempty"`
	SecretURI           string `json:"secretUri,omitempty"`
	RequestedBy         string `json:"requestedBy,omitempty"`
}

// NewRevoke renders r.
func NewRevoke(r tokens.RevokeResult) Revoke {
	out := Revoke{TokenID: r.TokenID, Status: string(r.Status), RequestID: r.RequestID, SecretURI: r.SecretURI}
	if r.Workspace != (tokens.WorkspaceID{}) {
		out.WorkspaceResourceID = r.Workspace.String()
	}
	return out
}

// TokenSummary is one entry of the list-tokens response. Scopes are the
// token's API scopes, absent for an unscoped token (contract section 6);
// Autoscope is present only when true.
type TokenSummary struct {
	TokenID   string   `json:"tokenId"`
	Comment   string   `json:"comment"`
	CreatedAt string   `json:"createdAt"`
	ExpiresAt *string  `json:"expiresAt"`
	Scopes    []string `json:"scopes,omitempty"`
	Autoscope bool     `json:"autoscope,omitempty"`
}

func newSummary(id, comment string, created, expires time.Time, scopes tokens.Scopes) TokenSummary {
	return TokenSummary{TokenID: id, Comment: comment, CreatedAt: Time(created), ExpiresAt: OptionalTime(expires),
		Scopes: scopes.List, Autoscope: scopes.Autoscope}
}

// List is the list-tokens response.
type List struct {
	Tokens []TokenSummary `json:"tokens"`
}

// NewList renders ts.
func NewList(ts []tokens.TokenSummary) List {
	out := List{Tokens: make([]TokenSummary, len(ts))}
	for i, t := range ts {
		out.Tokens[i] = newSummary(t.TokenID, t.Comment, t.CreatedAt, t.ExpiresAt, t.Scopes)
	}
	return out
}

// InventoryItem is one row of GET /api/tokens (contract section 6): what
// the ledger recorded of an issued token. There is no field for a value:
// the ledger never had one.
type InventoryItem struct {
	RequestID           string   `json:"requestId"`
	WorkspaceResourceID string   `json:"workspaceResourceId"`
	TokenID             string   `json:"tokenId"`
	Comment             string   `json:"comment"`
	Scopes              []string `json:"scopes,omitempty"` // absent: unscoped
	CreatedAt           string   `json:"createdAt"`
	ExpiresAt           *string  `json:"expiresAt"`
	Status              string   `json:"status"`
	SecretURI           string   `json:"secretUri,omitempty"`   // Key Vault delivery only
	RequestedBy         string   `json:"requestedBy,omitempty"` // the caller's object id, when one was known
}

// Inventory is the GET /api/tokens response.
type Inventory struct {
	Tokens []InventoryItem `json:"tokens"`
	// ContinuationToken is absent on the last page.
	ContinuationToken string `json:"continuationToken,omitempty"`
}

// NewInventory renders a page of the ledger.
func NewInventory(p tokens.InventoryPage) Inventory {
	out := Inventory{Tokens: make([]InventoryItem, len(p.Entries)), ContinuationToken: p.ContinuationToken}
	for i, e := range p.Entries {
		out.Tokens[i] = InventoryItem{RequestID: e.RequestID, WorkspaceResourceID: e.Workspace.String(), TokenID: e.TokenID,
			Comment: e.Comment, Scopes: e.Scopes, CreatedAt: Time(e.CreatedAt), ExpiresAt: OptionalTime(e.ExpiresAt),
			Status: string(e.State), SecretURI: e.SecretURI, RequestedBy: e.RequestedBy}
	}
	return out
}

// ErrorBody is the Microsoft REST guidelines error shape.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner error object.
type ErrorDetail struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Target  string          `json:"target,omitempty"`
	Details []tokens.Detail `json:"details,omitempty"`
}

// NewError renders e, for an HTTP answer or a Failed result. Only the
// caller-safe parts (code, message, target, details) are used; the cause
// stays in the logs. Messages may quote an upstream's answer, so whatever
// in them has the shape of a credential is redacted.
func NewError(e *tokens.Error) ErrorBody {
	var details []tokens.Detail
	if e.Details != nil {
		details = make([]tokens.Detail, len(e.Details))
		for i, d := range e.Details {
			d.Message = redact.Text(d.Message)
			details[i] = d
		}
	}
	return ErrorBody{Error: ErrorDetail{Code: string(e.Code), Message: redact.Text(e.Message), Target: e.Target, Details: details}}
}

// Failure is the data of a Failed result.
type Failure struct {
	RequestID           string      `json:"requestId,omitempty"`
	WorkspaceResourceID string      `json:"workspaceResourceId,omitempty"`
	TokenID             string      `json:"tokenId,omitempty"`
	RequestedBy         string      `json:"requestedBy,omitempty"`
	Error               ErrorDetail `json:"error"`
}
