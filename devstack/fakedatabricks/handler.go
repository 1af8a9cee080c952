package fakedatabricks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// Header names the Azure Databricks front end reads.
const (
	HeaderManagementToken = "X-Databricks-Azure-SP-Management-Token"
	HeaderResourceID      = "X-Databricks-Azure-Workspace-Resource-Id"
)

const invalidTokenHTML = `<html>
<head>
<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
<title>Error 403 Invalid access token.</title>
</head>
<body><h2>HTTP ERROR 403</h2>
<p>Problem accessing %s. Reason:
<pre>    Invalid access token.</pre></p>
</body>
</html>
`

func opOf(method, path string) string {
	switch path {
	case "/api/2.0/token/create":
		if method == http.MethodPost {
			return OpCreate
		}
	case "/api/2.0/token/list":
		if method == http.MethodGet {
			return OpList
		}
	case "/api/2.0/token/delete":
		if method == http.MethodPost {
			return OpDelete
		}
	case "/api/2.0/workspace-conf":
		if method == http.MethodGet || method == http.MethodPatch {
			return OpConf
		}
	case "/api/2.0/preview/scim/v2/Me":
		if method == http.MethodGet {
			return OpMe
		}
	}
	return OpUnknown
}

type principal struct {
	oid, appid string
	// scopes and autoscope are the PAT's, when the call came with one.
	scopes    []string
	autoscope bool
	viaPAT    bool
}

// scopeOf is the API scope an operation belongs to, as Databricks' scope
// reference (docs.databricks.com/api/workspace/scopes) lists them: the
// Token API needs "authentication" (a token without it is refused
// token/create with "does not have required scopes: authentication").
// "" means any scope will do: the reference lists Me (SCIM) under every
// scope. Anything else (workspace-conf, which only Entra tokens call here,
// and unknown paths) needs "all-apis".
func scopeOf(op string) string {
	switch op {
	case OpCreate, OpList, OpDelete:
		return "authentication"
	case OpMe:
		return ""
	}
	return "all-apis"
}

// scopeAllows reports whether a PAT's scopes let it make the call: an
// unscoped token (and an autoscoped one, which holds all-apis while
// Databricks observes it) may call anything; otherwise one of its scopes
// must be the operation's area (or all-apis), and a scope with the :read
// modifier allows only GET and HEAD.
func scopeAllows(p principal, op, method string) (bool, string) {
	if !p.viaPAT || len(p.scopes) == 0 || p.autoscope {
		return true, ""
	}
	need := scopeOf(op)
	for _, s := range p.scopes {
		area, mods, _ := strings.Cut(s, ":")
		if need != "" && area != need && area != "all-apis" {
			continue
		}
		if strings.Contains(":"+mods+":", ":read:") && method != http.MethodGet && method != http.MethodHead {
			continue
		}
		return true, ""
	}
	return false, need
}

// apiError is a Databricks JSON error.
type apiError struct {
	status int
	code   string
	msg    string
}

func (w *Workspace) writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

func (w *Workspace) writeError(rw http.ResponseWriter, e apiError) {
	w.writeJSON(rw, e.status, map[string]string{"error_code": e.code, "message": e.msg})
}

