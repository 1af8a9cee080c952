// Package databricks implements tokens.TokenAPI with the Azure Databricks
// Token API (/api/2.0/token/*), on an azcore pipeline: bearer token for the
// Databricks audience, the management-token and workspace-resource-id
// headers, retries that honour Retry-After within the invocation's budget,
// and azcore's logging with its header redaction.
//
// token/create is not idempotent. It is retried only after a 429 (the
// request was refused, not carried out); any other failure after the request
// left is reported as tokens.ErrAmbiguous so that the service reconciles by
// listing, instead of risking a second token.
package databricks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// Header names Azure Databricks reads for Entra service principals and
// managed identities that are not (yet) workspace members.
const (
	HeaderManagementToken     = "X-Databricks-Azure-SP-Management-Token"
	HeaderWorkspaceResourceID = "X-Databricks-Azure-Workspace-Resource-Id"
)

// Options configure a Client.
type Options struct {
	// DatabricksScope and ManagementScope are the Entra scopes of the bearer
	// token and of the management header (see config.Cloud).
	DatabricksScope string
	ManagementScope string
	// AllowInsecureLoopback lets workspaces on loopback addresses be called
	// over plain http (local stand-ins; ALLOW_INSECURE_LOOPBACK).
	AllowInsecureLoopback bool
	ClientOptions         policy.ClientOptions
}

// Client calls the Token API of any workspace; the workspace is an argument
// of each call. It is safe for concurrent use.
type Client struct {
	pl runtime.Pipeline
	// verify is the pipeline of calls made with a token the service just
	// issued: the same transport (no redirects), http guard, retries and
	// measurement, but none of the service identity's credentials.
	verify runtime.Pipeline
}

var _ tokens.TokenAPI = (*Client)(nil)

const moduleName, moduleVersion = "databricks-token-broker/databricks", "v1"

// New returns a Client. It makes no network call.
func New(cred azcore.TokenCredential, opts Options) *Client {
	co := opts.ClientOptions
	// A workspace host that redirects would otherwise get the management
	// token re-sent wherever it points, and that host's answer taken as
	// Databricks' own.
	co.Transport = upstream.NoRedirects(co.Transport)
	co.Retry = upstream.RetryOptions(upstream.Retriable, true)
	co.Logging.AllowedHeaders = append(co.Logging.AllowedHeaders, "X-Databricks-Org-Id", "X-Request-Id")
	co.PerCallPolicies = append(co.PerCallPolicies, upstream.PlainHTTPGuard(opts.AllowInsecureLoopback))
	co.PerRetryPolicies = append(co.PerRetryPolicies, upstream.Measure(upstream.ServiceDatabricks))
	pl := runtime.NewPipeline(moduleName, moduleVersion, runtime.PipelineOptions{
		PerRetry: []policy.Policy{
			runtime.NewBearerTokenPolicy(cred, []string{opts.DatabricksScope}, &policy.BearerTokenOptions{
				InsecureAllowCredentialWithHTTP: opts.AllowInsecureLoopback, // the guard keeps it to loopback
			}),
			&managementTokenPolicy{cred: cred, scope: opts.ManagementScope, allowLoopback: opts.AllowInsecureLoopback},
		},
	}, &co)
	return &Client{pl: pl, verify: runtime.NewPipeline(moduleName, moduleVersion, runtime.PipelineOptions{}, &co)}
}

// managementTokenPolicy adds the ARM-audience token Databricks needs to
// add a service principal to a workspace on first contact. The credential
// is the shared identity.Cache, so this costs no extra Entra round trip.
type managementTokenPolicy struct {
	cred          azcore.TokenCredential
	scope         string
	allowLoopback bool
}

func (p *managementTokenPolicy) Do(req *policy.Request) (*http.Response, error) {
	if !upstream.PlainHTTPAllowed(req.Raw().URL, p.allowLoopback) {
		return nil, errors.New("databricks: refusing to send a management token over plain http")
	}
	tok, err := p.cred.GetToken(req.Raw().Context(), policy.TokenRequestOptions{Scopes: []string{p.scope}})
	if err != nil {
		return nil, err
	}
	req.Raw().Header.Set(HeaderManagementToken, tok.Token)
	return req.Next()
}

