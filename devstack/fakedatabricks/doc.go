// Package fakedatabricks stands in for one Azure Databricks workspace's REST
// front end, for the Token API and workspace-conf. Each StartWorkspace is a
// separate HTTPS listener; Host (127.0.0.1:PORT) is what ARM's
// properties.workspaceUrl should carry.
//
// Endpoints: POST /api/2.0/token/create, GET /api/2.0/token/list, POST
// /api/2.0/token/delete, GET and PATCH /api/2.0/workspace-conf, GET
// /api/2.0/preview/scim/v2/Me (the caller's own SCIM record). Anything else
// is 404 ENDPOINT_NOT_FOUND.
//
// Authentication, in this order:
//   - Authorization: Bearer must be a stand-in Entra token (fakeentra.Validate
//     against Options.AuthClock) with audience 2ff814a6-3304-4ab8-85cb-cd0e6f879c1d,
//     or a live PAT issued here (dapi…). Anything else, including no header,
//     is the gateway's HTML 403 "Error 403 Invalid access token." (text/html).
//   - X-Databricks-Azure-Workspace-Resource-Id, when present, must name this
//     workspace (case-insensitive): else 400 INVALID_PARAMETER_VALUE.
//   - X-Databricks-Azure-SP-Management-Token, when present, must be a valid
//     token with a management audience (https://management.core.windows.net/
//     or https://management.azure.com/, either slash form): else 401
//     UNAUTHENTICATED; for another principal than the bearer token, 403
//     PERMISSION_DENIED; without the resource id header, 400.
//   - A principal that is not yet a member needs the management token (403
//     PERMISSION_DENIED "Management API token must be provided for service
//     principal admin user login"); presenting it makes the principal a
//     member, after which the bearer token alone is enough. Options can
//     pre-add members or waive the rule.
//   - Without CAN USE (SetCanUse), token calls get 403 PERMISSION_DENIED
//     "User <appid> does not have permission to use tokens.".
//   - A scoped PAT may call only what its scopes cover (below); otherwise
//     403 PERMISSION_DENIED "Provided access token does not have required
//     scopes: <scope>".
//
// Scopes: create takes "scopes" (each area[:modifier]…, else 400
// INVALID_PARAMETER_VALUE "Invalid scope") and "autoscope_enabled"; create
// and list return them in token_info ("scopes", and "autoscope_state"
// AUTOSCOPE_STATE_RUNNING for an autoscoped token). A PAT without scopes,
// or autoscoped (Databricks applies all-apis while it observes), may call
// everything. Otherwise the Token API needs "authentication", Me any scope
// (Databricks' scope reference lists it under every one), everything else
// "all-apis"; a scope with the :read modifier allows GET and HEAD only.
// IssueBrokenTokens(n) makes the next n tokens ones that create and list
// report normally but that authenticate nothing (the HTML 403).
//
// Token rules: lifetime_seconds omitted → 2 years (capped by
// maxTokenLifetimeDays when set); 0 → 400 INVALID_PARAMETER_VALUE
// "requirement failed: Invalid timeout: 0"; negative → never expires
// (expiry_time -1), refused when maxTokenLifetimeDays is set; above
// maxTokenLifetimeDays → 400 INVALID_PARAMETER_VALUE naming the limit; more
// than 600 live tokens for the principal → 400 QUOTA_EXCEEDED; tokens
// disabled (enableTokensConfig "false") → 403 PERMISSION_DENIED, and PATs
// stop authenticating. token_id is the SHA-256 hex of the value. list
// returns only the caller's live tokens and {} (no token_infos) when there
// are none; delete of an unknown, revoked, expired or foreign id is 404
// RESOURCE_DOES_NOT_EXIST "No valid token with ID … found".
//
// Time: PATs live on Options.Clock plus Advance; Entra tokens are checked
// against Options.AuthClock (default time.Now), so Advance can expire PATs
// without expiring the SDK's cached Entra tokens.
//
// Faults (InjectFault per operation or OpAny, SetRandomFaults) model
// throttling (429 with or without Retry-After), 503, 500, the HTML 403,
// plain-text "CODE: message" errors, an error that echoes the request's
// credentials (EchoCredentials), delays, and dropped connections,
// including DropAfterCreate: the token is created but the client gets no
// answer. Go's http.Transport does not retry a POST on such a drop (unless
// the request carries an Idempotency-Key header), so the ambiguity reaches
// the caller.
//
// Requests records every call without secrets: which auth headers were
// present and the audiences of the Entra tokens, so a test can assert that
// no management token was sent where it should not be.
//
// Deliberately not emulated: the full scope vocabulary and which API each
// scope covers beyond the above, autoscope's narrowing, token update (PATCH),
// the Token Management (admin/OBO) API, the permissions API, 90-day
// inactivity revocation, the 730-day platform cap for explicit lifetimes,
// admin-only checks on workspace-conf, rate limits other than injected
// faults, and every other Databricks API.
package fakedatabricks