// ServeHTTP implements http.Handler.
func (w *Workspace) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	op := opOf(r.Method, r.URL.Path)
	rec := Request{Method: r.Method, Path: r.URL.Path, Op: op}
	sr := &kit.StatusRecorder{ResponseWriter: rw}
	// The whole request is read before the call is counted, as a server
	// reads a request before it acts on it: a test that sees the call
	// counted may kill the client, and the workspace still has all it
	// needs to carry the call out (Slow, DropAfterCreate).
	if body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20)); err == nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	w.traffic.Calls.Inc(op)
	rec.Time = w.clock.Now()
	w.mu.Lock()
	latency := w.latency
	w.mu.Unlock()
	defer func() {
		rec.Status = sr.Status
		w.traffic.Requests.Add(rec)
	}()
	rw = sr
	rw.Header().Set("X-Databricks-Org-Id", w.opts.WorkspaceID)

	kit.Sleep(r.Context(), w.srv.Closing(), latency)

	dropAfter := false
	if f := w.nextFault(op); f != nil {
		rec.Fault = f.faultName()
		switch f := f.(type) {
		case Delay:
			kit.Sleep(r.Context(), w.srv.Closing(), f.D)
		case Slow:
			kit.Sleep(context.Background(), w.srv.Closing(), f.D)
		case Drop:
			kit.Drop()
		case DropAfterCreate:
			dropAfter = true
		case Status429:
			if f.RetryAfter != "" {
				rw.Header().Set("Retry-After", f.RetryAfter)
			}
			w.writeError(rw, apiError{http.StatusTooManyRequests, "REQUEST_LIMIT_EXCEEDED", "Too many requests. Please wait a moment and try again."})
			return
		case Status503:
			if f.RetryAfter != "" {
				rw.Header().Set("Retry-After", f.RetryAfter)
			}
			w.writeError(rw, apiError{http.StatusServiceUnavailable, "TEMPORARILY_UNAVAILABLE", "The service at " + r.URL.Path + " is temporarily unavailable. Please try again later."})
			return
		case Status500:
			w.writeError(rw, apiError{http.StatusInternalServerError, "INTERNAL_ERROR", "Internal error. Attach your request id when contacting support."})
			return
		case HTML403:
			w.writeInvalidToken(rw, r)
			return
		case PlainText:
			rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rw.WriteHeader(f.Status)
			_, _ = io.WriteString(rw, f.Body)
			return
		case EchoCredentials:
			status := f.Status
			if status == 0 {
				status = http.StatusBadRequest
			}
			w.writeError(rw, apiError{status, "INVALID_PARAMETER_VALUE", "Could not use Authorization: " + r.Header.Get("Authorization") +
				" with X-Databricks-Azure-SP-Management-Token: " + r.Header.Get("X-Databricks-Azure-SP-Management-Token")})
			return
		case Redirect:
			status := f.Status
			if status == 0 {
				status = http.StatusTemporaryRedirect
			}
			kit.Redirect(rw, status, f.Location, RedirectBody)
			return
		}
	}

	p, aerr, html := w.authenticate(r, &rec)
	if html {
		w.writeInvalidToken(rw, r)
		return
	}
	if aerr != nil {
		w.writeError(rw, *aerr)
		return
	}
	rec.PrincipalOID = p.oid
	if ok, need := scopeAllows(p, op, r.Method); !ok {
		w.writeError(rw, apiError{http.StatusForbidden, "PERMISSION_DENIED", "Provided access token does not have required scopes: " + need})
		return
	}

	var (
		status = http.StatusOK
		body   any
		err    *apiError
	)
	switch op {
	case OpCreate:
		body, err = w.create(r, p)
	case OpList:
		body, err = w.list(p)
	case OpDelete:
		body, err = w.delete(r, p)
	case OpMe:
		body = w.me(p)
	case OpConf:
		if r.Method == http.MethodPatch {
			err = w.patchConf(r)
			status = http.StatusNoContent
		} else {
			body, err = w.getConf(r)
		}
	default:
		err = &apiError{http.StatusNotFound, "ENDPOINT_NOT_FOUND", fmt.Sprintf("No API found for '%s %s'", r.Method, strings.TrimPrefix(r.URL.Path, "/api/2.0"))}
	}
	if err != nil {
		w.writeError(rw, *err)
		return
	}
	if dropAfter {
		panic(http.ErrAbortHandler)
	}
	if status == http.StatusNoContent {
		rw.WriteHeader(status)
		return
	}
	w.writeJSON(rw, status, body)
}

func (w *Workspace) writeInvalidToken(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "text/html;charset=utf-8")
	rw.WriteHeader(http.StatusForbidden)
	_, _ = fmt.Fprintf(rw, invalidTokenHTML, r.URL.Path)
}