// --- wire types (Token API 2.0) ---

// createBody is CreateTokenRequest (databricks-sdk-go service/settings):
// no scopes means an unscoped token, which may call every API its identity
// may, so the field is left out rather than sent empty.
type createBody struct {
	Comment          string   `json:"comment"`
	LifetimeSeconds  int64    `json:"lifetime_seconds"`
	Scopes           []string `json:"scopes,omitempty"`
	AutoscopeEnabled bool     `json:"autoscope_enabled,omitempty"`
}

// tokenInfo is PublicTokenInfo, as create and list return it.
type tokenInfo struct {
	TokenID        string   `json:"token_id"`
	CreationTime   int64    `json:"creation_time"`
	ExpiryTime     int64    `json:"expiry_time"`
	Comment        string   `json:"comment"`
	Scopes         []string `json:"scopes"`
	AutoscopeState string   `json:"autoscope_state"`
}

type createResponse struct {
	TokenValue string    `json:"token_value"`
	TokenInfo  tokenInfo `json:"token_info"`
}

type listResponse struct {
	TokenInfos []tokenInfo `json:"token_infos"`
}

func (t tokenInfo) token() tokens.Token {
	out := tokens.Token{ID: t.TokenID, Comment: t.Comment, CreatedAt: time.UnixMilli(t.CreationTime).UTC(),
		Scopes: tokens.Scopes{List: t.Scopes, Autoscope: autoscoped(t.AutoscopeState)}}
	if len(out.Scopes.List) == 0 {
		out.Scopes.List = nil
	}
	if t.ExpiryTime > 0 { // -1: never expires
		out.ExpiresAt = time.UnixMilli(t.ExpiryTime).UTC()
	}
	return out
}

// autoscoped reads autoscope_state (iam.AutoscopeState in the SDK):
// absent, DISABLED and USER_SELECTED (scopes the creator chose) are not
// autoscope; RUNNING, COMPLETED, BACKFILLED and API_NOT_COVERED are states
// of a token created with autoscope_enabled.
func autoscoped(state string) bool {
	switch state {
	case "", "AUTOSCOPE_STATE_DISABLED", "AUTOSCOPE_STATE_USER_SELECTED":
		return false
	}
	return true
}

