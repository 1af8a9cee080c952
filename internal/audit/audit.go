// Package audit names what the service's log lines report, so that alert
// rules and the workbook (infra/monitoring) select lines by a stable event
// name and stable field names instead of by message wording.
//
// Every invocation writes one JSON line per outcome (handler.logOutcome)
// with an "event" attribute from the table below; a timer run writes one
// per secret it handled and one for the run. The names are a contract with
// the KQL queries under infra/monitoring: renaming one breaks the tests in
// test/deploycheck and test/e2e, never an alert silently.
package audit

// Event is the stable name of an outcome, the "event" field of a line.
type Event string

// The events. Names are <subject>.<outcome>, lower case, and never change;
// new outcomes get new names.
const (
	// TokenIssued: a new token was created (create-token, a queued create,
	// a workspace event).
	TokenIssued Event = "token.issued"
	// TokenReused: a repeated request id was answered with the token its
	// first attempt issued, or a workspace event found a live token.
	TokenReused Event = "token.reused"
	// TokenRotated: the rotation run gave a managed Key Vault token a
	// successor (a new latest version).
	TokenRotated Event = "token.rotated"
	// TokenRotationFailed: the rotation of a token inside its rotation
	// window failed; the token keeps working until it expires.
	TokenRotationFailed Event = "token.rotation_failed"
	// TokenExpiring: a managed token is inside its rotation window and has
	// no successor (its rotation failed in this run); expires_at says when
	// its consumers break. Written by every run until a successor exists.
	TokenExpiring Event = "token.expiring"
	// TokenRevoked: a revoke finished (status revoked or notFound), or a
	// superseded, expired version was retired.
	TokenRevoked Event = "token.revoked"
	// TokenRefused: a request the service did not act on: invalid, not
	// authenticated, not authorized by AUTHZ_POLICY, outside the
	// allow-lists, nowhere to deliver. Nothing reached Databricks.
	TokenRefused Event = "token.refused"
	// TokenFailed: an operation that was attempted and failed (an upstream
	// refused or was unavailable, quota, workspace not found or never
	// ready, the result could not be published).
	TokenFailed Event = "token.failed"
	// TokensListed: list-tokens answered.
	TokensListed Event = "tokens.listed"
	// TokensInventoried: GET /api/tokens answered a page of the ledger.
	// Not tokens.listed: that one always names a workspace (list-tokens
	// asks Databricks about one), an inventory may span them all.
	TokensInventoried Event = "tokens.inventoried"
	// MessageIgnored: a workspace-events message that is not a Databricks
	// workspace write was acknowledged and ignored.
	MessageIgnored Event = "message.ignored"
	// MessageRescheduled: a queued operation on a workspace that is still
	// provisioning was rescheduled for later.
	MessageRescheduled Event = "message.rescheduled"
	// RotationCompleted: a rotation run finished (outcomes, failed).
	RotationCompleted Event = "rotation.completed"
	// RotationSkipped: a rotation run did nothing (no Key Vault delivery,
	// another run in progress, or the timer envelope was unreadable).
	RotationSkipped Event = "rotation.skipped"
	// RotationFailed: a rotation run could not start (the vault could not
	// be listed); the timer's next run tries again.
	RotationFailed Event = "rotation.failed"
)

// Spec is an event and the fields every line of it carries (besides the
// common ones: time, level, msg, function, invocation_id, event,
// duration_ms).
type Spec struct {
	Event  Event
	Fields []string
	Doc    string
}

// Events is every event the binary writes, with its guaranteed fields.
// README.md ("Log events") shows this table; a test keeps the two equal.
var Events = []Spec{
	{TokenIssued, []string{"request_id", "action", "caller", "workspace", "token_id", "expires_at"}, "a new token was created"},
	{TokenReused, []string{"request_id", "action", "caller", "workspace"}, "a repeated request (or a workspace event) got the live token it already had"},
	{TokenRotated, []string{"request_id", "workspace", "token_id", "replaces_token_id", "expires_at", "secret_uri"}, "a managed token got its successor"},
	{TokenRotationFailed, []string{"request_id", "workspace", "token_id", "expires_at", "code", "error"}, "the rotation of a managed token failed"},
	{TokenExpiring, []string{"workspace", "token_id", "expires_at", "expires_in_s", "secret_name"}, "a managed token is in its rotation window with no successor"},
	{TokenRevoked, []string{"request_id", "workspace", "token_id", "status"}, "a token was revoked (or was already gone)"},
	{TokenRefused, []string{"caller", "code", "error"}, "a request was refused before any upstream call"},
	{TokenFailed, []string{"caller", "code", "error"}, "an attempted operation failed"},
	{TokensListed, []string{"action", "caller", "workspace", "count"}, "list-tokens answered"},
	{TokensInventoried, []string{"action", "caller", "count"}, "the inventory (GET /api/tokens) answered a page"},
	{MessageIgnored, []string{"message_id", "event_type"}, "a workspace-events message that is not a workspace write"},
	{MessageRescheduled, []string{"message_id", "request_id", "workspace", "attempt", "delay_s"}, "a workspace still provisioning: retried later"},
	{RotationCompleted, []string{"outcomes", "failed"}, "a rotation run finished"},
	{RotationSkipped, []string{"reason"}, "a rotation run did nothing"},
	{RotationFailed, []string{"code", "error"}, "a rotation run could not list the vault"},
}