// authenticate checks the three Azure headers. html reports the gateway's
// HTML 403 (bad bearer token).
func (w *Workspace) authenticate(r *http.Request, rec *Request) (principal, *apiError, bool) {
	authNow := w.opts.AuthClock()
	bearer, ok := fakeentra.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		rec.Auth = "none"
		return principal{}, nil, true
	}
	rec.Auth = "invalid"
	var p principal
	viaPAT := false
	if strings.HasPrefix(bearer, "dapi") {
		w.mu.Lock()
		t, found := w.byValue[bearer]
		okPAT := found && !t.Broken && w.stateLocked(t, w.clock.Now().UnixMilli()) == Live && w.tokensEnabledLocked()
		if okPAT {
			p = principal{oid: t.PrincipalOID, appid: t.PrincipalAppID, scopes: t.Scopes, autoscope: t.Autoscope, viaPAT: true}
		}
		w.mu.Unlock()
		if !okPAT {
			return principal{}, nil, true
		}
		rec.Auth = "pat"
		viaPAT = true
	} else {
		c, err := fakeentra.ParseToken(bearer)
		if err == nil {
			rec.BearerAudience = c.Audience
		}
		c, err = fakeentra.Validate(bearer, authNow, fakeentra.DatabricksResource)
		if err != nil || (w.opts.TenantID != "" && !strings.EqualFold(c.TenantID, w.opts.TenantID)) || c.ObjectID == "" {
			return principal{}, nil, true
		}
		rec.Auth = "entra"
		p = principal{oid: c.ObjectID, appid: c.AppID}
	}

	rid, ridPresent := r.Header[http.CanonicalHeaderKey(HeaderResourceID)]
	if ridPresent {
		rec.ResourceIDPresent = true
		rec.ResourceID = strings.Join(rid, ",")
		if len(rid) != 1 || !strings.EqualFold(strings.TrimSpace(rid[0]), w.opts.ResourceID) {
			return p, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("The workspace resource id in %s (%q) does not identify this workspace", HeaderResourceID, rec.ResourceID)}, false
		}
	}

	mgmtOK := false
	if mts, present := r.Header[http.CanonicalHeaderKey(HeaderManagementToken)]; present {
		rec.ManagementTokenPresent = true
		mt := ""
		if len(mts) > 0 {
			mt = strings.TrimSpace(mts[0])
			mt = strings.TrimPrefix(mt, "Bearer ")
		}
		if c, err := fakeentra.ParseToken(mt); err == nil {
			rec.ManagementAudience = c.Audience
		}
		c, err := fakeentra.Validate(mt, authNow, fakeentra.ManagementAudiences...)
		if err != nil || len(mts) != 1 {
			reason := "invalid token"
			switch {
			case errors.Is(err, fakeentra.ErrExpired):
				reason = "the token has expired"
			case errors.Is(err, fakeentra.ErrAudience):
				reason = fmt.Sprintf("wrong audience %q", c.Audience)
			}
			return p, &apiError{http.StatusUnauthorized, "UNAUTHENTICATED", "Invalid Azure management token in " + HeaderManagementToken + ": " + reason}, false
		}
		if !viaPAT && !strings.EqualFold(c.ObjectID, p.oid) {
			return p, &apiError{http.StatusForbidden, "PERMISSION_DENIED", "The Azure management token was issued to a different principal than the access token"}, false
		}
		if !ridPresent {
			return p, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", HeaderResourceID + " must be provided with " + HeaderManagementToken}, false
		}
		mgmtOK = true
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	key := strings.ToLower(p.oid)
	if !w.members[key] {
		if !mgmtOK && !w.opts.AllowNewPrincipalsWithoutManagementToken {
			return p, &apiError{http.StatusForbidden, "PERMISSION_DENIED", "Management API token must be provided for service principal admin user login"}, false
		}
		w.members[key] = true
	}
	if rec.Op == OpCreate || rec.Op == OpList || rec.Op == OpDelete {
		if w.noCanUse[key] || (p.appid != "" && w.noCanUse[strings.ToLower(p.appid)]) {
			who := p.appid
			if who == "" {
				who = p.oid
			}
			return p, &apiError{http.StatusForbidden, "PERMISSION_DENIED", "User " + who + " does not have permission to use tokens."}, false
		}
	}
	return p, nil, false
}