func (c *Client) newRequest(ctx context.Context, ws tokens.Workspace, method, path string) (*policy.Request, error) {
	req, err := runtime.NewRequest(ctx, method, ws.URL+path)
	if err != nil {
		return nil, fmt.Errorf("databricks: %w", err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	req.Raw().Header.Set(HeaderWorkspaceResourceID, ws.ID.String())
	return req, nil
}

// CreateToken creates a token with an explicit lifetime (never 0 or
// omitted: Databricks would read that as two years, or forever) and the
// given scopes.
func (c *Client) CreateToken(ctx context.Context, ws tokens.Workspace, comment string, lifetime time.Duration, scopes tokens.Scopes) (tokens.Issued, error) {
	secs := int64(lifetime / time.Second)
	if secs < 1 {
		return tokens.Issued{}, tokens.Errorf(tokens.CodeInvalidRequest, "lifetime must be at least one second")
	}
	// Only a 429 proves the create was not carried out; nothing else is retried.
	ctx = runtime.WithRetryOptions(ctx, upstream.RetryOptions([]int{http.StatusTooManyRequests}, false))
	req, err := c.newRequest(ctx, ws, http.MethodPost, "/api/2.0/token/create")
	if err != nil {
		return tokens.Issued{}, err
	}
	if err := runtime.MarshalAsJSON(req, createBody{Comment: comment, LifetimeSeconds: secs, Scopes: scopes.List, AutoscopeEnabled: scopes.Autoscope}); err != nil {
		return tokens.Issued{}, fmt.Errorf("databricks: %w", err)
	}
	resp, err := c.pl.Do(req)
	if err != nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests {
		// The budget ran out waiting to retry a 429. Only 429s are
		// retried, so every attempt was refused: nothing was created.
		return tokens.Issued{}, responseError(resp, "create token")
	}
	if err != nil {
		// The request may have reached the workspace: ambiguous.
		return tokens.Issued{}, ambiguous(err)
	}
	if resp.StatusCode >= 500 {
		return tokens.Issued{}, ambiguous(responseError(resp, "create token"))
	}
	if resp.StatusCode != http.StatusOK {
		return tokens.Issued{}, responseError(resp, "create token")
	}
	var out createResponse
	if err := runtime.UnmarshalAsJSON(resp, &out); err != nil || out.TokenValue == "" || out.TokenInfo.TokenID == "" {
		// A 200 we cannot read still created a token: ambiguous.
		return tokens.Issued{}, ambiguous(errors.New("databricks: unreadable token/create response"))
	}
	t := out.TokenInfo.token()
	// The answer to a create that asked for scopes may leave them out of
	// token_info; Databricks accepted the request that named them.
	if t.Scopes.List == nil {
		t.Scopes.List = scopes.List
	}
	t.Scopes.Autoscope = t.Scopes.Autoscope || scopes.Autoscope
	return tokens.Issued{Token: t, Value: tokens.NewSecret(out.TokenValue)}, nil
}

func ambiguous(err error) error {
	ue := upstream.Unavailable("Azure Databricks", 0, err)
	if e := upstream.Common("Azure Databricks", err); e != nil && e.Code != tokens.CodeUpstreamUnavailable {
		return e // e.g. no Entra token: the request never left
	}
	var te *tokens.Error
	if errors.As(err, &te) && te.RetryAfter > 0 {
		ue.RetryAfter = te.RetryAfter
	}
	ue.Err = errors.Join(tokens.ErrAmbiguous, err)
	return ue
}

// ListTokens lists the calling identity's valid tokens.
func (c *Client) ListTokens(ctx context.Context, ws tokens.Workspace) ([]tokens.Token, error) {
	req, err := c.newRequest(ctx, ws, http.MethodGet, "/api/2.0/token/list")
	if err != nil {
		return nil, err
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp, "list tokens")
	}
	var out listResponse
	if err := runtime.UnmarshalAsJSON(resp, &out); err != nil {
		return nil, &tokens.Error{Code: tokens.CodeUpstreamError, Message: "Azure Databricks returned an unreadable token list", Err: err}
	}
	list := make([]tokens.Token, 0, len(out.TokenInfos))
	for _, t := range out.TokenInfos {
		list = append(list, t.token())
	}
	return list, nil
}

// DeleteToken revokes a token; false when Databricks does not know it.
func (c *Client) DeleteToken(ctx context.Context, ws tokens.Workspace, tokenID string) (bool, error) {
	req, err := c.newRequest(ctx, ws, http.MethodPost, "/api/2.0/token/delete")
	if err != nil {
		return false, err
	}
	if err := runtime.MarshalAsJSON(req, map[string]string{"token_id": tokenID}); err != nil {
		return false, fmt.Errorf("databricks: %w", err)
	}
	resp, err := c.pl.Do(req)
	if err != nil {
		return false, transportError(err)
	}
	if resp.StatusCode == http.StatusOK {
		runtime.Drain(resp)
		return true, nil
	}
	apiErr := parseError(resp)
	if apiErr.notFound() {
		return false, nil
	}
	return false, apiErr.translate("revoke token")
}

// mePath is SCIM Me: the caller's own identity. Databricks' scope reference
// (docs.databricks.com/api/workspace/scopes) lists it under every scope,
// and it is a GET (so :read scopes allow it too): a call any working
// token, scoped or not, may make, that reads nothing but who it is.
const mePath = "/api/2.0/preview/scim/v2/Me"

// VerifyToken proves that a token just issued works: one GET of SCIM Me
// on the workspace, authenticated with the token itself as the bearer. ws
// is the workspace ARM resolved and the allow-list accepted, and nothing
// else goes with the request: no Entra token, no management token, no
// resource id header. Redirects are refused like every other call's.
//
// Errors: UpstreamError when the workspace refuses the token (the token
// does not work), UpstreamUnavailable for throttling, 5xx and timeouts.
// No error holds the value, even if the answer quoted it.
func (c *Client) VerifyToken(ctx context.Context, ws tokens.Workspace, value tokens.Secret) error {
	req, err := runtime.NewRequest(ctx, http.MethodGet, ws.URL+mePath)
	if err != nil {
		return fmt.Errorf("databricks: %w", err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	req.Raw().Header.Set("Authorization", "Bearer "+value.Reveal())
	resp, err := c.verify.Do(req)
	if err != nil {
		return redact(transportError(err), value)
	}
	if resp.StatusCode == http.StatusOK {
		runtime.Drain(resp)
		return nil
	}
	e := parseError(resp)
	if e.Status == http.StatusTooManyRequests || e.Status >= 500 {
		return redact(e.translate("verify the new token"), value)
	}
	detail := e.describe()
	return redact(&tokens.Error{Code: tokens.CodeUpstreamError, Upstream: upstream.ServiceDatabricks,
		Err:     fmt.Errorf("databricks: verify the new token: %s", detail),
		Message: "the workspace refused a call made with the new token (GET " + mePath + "): " + detail}, value)
}

// redact takes the token value out of an error's message and cause.
func redact(err error, value tokens.Secret) error {
	v := value.Reveal()
	te, ok := errors.AsType[*tokens.Error](err)
	if v == "" || !ok {
		return err
	}
	out := *te
	out.Message = strings.ReplaceAll(out.Message, v, "REDACTED")
	if out.Err != nil && strings.Contains(out.Err.Error(), v) {
		out.Err = errors.New(strings.ReplaceAll(out.Err.Error(), v, "REDACTED"))
	}
	return &out
}

// WorkspaceConf reads workspace settings (workspace-conf); unset keys are
// absent from the map.
func (c *Client) WorkspaceConf(ctx context.Context, ws tokens.Workspace, keys ...string) (map[string]string, error) {
	req, err := c.newRequest(ctx, ws, http.MethodGet, "/api/2.0/workspace-conf")
	if err != nil {
		return nil, err
	}
	q := req.Raw().URL.Query()
	q.Set("keys", joinComma(keys))
	req.Raw().URL.RawQuery = q.Encode()
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, transportError(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp, "read workspace settings")
	}
	var raw map[string]*string
	if err := runtime.UnmarshalAsJSON(resp, &raw); err != nil {
		return nil, &tokens.Error{Code: tokens.CodeUpstreamError, Message: "Azure Databricks returned unreadable workspace settings", Err: err}
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if v != nil {
			out[k] = *v
		}
	}
	return out, nil
}

func joinComma(keys []string) string {
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ","
		}
		s += k
	}
	return s
}

func transportError(err error) error {
	if e := upstream.Common("Azure Databricks", err); e != nil {
		return e
	}
	return upstream.Unavailable("Azure Databricks", 0, err)
}

func responseError(resp *http.Response, op string) error {
	return parseError(resp).translate(op)
}

// Policy reads the workspace's token settings: enableTokensConfig and
// maxTokenLifetimeDays (strings in workspace-conf; absent or "0" means no
// limit).
func (c *Client) Policy(ctx context.Context, ws tokens.Workspace) (tokens.WorkspacePolicy, error) {
	conf, err := c.WorkspaceConf(ctx, ws, "enableTokensConfig", "maxTokenLifetimeDays")
	if err != nil {
		return tokens.WorkspacePolicy{}, err
	}
	p := tokens.WorkspacePolicy{TokensEnabled: conf["enableTokensConfig"] != "false"}
	if d, err := strconv.Atoi(conf["maxTokenLifetimeDays"]); err == nil && d > 0 {
		p.MaxLifetime = time.Duration(d) * 24 * time.Hour
	}
	return p, nil
}
