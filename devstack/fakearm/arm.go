package fakearm

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// APIVersion is the api-version armdatabricks v1.1.0 sends for workspaces.
const APIVersion = "2023-02-01"

// ResourceType is the type of an Azure Databricks workspace.
const ResourceType = "Microsoft.Databricks/workspaces"

// Provisioning states (ARM's properties.provisioningState) for workspaces.
const (
	StateSucceeded = "Succeeded"
	StateAccepted  = "Accepted"
	StateCreating  = "Creating"
	StateUpdating  = "Updating"
	StateDeleting  = "Deleting"
	StateFailed    = "Failed"
)

var workspaceIDRE = regexp.MustCompile(`(?i)^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Databricks/workspaces/([^/]+)$`)

// ParseWorkspaceID splits an Azure Databricks workspace resource id
// (case-insensitively) into subscription, resource group and name.
func ParseWorkspaceID(id string) (sub, rg, name string, err error) {
	m := workspaceIDRE.FindStringSubmatch(strings.TrimSpace(id))
	if m == nil {
		return "", "", "", fmt.Errorf("arm: %q is not a Microsoft.Databricks/workspaces resource id", id)
	}
	return m[1], m[2], m[3], nil
}

// Options configure Start. The zero value is usable.
type Options struct {
	// Plain serves plain http instead of TLS (to test ALLOW_INSECURE_LOOPBACK).
	Plain bool
	// AuthClock is the clock bearer tokens are checked against. Default time.Now.
	AuthClock func() time.Time
	// TenantID, when set, is required as the tid of bearer tokens.
	TenantID string
	// APIVersions, when not empty, are the only api-version values accepted
	// (others get 400 NoRegisteredProviderFound). Empty accepts any
	// yyyy-mm-dd[-preview] version.
	APIVersions []string
	// Location of workspaces added without one. Default "eastus2".
	Location string
	// Hosts are extra names for the TLS certificate.
	Hosts []string
}

// Workspace is a registered Microsoft.Databricks/workspaces resource.
type Workspace struct {
	// ID is the canonical resource id, returned as "id" whatever the casing
	// of the request.
	ID string
	// URL is properties.workspaceUrl: host[:port], no scheme. Empty = absent.
	URL                    string
	ProvisioningState      string // default Succeeded
	WorkspaceID            string // numeric; default derived from adb-<id>. hosts, else random
	Location               string
	SKU                    string // default "premium"
	ManagedResourceGroupID string // default derived
	Tags                   map[string]string
	CreatedBy              struct{ OID, ApplicationID string }
	Created                time.Time
}

// Fault is a failure ARM serves instead of the answer; its Op is one of
// "get", "list" and "unknown", as Calls names them.
type Fault = kit.Fault

// RedirectBody is the text/plain body of a redirect fault, recognisable so
// that tests can check a client never shows it.
const RedirectBody = "REDIRECT-BODY: ARM has moved, follow the Location"

// Request records one call without secrets.
type Request struct {
	Method, Path, APIVersion string
	Op                       string // "get", "list", "unknown"
	Status                   int
	Fault                    bool
	AuthPresent              bool
	Audience                 string // aud of the bearer token, "" if absent or unparseable
	PrincipalOID             string
}

// Server is the ARM stand-in.
type Server struct {
	srv  *testca.Server
	opts Options

	traffic kit.Traffic[Fault, Request]
	denied  kit.Names // object ids

	mu         sync.Mutex
	workspaces map[string]*Workspace // lower(id)
	groups     map[string]string     // lower(sub/rg) -> rg as registered
	subs       map[string]bool       // lower(sub)
}

// Start starts the ARM stand-in with a certificate from c.
func Start(c *testca.CA, opts Options) (*Server, error) {
	if opts.AuthClock == nil {
		opts.AuthClock = time.Now
	}
	if opts.Location == "" {
		opts.Location = "eastus2"
	}
	s := &Server{
		opts:       opts,
		workspaces: map[string]*Workspace{},
		groups:     map[string]string{},
		subs:       map[string]bool{},
	}
	return kit.Serve(c, s, &s.srv, opts.Plain, opts.Hosts)
}

