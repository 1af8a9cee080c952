package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contoso/databricks-token-broker/internal/input"
)

// Limits are the service-wide bounds that requests are validated against.
type Limits struct {
	DefaultLifetime time.Duration
	MaxLifetime     time.Duration
	// KeyVault reports whether Key Vault delivery is configured; secretName
	// is refused without it.
	KeyVault bool
}

// CreateRequest asks for a new token (POST /api/create-token, or a queue
// command with action "create").
type CreateRequest struct {
	Workspace WorkspaceID
	Comment   string
	Lifetime  time.Duration
	// LifetimeGiven is true when the caller chose the lifetime.
	LifetimeGiven bool
	SecretName    string
	// Scopes are the token's API scopes (nil: unscoped) and autoscope.
	Scopes    Scopes
	RequestID string
	// RequestIDGiven is true when the caller chose the request id (body,
	// header or message id), so the same id may arrive again and must find
	// the token the first attempt issued.
	RequestIDGiven bool
}

// RevokeRequest asks for a token to be revoked, by id or by the Key Vault
// secret that holds it.
type RevokeRequest struct {
	Workspace WorkspaceID
	TokenID   string
	SecretURI string
	RequestID string
	// Authorize, when set, is asked before anything is revoked, once the
	// workspace is known (for a secretUri, from the secret's tags).
	Authorize func(WorkspaceID) error
}

// MaxCommentLength is the longest caller comment, in Unicode characters.
const MaxCommentLength = 200

// invalid is the answer to a request's problems, which the caller gets
// all at once: InvalidRequest with one detail per problem (code
// InvalidField, the field as target, a message that starts with the
// field), and the only problem's message or their count as its message.
// nil when there are none.
func invalid(p input.Problems) error {
	if len(p) == 0 {
		return nil
	}
	details := make([]Detail, len(p))
	for i, pr := range p {
		details[i] = Detail{Code: "InvalidField", Target: pr.At, Message: pr.At + " " + pr.Message}
	}
	msg := details[0].Message
	if len(p) > 1 {
		msg = fmt.Sprintf("the request has %d problems; see details", len(p))
	}
	return &Error{Code: CodeInvalidRequest, Message: msg, Details: details}
}

// object decodes a JSON object into raw fields, reporting syntax errors,
// non-objects and fields outside known. Keys are matched exactly (camelCase);
// of a repeated key the last value counts, as encoding/json decides.
func object(body []byte, known []string, p *input.Problems) map[string]json.RawMessage {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		p.Add("body", "is empty; a JSON object is required")
		return nil
	}
	if !utf8.Valid(body) {
		p.Add("body", "is not valid UTF-8")
		return nil
	}
	var raw json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		p.Add("body", "is not a JSON object (%s)", jsonProblem(err))
		return nil
	}
	ms, ok := input.Members(raw)
	if !ok {
		p.Add("body", "is not a JSON object (%s)", notObject(raw))
		return nil
	}
	if dec.More() {
		p.Add("body", "has data after the JSON object")
		return nil
	}
	fields := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		fields[m.Key] = m.Value
	}
	for _, k := range sortedKeys(fields) {
		if !slices.Contains(known, k) {
			p.Add(k, "is not a known field")
		}
	}
	return fields
}

func jsonProblem(err error) string {
	if e, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	}
	return "malformed JSON"
}

// notObject names the JSON value a body holds instead of an object, in
// encoding/json's words for a type error ("found array"); raw is valid.
func notObject(raw json.RawMessage) string {
	switch raw[0] {
	case 'n':
		return "null"
	case '[':
		return "found array"
	case '"':
		return "found string"
	case 't', 'f':
		return "found bool"
	}
	return "found number"
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// str reads an optional string field; null counts as absent.
func str(fields map[string]json.RawMessage, name string, p *input.Problems) (string, bool) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.Add(name, "must be a string")
		return "", false
	}
	return s, true
}

func absent(fields map[string]json.RawMessage, name string) bool {
	raw, ok := fields[name]
	return !ok || string(raw) == "null"
}