type tokenInfo struct {
	TokenID      string   `json:"token_id"`
	CreationTime int64    `json:"creation_time"`
	ExpiryTime   int64    `json:"expiry_time"`
	Comment      string   `json:"comment,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	// AutoscopeState is PublicTokenInfo's: RUNNING while Databricks
	// observes an autoscoped token (this stand-in never finishes).
	AutoscopeState string `json:"autoscope_state,omitempty"`
}

func infoOf(t Token) tokenInfo {
	info := tokenInfo{TokenID: t.ID, CreationTime: t.CreationTime, ExpiryTime: t.ExpiryTime, Comment: t.Comment, Scopes: t.Scopes}
	if t.Autoscope {
		info.AutoscopeState = "AUTOSCOPE_STATE_RUNNING"
	}
	return info
}

// scopeShape is what Databricks accepts as a scope: an area and optional
// modifiers, e.g. sql, jobs:read, sql:read:restricted-query.
var scopeShape = regexp.MustCompile(`^[a-z][a-z0-9-]*(:[a-z][a-z0-9-]*)*$`)

func readJSON(r *http.Request, v any) *apiError {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return &apiError{http.StatusBadRequest, "MALFORMED_REQUEST", "Could not read the request body"}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &apiError{http.StatusBadRequest, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - " + err.Error()}
	}
	return nil
}

func (w *Workspace) create(r *http.Request, p principal) (any, *apiError) {
	var req struct {
		Comment          *string         `json:"comment"`
		LifetimeSeconds  json.RawMessage `json:"lifetime_seconds"`
		Scopes           []string        `json:"scopes"`
		AutoscopeEnabled bool            `json:"autoscope_enabled"`
	}
	if e := readJSON(r, &req); e != nil {
		return nil, e
	}
	for _, sc := range req.Scopes {
		if !scopeShape.MatchString(sc) {
			return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("Invalid scope: %q", sc)}
		}
	}
	var lifetime *int64
	if raw := string(req.LifetimeSeconds); raw != "" && raw != "null" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, &apiError{http.StatusBadRequest, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - lifetime_seconds must be an integer (int64)"}
		}
		lifetime = &n
	}
	comment := ""
	if req.Comment != nil {
		comment = *req.Comment
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.tokensEnabledLocked() {
		return nil, &apiError{http.StatusForbidden, "PERMISSION_DENIED", "Personal access tokens are disabled for this workspace."}
	}
	now := w.clock.Now()
	nowMs := now.UnixMilli()
	maxDays := w.maxLifetimeDaysLocked()
	maxSec := int64(maxDays) * 86400
	expiry := int64(-1)
	switch {
	case lifetime == nil:
		sec := int64(DefaultLifetime / time.Second)
		if maxSec > 0 && maxSec < sec {
			sec = maxSec
		}
		expiry = nowMs + sec*1000
	case *lifetime == 0:
		return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "requirement failed: Invalid timeout: 0"}
	case *lifetime < 0:
		if maxSec > 0 {
			return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("Tokens without an expiry are not allowed: the maximum lifetime of new tokens in this workspace is %d days (maxTokenLifetimeDays)", maxDays)}
		}
	case maxSec > 0 && *lifetime > maxSec:
		return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("Token lifetime of %d seconds exceeds the maximum lifetime of new tokens in this workspace: %d days (maxTokenLifetimeDays), i.e. %d seconds", *lifetime, maxDays, maxSec)}
	default:
		expiry = nowMs + *lifetime*1000
	}
	if w.opts.MaxLiveTokens > 0 && w.liveCountLocked(p.oid, nowMs) >= w.opts.MaxLiveTokens {
		return nil, &apiError{http.StatusBadRequest, "QUOTA_EXCEEDED", fmt.Sprintf("Cannot create more than %d tokens. Revoke unused tokens and try again.", w.opts.MaxLiveTokens)}
	}
	var scopes []string
	if len(req.Scopes) > 0 {
		scopes = append(scopes, req.Scopes...)
	}
	t := w.createLocked(p.oid, p.appid, comment, nowMs, expiry, scopes, req.AutoscopeEnabled)
	return map[string]any{"token_value": t.Value, "token_info": infoOf(t)}, nil
}

// me answers SCIM Me for the caller: a service principal's own record.
func (w *Workspace) me(p principal) any {
	sum := sha256.Sum256([]byte(strings.ToLower(p.oid)))
	return map[string]any{
		"schemas":       []string{"urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"},
		"id":            new(big.Int).SetBytes(sum[:7]).String(),
		"applicationId": p.appid,
		"displayName":   p.appid,
		"active":        true,
	}
}

func (w *Workspace) list(p principal) (any, *apiError) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clock.Now().UnixMilli()
	var infos []tokenInfo
	for _, t := range w.tokens {
		if strings.EqualFold(t.PrincipalOID, p.oid) && w.stateLocked(t, now) == Live {
			infos = append(infos, infoOf(t.Token))
		}
	}
	// Like Databricks' proto JSON, an empty list is omitted: {}.
	if len(infos) == 0 {
		return struct{}{}, nil
	}
	return map[string]any{"token_infos": infos}, nil
}

func (w *Workspace) delete(r *http.Request, p principal) (any, *apiError) {
	var req struct {
		TokenID string `json:"token_id"`
	}
	if e := readJSON(r, &req); e != nil {
		return nil, e
	}
	if req.TokenID == "" {
		return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "Missing required field: token_id"}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.byID[req.TokenID]
	if !ok || !strings.EqualFold(t.PrincipalOID, p.oid) || w.stateLocked(t, w.clock.Now().UnixMilli()) != Live {
		return nil, &apiError{http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "No valid token with ID " + req.TokenID + " found"}
	}
	t.RevokedAt = w.clock.Now()
	return struct{}{}, nil
}

func (w *Workspace) getConf(r *http.Request) (any, *apiError) {
	raw := r.URL.Query().Get("keys")
	if raw == "" {
		return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "Missing required parameter: keys"}
	}
	var keys, bad []string
	for _, k := range strings.Split(raw, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !knownConfKeys[k] {
			bad = append(bad, k)
		}
		keys = append(keys, k)
	}
	if len(bad) > 0 {
		return nil, &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("Invalid keys: %q", bad)}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]*string{}
	for _, k := range keys {
		if v, ok := w.conf[k]; ok && v != nil {
			s := *v
			out[k] = &s
		} else {
			out[k] = nil
		}
	}
	return out, nil
}

func (w *Workspace) patchConf(r *http.Request) *apiError {
	var req map[string]any
	if e := readJSON(r, &req); e != nil {
		return e
	}
	vals := map[string]string{}
	for k, v := range req {
		if !knownConfKeys[k] {
			return &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("Invalid keys: [%q]; known keys are %q", k, slices.Sorted(maps.Keys(knownConfKeys)))}
		}
		s, ok := v.(string)
		if !ok {
			return &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", fmt.Sprintf("Value for %s must be a string", k)}
		}
		switch k {
		case "maxTokenLifetimeDays":
			if n, err := strconv.Atoi(s); err != nil || n < 0 {
				return &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "maxTokenLifetimeDays must be a non-negative integer"}
			}
		case "enableTokensConfig":
			if _, err := strconv.ParseBool(s); err != nil {
				return &apiError{http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "enableTokensConfig must be true or false"}
			}
		}
		vals[k] = s
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, v := range vals {
		w.conf[k] = &v
	}
	return nil
}