// Endpoint returns https://127.0.0.1:PORT, for cloud.Configuration's
// ResourceManager Endpoint (or AZURE_RESOURCE_MANAGER_ENDPOINT).
func (s *Server) Endpoint() string { return s.srv.URL() }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// AddWorkspace registers (or replaces) a workspace. workspaceURL is
// host[:port] without scheme ("" = no URL yet); state "" means Succeeded.
func (s *Server) AddWorkspace(resourceID, workspaceURL, state string) error {
	return s.PutWorkspace(Workspace{ID: resourceID, URL: workspaceURL, ProvisioningState: state})
}

// PutWorkspace registers (or replaces) a workspace with every field given.
func (s *Server) PutWorkspace(w Workspace) error {
	sub, rg, name, err := ParseWorkspaceID(w.ID)
	if err != nil {
		return err
	}
	// Real ARM returns host[:port] without a scheme; http:// is allowed for
	// the plain-http (ALLOW_INSECURE_LOOPBACK) tests only.
	if strings.Contains(w.URL, "://") && !strings.HasPrefix(w.URL, "http://") {
		return fmt.Errorf("arm: workspace URL %q must be host[:port] without a scheme", w.URL)
	}
	if w.ProvisioningState == "" {
		w.ProvisioningState = StateSucceeded
	}
	if w.WorkspaceID == "" {
		if m := regexp.MustCompile(`^adb-(\d+)\.`).FindStringSubmatch(w.URL); m != nil {
			w.WorkspaceID = m[1]
		} else {
			w.WorkspaceID = kit.WorkspaceNumber()
		}
	}
	if w.Location == "" {
		w.Location = s.opts.Location
	}
	if w.SKU == "" {
		w.SKU = "premium"
	}
	if w.ManagedResourceGroupID == "" {
		w.ManagedResourceGroupID = "/subscriptions/" + sub + "/resourceGroups/databricks-rg-" + name + "-" + kit.Hex(6)
	}
	if w.Created.IsZero() {
		w.Created = time.Now().UTC()
	}
	w.Tags = maps.Clone(w.Tags)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workspaces[strings.ToLower(w.ID)] = &w
	s.addGroupLocked(sub, rg)
	return nil
}

// AddResourceGroup registers an (empty) resource group, so that lookups in
// it answer ResourceNotFound rather than ResourceGroupNotFound.
func (s *Server) AddResourceGroup(subscription, resourceGroup string) {
	s.mu.Lock()
	s.addGroupLocked(subscription, resourceGroup)
	s.mu.Unlock()
}

func (s *Server) addGroupLocked(sub, rg string) {
	s.subs[strings.ToLower(sub)] = true
	if _, ok := s.groups[strings.ToLower(sub+"/"+rg)]; !ok {
		s.groups[strings.ToLower(sub+"/"+rg)] = rg
	}
}

func (s *Server) update(resourceID string, f func(*Workspace)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workspaces[strings.ToLower(strings.TrimSpace(resourceID))]
	if !ok {
		return fmt.Errorf("arm: no workspace %q", resourceID)
	}
	f(w)
	return nil
}

// SetProvisioningState changes a workspace's provisioningState.
func (s *Server) SetProvisioningState(resourceID, state string) error {
	return s.update(resourceID, func(w *Workspace) { w.ProvisioningState = state })
}

// SetWorkspaceURL changes a workspace's workspaceUrl (host[:port]; "" = absent).
func (s *Server) SetWorkspaceURL(resourceID, workspaceURL string) error {
	return s.update(resourceID, func(w *Workspace) { w.URL = workspaceURL })
}