// Fields documents every field an audit line can carry. Values are never
// secrets: token values, access tokens and connection strings never
// reach a log line.
var Fields = map[string]string{
	"time":                "when the line was written (RFC 3339)",
	"level":               "INFO, WARN (refused or failed for a reason retrying will not fix) or ERROR (internal)",
	"msg":                 "human-readable wording; may change, never query it",
	"function":            "the function folder: create-token, revoke-token, list-tokens, tokens, token-requests, workspace-events, rotate-tokens",
	"invocation_id":       "the Functions host's invocation id (AppRequests Properties.InvocationId)",
	"event":               "the event name (this table)",
	"duration_ms":         "time since the invocation started",
	"request_id":          "the request id (idempotency key); rot-… for a rotation, retire-… for a retirement",
	"action":              "create, revoke, list or inventory",
	"caller":              "anonymous, principal (then caller_object_id and caller_app_id say who), queue, or timer",
	"caller_object_id":    "the caller's Entra object id (App Service Authentication)",
	"caller_app_id":       "the caller's Entra application (client) id",
	"workspace":           "the Databricks workspace resource id",
	"token_id":            "the Databricks token id (for rotation_failed and expiring: the token without a successor)",
	"replaces_token_id":   "the token a rotation superseded",
	"expires_at":          "when the token expires (RFC 3339; absent for a token that never expires)",
	"expires_in_s":        "seconds until expires_at at the time of the line (negative: already expired)",
	"secret_name":         "the Key Vault secret that holds the token",
	"secret_uri":          "the Key Vault secret version that holds the token",
	"scopes":              "issued and rotated: the token's Databricks API scopes, comma-separated (absent: unscoped)",
	"autoscope":           "issued and rotated: true when the token was created with autoscope",
	"issued":              "create: true if this call issued the token, false if it answered with an earlier one",
	"revoked_undelivered": "tokens of an earlier, undelivered attempt that were revoked",
	"status":              "revoke: revoked or notFound",
	"count":               "list: the number of tokens; inventory: the number of rows on the page",
	"more":                "inventory: true when a further page follows (the answer has a continuationToken)",
	"type":                "rotation lines: the published result type (Databricks.Token.Rotated, …)",
	"code":                "the contract's error code (InvalidRequest, NotAuthorized, UpstreamError, …)",
	"error":               "the caller-facing error message",
	"cause":               "the underlying error, for operators (never a secret)",
	"upstream":            "the service whose answer caused the failure: entra, arm, databricks, keyvault, servicebus",
	"permission_denied":   "true when that service refused the function's identity: a role or permission is missing",
	"calls":               "upstream calls since the invocation's previous line: {service: {n, ms, max_ms, throttled}}",
	"message_id":          "the Service Bus MessageId",
	"delivery_count":      "the Service Bus delivery count",
	"event_id":            "the Event Grid event id",
	"event_type":          "the Event Grid event type",
	"operation":           "the Event Grid operationName of an ignored event",
	"attempt":             "the reschedule attempt of a workspace that is not ready",
	"delay_s":             "the delay until the rescheduled attempt",
	"schedule_error":      "why a reschedule failed",
	"outcomes":            "rotation run: outcomes (rotated, failed, retired)",
	"failed":              "rotation run: failed outcomes",
	"reason":              "rotation.skipped: no-key-vault, already-running, bad-envelope",
}

// Known reports whether e is one of Events.
func Known(e Event) bool {
	for _, s := range Events {
		if s.Event == e {
			return true
		}
	}
	return false
}