// ValidComment checks a caller comment: at most 200 characters, none of
// Unicode category Cc (which includes TAB, LF and DEL).
func ValidComment(c string) error {
	if n := utf8.RuneCountInString(c); n > MaxCommentLength {
		return fmt.Errorf("is %d characters long; the maximum is %d", n, MaxCommentLength)
	}
	for i, r := range c {
		if unicode.Is(unicode.Cc, r) {
			return fmt.Errorf("holds a control character (U+%04X) at byte %d", r, i)
		}
	}
	return nil
}

// ValidRequestID checks a caller-chosen request id.
func ValidRequestID(id string) error {
	if !validRequestIDChars(id) {
		return fmt.Errorf("must be 1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	return nil
}

// reservedRequestIDs are the prefixes of the request ids the service
// derives for its own operations: a rotation's (rot-, from the version it
// renews) and a workspace event's (evt-, from the event id).
var reservedRequestIDs = []string{"rot-", "evt-"}

// CallerRequestID checks a request id a caller chose: the body's, the
// x-ms-client-request-id header, a queue message's MessageId. It may not
// take one of the service's own forms: a rotation's id is computable from
// the secret URI, and a caller who claimed it first would have the
// rotation take that caller's record for its own and never run.
func CallerRequestID(id string) error {
	if err := ValidRequestID(id); err != nil {
		return err
	}
	for _, p := range reservedRequestIDs {
		if len(id) >= len(p) && strings.EqualFold(id[:len(p)], p) {
			return fmt.Errorf("must not start with %q: ids of that form are the service's own (rotations rot-, workspace events evt-)", p)
		}
	}
	return nil
}

// ValidSecretName checks a Key Vault secret name.
func ValidSecretName(name string) error {
	if !validSecretNameChars(name) {
		return fmt.Errorf("must be 1-127 characters of A-Z a-z 0-9 and -")
	}
	return nil
}

// DecodeCreate parses and validates a create request body. extra lists
// additional top-level fields the transport allows (the queue's "action").
// The request id, when the body has none, is left empty for the transport
// to fill from its own source.
func DecodeCreate(body []byte, lim Limits, extra ...string) (CreateRequest, error) {
	var p input.Problems
	known := append([]string{"workspaceResourceId", "comment", "lifetimeSeconds", "secretName", "scopes", "autoscope", "requestId"}, extra...)
	fields := object(body, known, &p)
	if fields == nil {
		return CreateRequest{}, invalid(p)
	}
	var req CreateRequest
	if s, ok := str(fields, "workspaceResourceId", &p); ok {
		id, err := ParseWorkspaceID(s)
		if err != nil {
			p.Add("workspaceResourceId", "%v", err)
		}
		req.Workspace = id
	} else if absent(fields, "workspaceResourceId") {
		p.Add("workspaceResourceId", "is required")
	}
	if s, ok := str(fields, "comment", &p); ok {
		if err := ValidComment(s); err != nil {
			p.Add("comment", "%v", err)
		}
		req.Comment = s
	}
	req.Lifetime = lim.DefaultLifetime
	if raw, ok := fields["lifetimeSeconds"]; ok && string(raw) != "null" {
		max := int64(lim.MaxLifetime / time.Second)
		if secs, err := wholeNumber(raw, 1, max, "TOKEN_MAX_LIFETIME "+lim.MaxLifetime.String()); err != nil {
			p.Add("lifetimeSeconds", "%v", err)
		} else if secs < 1 || secs > max {
			p.Add("lifetimeSeconds", "must be between 1 and %d (TOKEN_MAX_LIFETIME %s); got %d", max, lim.MaxLifetime, secs)
		} else {
			req.Lifetime, req.LifetimeGiven = time.Duration(secs)*time.Second, true
		}
	}
	if s, ok := str(fields, "secretName", &p); ok {
		switch {
		case !lim.KeyVault:
			p.Add("secretName", "is only allowed with Key Vault delivery (KEY_VAULT_URI is not set)")
		case ValidSecretName(s) != nil:
			p.Add("secretName", "%v", ValidSecretName(s))
		}
		req.SecretName = s
	}
	req.Scopes.List = scopeList(fields, &p)
	if raw, ok := fields["autoscope"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &req.Scopes.Autoscope) != nil {
			p.Add("autoscope", "must be true or false")
		}
	}
	if s, ok := str(fields, "requestId", &p); ok {
		// An invalid id is not kept: it would be echoed, at any length,
		// into the log line and the Failed result.
		if err := CallerRequestID(s); err != nil {
			p.Add("requestId", "%v", err)
		} else {
			req.RequestID, req.RequestIDGiven = s, true
		}
	}
	return req, invalid(p)
}

// scopeList reads the optional scopes array: 1…32 strings, each a scope
// (ValidScope), none twice. Each bad entry is its own problem, named
// scopes[i]; absent or null means unscoped.
func scopeList(fields map[string]json.RawMessage, p *input.Problems) []string {
	raw, ok := fields["scopes"]
	if !ok || string(raw) == "null" {
		return nil
	}
	var items []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		p.Add("scopes", "must be an array of scope strings, e.g. [\"sql:read\"]")
		return nil
	}
	if len(items) == 0 || len(items) > MaxScopes {
		p.Add("scopes", "must hold 1 to %d scopes (omit it for an unscoped token); got %d", MaxScopes, len(items))
		return nil
	}
	var out []string
	for i, item := range items {
		target := fmt.Sprintf("scopes[%d]", i)
		var s string
		if len(item) == 0 || item[0] != '"' || json.Unmarshal(item, &s) != nil {
			p.Add(target, "must be a string")
			continue
		}
		if err := ValidScope(s); err != nil {
			p.Add(target, "%v", err)
			continue
		}
		if slices.Contains(out, s) {
			p.Add(target, "repeats %q", s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// wholeNumber parses a JSON number that must be an integer. A whole number
// too large for int64 is reported as out of range, with the bounds.
func wholeNumber(raw json.RawMessage, lo, hi int64, bounds string) (int64, error) {
	var n json.Number
	// json.Number would also take a quoted "60": insist on a JSON number.
	if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
		return 0, fmt.Errorf("must be a whole number of seconds")
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("must be between %d and %d (%s); got %s", lo, hi, bounds, n.String())
	}
	if err != nil {
		return 0, fmt.Errorf("must be a whole number of seconds; got %s", n.String())
	}
	return v, nil
}

// DecodeRevoke parses and validates a revoke request body: either
// workspaceResourceId and tokenId, or secretUri alone.
func DecodeRevoke(body []byte, extra ...string) (RevokeRequest, error) {
	var p input.Problems
	known := append([]string{"workspaceResourceId", "tokenId", "secretUri", "requestId"}, extra...)
	fields := object(body, known, &p)
	if fields == nil {
		return RevokeRequest{}, invalid(p)
	}
	var req RevokeRequest
	ws, hasWS := str(fields, "workspaceResourceId", &p)
	tok, hasTok := str(fields, "tokenId", &p)
	uri, hasURI := str(fields, "secretUri", &p)
	switch {
	case hasURI && (hasWS || hasTok):
		p.Add("secretUri", "cannot be combined with workspaceResourceId or tokenId")
	case hasURI:
		if uri == "" {
			p.Add("secretUri", "must not be empty")
		}
		req.SecretURI = uri
	default:
		if !hasWS && absent(fields, "workspaceResourceId") {
			p.Add("workspaceResourceId", "is required (or give secretUri alone)")
		} else if hasWS {
			if id, err := ParseWorkspaceID(ws); err != nil {
				p.Add("workspaceResourceId", "%v", err)
			} else {
				req.Workspace = id
			}
		}
		if !hasTok && absent(fields, "tokenId") {
			p.Add("tokenId", "is required (or give secretUri alone)")
		} else if hasTok && !validTokenIDChars(tok) {
			p.Add("tokenId", "must be 1-128 characters of A-Z a-z 0-9 . _ -")
		} else {
			req.TokenID = tok
		}
	}
	if s, ok := str(fields, "requestId", &p); ok {
		if err := CallerRequestID(s); err != nil {
			p.Add("requestId", "%v", err) // and not kept, as in DecodeCreate
		} else {
			req.RequestID = s
		}
	}
	return req, invalid(p)
}

// ParseListQuery validates the workspaceResourceId of a list request.
func ParseListQuery(workspaceResourceID string) (WorkspaceID, error) {
	id, err := ParseWorkspaceID(workspaceResourceID)
	if err != nil {
		var p input.Problems
		p.Add("workspaceResourceId", "%v", err)
		return WorkspaceID{}, invalid(p)
	}
	return id, nil
}