// RemoveWorkspace deletes a workspace (its resource group stays); false if unknown.
func (s *Server) RemoveWorkspace(resourceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(strings.TrimSpace(resourceID))
	_, ok := s.workspaces[k]
	delete(s.workspaces, k)
	return ok
}

// Workspace returns a registered workspace (looked up case-insensitively).
func (s *Server) Workspace(resourceID string) (Workspace, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workspaces[strings.ToLower(strings.TrimSpace(resourceID))]
	if !ok {
		return Workspace{}, false
	}
	c := *w
	c.Tags = maps.Clone(w.Tags)
	return c, true
}

// DenyRead makes reads by the principal (object id) fail with 403
// AuthorizationFailed, as without a Reader role; deny=false restores access.
func (s *Server) DenyRead(principalOID string, deny bool) {
	s.denied.Set(principalOID, deny)
}

// InjectFault queues f; each request consumes one queued fault, in order.
func (s *Server) InjectFault(f Fault) { s.traffic.Faults.Add(f.Op, f) }

// FailNext makes the next n requests fail with status (429 gets
// Retry-After: 0 so SDK retries are quick; use InjectFault for other values).
func (s *Server) FailNext(n, status int) { kit.FailNext(&s.traffic.Faults, n, status) }

// Calls returns the number of requests per operation: "get" (one
// workspace), "list" (workspaces of a resource group or subscription),
// "unknown"; faults and failures included.
func (s *Server) Calls() map[string]int { return s.traffic.Calls.Snapshot() }

// Audiences returns the audience of the bearer token of every request so
// far ("" when there was none or it could not be parsed); never the token.
func (s *Server) Audiences() []string {
	reqs := s.traffic.Requests.All()
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Audience
	}
	return out
}

// Requests returns the record of every request so far.
func (s *Server) Requests() []Request { return s.traffic.Requests.All() }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-failure-cause", "gateway")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

var apiVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	op, sub, rg, name := route(r.Method, segs)
	rec := Request{Method: r.Method, Path: r.URL.Path, APIVersion: r.URL.Query().Get("api-version"), Op: op}
	sr := &kit.StatusRecorder{ResponseWriter: rw}
	rw = sr
	s.traffic.Calls.Inc(op)
	defer func() {
		rec.Status = sr.Status
		s.traffic.Requests.Add(rec)
	}()
	reqID := kit.GUID()
	rw.Header().Set("x-ms-request-id", reqID)
	rw.Header().Set("x-ms-correlation-request-id", reqID)
	if id := r.Header.Get("x-ms-client-request-id"); id != "" {
		rw.Header().Set("x-ms-client-request-id", id)
	}

	// Authentication comes first, as at the real front door; the audience
	// is recorded even when the request then meets a fault.
	raw, hasBearer := fakeentra.BearerToken(r.Header.Get("Authorization"))
	rec.AuthPresent = r.Header.Get("Authorization") != ""
	var claims fakeentra.Claims
	var authErr error
	if hasBearer {
		claims, authErr = fakeentra.ParseToken(raw)
		if authErr == nil {
			rec.Audience = claims.Audience
		}
	}

	if f, ok := s.traffic.Faults.Next(op); ok {
		rec.Fault = true
		if f.Serve(rw, r, s.srv.Closing(), RedirectBody, func() {
			code, msg := f.Code, f.Message
			if code == "" {
				switch f.Status {
				case http.StatusTooManyRequests:
					code, msg = "TooManyRequests", "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00. For more information, see - https://aka.ms/srpthrottlinglimits"
				case http.StatusServiceUnavailable:
					code, msg = "ServiceUnavailable", "The server (leased) is currently unable to handle the request. Please try again later."
				case http.StatusForbidden:
					code, msg = "AuthorizationFailed", "The client does not have authorization to perform action 'Microsoft.Databricks/workspaces/read' over scope '"+r.URL.Path+"' or the scope is invalid. If access was recently granted, please refresh your credentials."
				case http.StatusGatewayTimeout:
					code, msg = "GatewayTimeout", "The gateway did not receive a response from 'Microsoft.Databricks' within the specified time period."
				default:
					code, msg = "InternalServerError", "Encountered internal server error. Diagnostic information: injected fault."
				}
			}
			writeError(rw, f.Status, code, msg)
		}) {
			return
		}
	}

	if code, msg := s.authenticate(raw, hasBearer, claims, authErr); code != "" {
		rw.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri="https://login.microsoftonline.com/%s", error="invalid_token", error_description=%q`, s.tenantOrCommon(), msg))
		writeError(rw, http.StatusUnauthorized, code, msg)
		return
	}
	rec.PrincipalOID = claims.ObjectID

	v := rec.APIVersion
	switch {
	case v == "":
		writeError(rw, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return
	case !s.apiVersionOK(v):
		writeError(rw, http.StatusBadRequest, "NoRegisteredProviderFound", fmt.Sprintf("No registered resource provider found for location '%s' and API version '%s' for type 'workspaces'. The supported api-versions are '%s'.", s.opts.Location, v, strings.Join(s.opts.APIVersions, ", ")))
		return
	}

	if op == "unknown" {
		if r.Method != http.MethodGet {
			writeError(rw, http.StatusMethodNotAllowed, "MethodNotAllowed", "The stand-in only serves GET for Microsoft.Databricks/workspaces.")
			return
		}
		writeError(rw, http.StatusNotFound, "NotFound", "The requested path '"+r.URL.Path+"' is not served by this ARM stand-in.")
		return
	}

	s.mu.Lock()
	denied := s.denied.Has(claims.ObjectID)
	knownSub := s.subs[strings.ToLower(sub)]
	_, knownRG := s.groups[strings.ToLower(sub+"/"+rg)]
	var found *Workspace
	var list []Workspace
	switch op {
	case "get":
		if w, ok := s.workspaces[strings.ToLower("/subscriptions/"+sub+"/resourceGroups/"+rg+"/providers/Microsoft.Databricks/workspaces/"+name)]; ok {
			c := *w
			found = &c
		}
	case "list":
		for _, w := range s.workspaces {
			wsub, wrg, _, _ := ParseWorkspaceID(w.ID)
			if strings.EqualFold(wsub, sub) && (rg == "" || strings.EqualFold(wrg, rg)) {
				list = append(list, *w)
			}
		}
	}
	s.mu.Unlock()

	scope := "/subscriptions/" + sub
	if rg != "" {
		scope += "/resourceGroups/" + rg
	}
	if name != "" {
		scope += "/providers/Microsoft.Databricks/workspaces/" + name
	}
	switch {
	case denied:
		writeError(rw, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf("The client '%s' with object id '%s' does not have authorization to perform action 'Microsoft.Databricks/workspaces/read' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.", claims.ObjectID, claims.ObjectID, scope))
		return
	case !knownSub:
		writeError(rw, http.StatusNotFound, "SubscriptionNotFound", fmt.Sprintf("The subscription '%s' could not be found.", sub))
		return
	case rg != "" && !knownRG:
		writeError(rw, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", rg))
		return
	}
	if op == "list" {
		sort.Slice(list, func(i, j int) bool { return strings.ToLower(list[i].ID) < strings.ToLower(list[j].ID) })
		value := make([]any, 0, len(list))
		for _, w := range list {
			value = append(value, workspaceJSON(w))
		}
		writeJSON(rw, map[string]any{"value": value})
		return
	}
	if found == nil {
		writeError(rw, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("The Resource 'Microsoft.Databricks/workspaces/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", name, rg))
		return
	}
	writeJSON(rw, workspaceJSON(*found))
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.Header().Set("x-ms-ratelimit-remaining-subscription-reads", "11999")
	rw.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(rw).Encode(v)
}

func (s *Server) tenantOrCommon() string {
	if s.opts.TenantID != "" {
		return s.opts.TenantID
	}
	return "common"
}

func (s *Server) apiVersionOK(v string) bool {
	if len(s.opts.APIVersions) == 0 {
		return apiVersionRE.MatchString(v)
	}
	for _, a := range s.opts.APIVersions {
		if strings.EqualFold(a, v) {
			return true
		}
	}
	return false
}

// authenticate returns ARM's error code and message, or "" when the token is good.
func (s *Server) authenticate(raw string, hasBearer bool, claims fakeentra.Claims, parseErr error) (string, string) {
	if !hasBearer {
		return "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
	}
	if parseErr != nil {
		return "InvalidAuthenticationToken", "The access token is invalid."
	}
	now := s.opts.AuthClock()
	c, err := fakeentra.Validate(raw, now, fakeentra.ManagementAudiences...)
	switch {
	case errors.Is(err, fakeentra.ErrExpired):
		return "ExpiredAuthenticationToken", fmt.Sprintf("The access token expiry UTC time '%s' is earlier than current UTC time '%s'.", c.Expiry().UTC().Format("1/2/2006 3:04:05 PM"), now.UTC().Format("1/2/2006 3:04:05 PM"))
	case errors.Is(err, fakeentra.ErrAudience):
		return "InvalidAuthenticationTokenAudience", fmt.Sprintf("The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.", c.Audience)
	case err != nil:
		return "InvalidAuthenticationToken", "The access token is invalid."
	case s.opts.TenantID != "" && !strings.EqualFold(claims.TenantID, s.opts.TenantID):
		return "InvalidAuthenticationTokenTenant", fmt.Sprintf("The access token is from the wrong issuer '%s'. It must match the tenant 'https://sts.windows.net/%s/' associated with this subscription.", claims.Issuer, s.opts.TenantID)
	}
	return "", ""
}

// route classifies a path: get (one workspace), list, or unknown.
func route(method string, segs []string) (op, sub, rg, name string) {
	eq := strings.EqualFold
	if method != http.MethodGet || len(segs) < 4 || !eq(segs[0], "subscriptions") {
		return "unknown", "", "", ""
	}
	sub = segs[1]
	rest := segs[2:]
	if len(rest) >= 2 && eq(rest[0], "resourceGroups") {
		rg = rest[1]
		rest = rest[2:]
	}
	if len(rest) < 3 || !eq(rest[0], "providers") || !eq(rest[1], "Microsoft.Databricks") || !eq(rest[2], "workspaces") {
		return "unknown", "", "", ""
	}
	switch len(rest) {
	case 3:
		return "list", sub, rg, ""
	case 4:
		if rg == "" {
			return "unknown", "", "", ""
		}
		return "get", sub, rg, rest[3]
	}
	return "unknown", "", "", ""
}

func workspaceJSON(w Workspace) map[string]any {
	_, _, name, _ := ParseWorkspaceID(w.ID)
	props := map[string]any{
		"managedResourceGroupId": w.ManagedResourceGroupID,
		"provisioningState":      w.ProvisioningState,
		"workspaceId":            w.WorkspaceID,
		"createdDateTime":        w.Created.UTC().Format("2006-01-02T15:04:05.0000000Z"),
		"parameters": map[string]any{
			"enableNoPublicIp": map[string]any{"type": "Bool", "value": true},
		},
		"publicNetworkAccess": "Enabled",
		"isUcEnabled":         true,
	}
	if w.URL != "" {
		props["workspaceUrl"] = w.URL
	}
	if w.CreatedBy.OID != "" || w.CreatedBy.ApplicationID != "" {
		props["createdBy"] = map[string]string{"oid": w.CreatedBy.OID, "applicationId": w.CreatedBy.ApplicationID}
	}
	out := map[string]any{
		"id":         w.ID,
		"name":       name,
		"type":       ResourceType,
		"location":   w.Location,
		"sku":        map[string]string{"name": w.SKU},
		"properties": props,
	}
	if w.Tags != nil {
		out["tags"] = w.Tags
	}
	return out
}
