package fakekeyvault

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// APIVersion is the api-version azsecrets v1.5.1 sends.
const APIVersion = "2026-04-01"

// RecoveryLevel is the recoveryLevel of every secret (soft delete on, purge allowed).
const RecoveryLevel = "Recoverable+Purgeable"

const recoverableDays = 90

var nameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

// Options configure Start. The zero value is usable.
type Options struct {
	// Plain serves plain http instead of TLS (to test ALLOW_INSECURE_LOOPBACK).
	Plain bool
	// TenantID is named in the challenge (authorization="https://login.microsoftonline.com/<tenant>")
	// and, when a token carries a tid, required to match it. Default fakeentra.DefaultTenantID.
	TenantID string
	// Audience tokens must have and the challenge names as resource.
	// Default fakeentra.VaultResource (https://vault.azure.net).
	Audience string
	// AuthClock is the clock bearer tokens are checked against. Default time.Now.
	AuthClock func() time.Time
	// Clock stamps created/updated/deletedDate. Default time.Now; Advance adds to it.
	Clock func() time.Time
	// PageSize is the largest page of list results (maxresults can lower it). Default 25.
	PageSize int
	// Hosts are extra names for the TLS certificate.
	Hosts []string
}

// Secret is one version of a secret, value included.
type Secret struct {
	Name        string
	Version     string // 32 hex
	ID          string // https://127.0.0.1:PORT/secrets/{name}/{version}
	Value       string
	ContentType string
	Tags        map[string]string
	Enabled     bool
	Expires     time.Time // zero = none
	NotBefore   time.Time // zero = none
	Created     time.Time
	Updated     time.Time
	Deleted     bool // soft-deleted (the whole secret)
}

// Fault is a failure the vault serves instead of the answer. Faults are
// consumed only by requests that carry a bearer token (the challenge
// round trip without one never consumes a fault).
type Fault = kit.Fault

// RedirectBody is the text/plain body of a redirect fault, recognisable so
// that tests can check a client never shows it.
const RedirectBody = "REDIRECT-BODY: the vault has moved, follow the Location"

// Request records one call without secrets.
type Request struct {
	Method, Path, Op string
	Status           int
	Fault            bool
	Authenticated    bool
	Audience         string
}

type secret struct {
	name      string
	versions  []*Secret // oldest first
	deleted   bool
	deletedAt time.Time
}

// Vault is the Key Vault (secrets) stand-in.
type Vault struct {
	srv  *testca.Server
	opts Options

	clock     kit.Clock
	traffic   kit.Traffic[Fault, Request]
	forbidden kit.Names // secret names
	// lostSets is how many of the next set calls write the version and
	// then drop the connection without an answer.
	lostSets atomic.Int32

	mu      sync.Mutex
	secrets map[string]*secret // lower(name)
}

// Start starts the vault with a certificate from c.
func Start(c *testca.CA, opts Options) (*Vault, error) {
	if opts.TenantID == "" {
		opts.TenantID = fakeentra.DefaultTenantID
	}
	if opts.Audience == "" {
		opts.Audience = fakeentra.VaultResource
	}
	if opts.AuthClock == nil {
		opts.AuthClock = time.Now
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 25
	}
	v := &Vault{
		opts:    opts,
		clock:   kit.Clock{Base: opts.Clock},
		secrets: map[string]*secret{},
	}
	return kit.Serve(c, v, &v.srv, opts.Plain, opts.Hosts)
}

// URL returns the vault URL, https://127.0.0.1:PORT (azsecrets.NewClient's vaultURL).
func (v *Vault) URL() string { return v.srv.URL() }

// Close stops the vault.
func (v *Vault) Close() error { return v.srv.Close() }

// Now returns the vault clock (Clock plus Advance offsets).
func (v *Vault) Now() time.Time { return v.clock.Now() }

// Advance moves the vault clock by d.
func (v *Vault) Advance(d time.Duration) { v.clock.Advance(d) }

// Secrets returns every version of every secret, values included, sorted
// by name then creation.
func (v *Vault) Secrets() []Secret {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Secret
	for _, s := range v.sortedLocked() {
		for _, ver := range s.versions {
			c := *ver
			c.Tags = maps.Clone(ver.Tags)
			c.Deleted = s.deleted
			out = append(out, c)
		}
	}
	return out
}

// Secret returns the latest version of a secret (deleted ones included,
// with Deleted set).
func (v *Vault) Secret(name string) (Secret, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.secrets[strings.ToLower(name)]
	if !ok || len(s.versions) == 0 {
		return Secret{}, false
	}
	c := *s.versions[len(s.versions)-1]
	c.Tags = maps.Clone(c.Tags)
	c.Deleted = s.deleted
	return c, true
}

// PutSecret stores a new version directly (no HTTP, not counted).
func (v *Vault) PutSecret(name, value, contentType string, tags map[string]string) (Secret, error) {
	if !nameRE.MatchString(name) {
		return Secret{}, fmt.Errorf("keyvault: invalid secret name %q", name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ver, err := v.setLocked(name, value, contentType, tags, true, time.Time{}, time.Time{})
	if err != nil {
		return Secret{}, errors.New(err.msg)
	}
	return *ver, nil
}

// LoseNextSetAnswers makes the next n writes of a version happen, then
// drop the connection without an answer: a write whose client cannot tell
// that it succeeded (a timeout, a connection cut on the way back).
func (v *Vault) LoseNextSetAnswers(n int) { v.lostSets.Store(int32(n)) }

// Forbid makes every operation on the named secret fail with 403
// ForbiddenByRbac (forbidden=false restores access).
func (v *Vault) Forbid(name string, forbidden bool) {
	v.forbidden.Set(name, forbidden)
}

// InjectFault queues f for the next authenticated request.
func (v *Vault) InjectFault(f Fault) { v.traffic.Faults.Add(f.Op, f) }

// FailNext makes the next n authenticated requests fail with status (403
// = Forbidden by RBAC, 429 = Throttled with Retry-After: 0, 503 …).
func (v *Vault) FailNext(n, status int) { kit.FailNext(&v.traffic.Faults, n, status) }

// Calls returns the number of authenticated requests per operation (set,
// get, list, versions, update, delete, getDeleted, listDeleted, purge,
// recover, unknown), plus "challenge" for requests without a token.
func (v *Vault) Calls() map[string]int { return v.traffic.Calls.Snapshot() }

// Requests returns the record of every request so far.
func (v *Vault) Requests() []Request { return v.traffic.Requests.All() }

func (v *Vault) sortedLocked() []*secret {
	out := make([]*secret, 0, len(v.secrets))
	for _, s := range v.secrets {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].name) < strings.ToLower(out[j].name) })
	return out
}

// kvError is a Key Vault error.
type kvError struct {
	status     int
	code, msg  string
	inner      string
	retryAfter string
}

func (v *Vault) writeError(w http.ResponseWriter, e *kvError) {
	body := map[string]any{"code": e.code, "message": e.msg}
	if e.inner != "" {
		body["innererror"] = map[string]string{"code": e.inner}
	}
	if e.retryAfter != "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

// routes are the operations the vault serves, by the path's collection
// (secrets or deletedsecrets), its number of segments, its last segment
// when that is fixed ("" when it is a name or a version) and the method.
// The first that fits is the operation, so a fixed last segment comes
// before a version in the same place.
var routes = []struct {
	coll         string
	segs         int
	last, method string
	op           string
}{
	{"secrets", 1, "", http.MethodGet, "list"},
	{"secrets", 2, "", http.MethodPut, "set"},
	{"secrets", 2, "", http.MethodGet, "get"},
	{"secrets", 2, "", http.MethodDelete, "delete"},
	{"secrets", 3, "versions", http.MethodGet, "versions"},
	{"secrets", 3, "", http.MethodGet, "get"},
	{"secrets", 3, "", http.MethodPatch, "update"},
	{"deletedsecrets", 1, "", http.MethodGet, "listDeleted"},
	{"deletedsecrets", 2, "", http.MethodGet, "getDeleted"},
	{"deletedsecrets", 2, "", http.MethodDelete, "purge"},
	{"deletedsecrets", 3, "recover", http.MethodPost, "recover"},
}

// route returns the operation and its name/version arguments.
func route(method string, segs []string) (op, name, version string) {
	for _, rt := range routes {
		if len(segs) != rt.segs || segs[0] != rt.coll || method != rt.method || (rt.last != "" && segs[len(segs)-1] != rt.last) {
			continue
		}
		if len(segs) > 1 {
			name = segs[1]
		}
		if len(segs) == 3 && rt.last == "" {
			version = segs[2]
		}
		return rt.op, name, version
	}
	return "unknown", "", ""
}

var rbacAction = map[string]string{
	"set": "setSecret/action", "get": "getSecret/action", "update": "setSecret/action",
	"versions": "readMetadata/action", "delete": "delete", "getDeleted": "readMetadata/action",
	"purge": "purge/action", "recover": "recover/action",
}

// ServeHTTP implements http.Handler.
func (v *Vault) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	op, name, version := route(r.Method, segs)
	rec := Request{Method: r.Method, Path: r.URL.Path, Op: op}
	sr := &kit.StatusRecorder{ResponseWriter: rw}
	rw = sr
	defer func() {
		rec.Status = sr.Status
		v.traffic.Requests.Add(rec)
	}()
	rw.Header().Set("x-ms-request-id", kit.Hex(16))
	rw.Header().Set("x-ms-keyvault-service-version", "1.9.2000.1")

	raw, hasBearer := fakeentra.BearerToken(r.Header.Get("Authorization"))
	if !hasBearer {
		v.traffic.Calls.Inc("challenge")
		v.challenge(rw, &kvError{status: http.StatusUnauthorized, code: "Unauthorized", msg: "AKV10000: Request is missing a Bearer or PoP token."})
		return
	}
	rec.Authenticated = true
	c, parseErr := fakeentra.ParseToken(raw)
	if parseErr == nil {
		rec.Audience = c.Audience
	}
	v.traffic.Calls.Inc(op)
	if f, ok := v.traffic.Faults.Next(op); ok {
		rec.Fault = true
		if f.Serve(rw, r, v.srv.Closing(), RedirectBody, func() {
			e := &kvError{status: f.Status, code: f.Code, msg: f.Message, retryAfter: f.RetryAfter}
			if e.code == "" {
				switch f.Status {
				case http.StatusForbidden:
					*e = *v.rbacError(c, op, name)
					e.retryAfter = f.RetryAfter
				case http.StatusTooManyRequests:
					e.code, e.msg = "Throttled", "Request was not processed because too many requests were received. Reason: A1"
				case http.StatusServiceUnavailable:
					e.code, e.msg = "ServiceUnavailable", "The service is temporarily unavailable. Please retry later."
				default:
					e.code, e.msg = "InternalServerError", "An unexpected error occurred (injected fault)."
				}
			}
			v.writeError(rw, e)
		}) {
			return
		}
	}

	now := v.opts.AuthClock()
	if _, err := fakeentra.Validate(raw, now, v.opts.Audience); err != nil {
		msg := "AKV10022: Invalid token."
		switch {
		case errors.Is(err, fakeentra.ErrAudience):
			msg = fmt.Sprintf("AKV10022: Invalid audience. Expected %s, found: %s.", v.opts.Audience, c.Audience)
		case errors.Is(err, fakeentra.ErrExpired):
			msg = "AKV10013: The token has expired."
		}
		v.challenge(rw, &kvError{status: http.StatusUnauthorized, code: "Unauthorized", msg: msg})
		return
	}
	if c.TenantID != "" && !strings.EqualFold(c.TenantID, v.opts.TenantID) {
		v.challenge(rw, &kvError{status: http.StatusUnauthorized, code: "Unauthorized", msg: "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/" + v.opts.TenantID + "/, found " + c.Issuer + "."})
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		v.writeError(rw, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "The request is missing the 'api-version' query parameter."})
		return
	}
	if op == "unknown" {
		v.writeError(rw, &kvError{status: http.StatusNotFound, code: "NotFound", msg: fmt.Sprintf("The path %s %s is not served by this Key Vault stand-in.", r.Method, r.URL.Path)})
		return
	}
	if name != "" {
		if !nameRE.MatchString(name) {
			v.writeError(rw, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "The request URI contains an invalid name: " + name})
			return
		}
		if v.forbidden.Has(name) {
			v.writeError(rw, v.rbacError(c, op, name))
			return
		}
	}

	var (
		out any
		err *kvError
	)
	switch op {
	case "set":
		out, err = v.set(r, name)
		if err == nil && v.lostSets.Add(-1) >= 0 {
			kit.Drop()
		}
	case "get":
		out, err = v.get(name, version)
	case "update":
		out, err = v.update(r, name, version)
	case "list":
		out, err = v.list(r, "")
	case "versions":
		out, err = v.list(r, name)
	case "delete":
		out, err = v.delete(name)
	case "getDeleted":
		out, err = v.getDeleted(name)
	case "listDeleted":
		out, err = v.listDeleted()
	case "purge":
		if err = v.purge(name); err == nil {
			rw.WriteHeader(http.StatusNoContent)
			return
		}
	case "recover":
		out, err = v.recover(name)
	}
	if err != nil {
		v.writeError(rw, err)
		return
	}
	writeJSON(rw, out)
}

func (v *Vault) challenge(rw http.ResponseWriter, e *kvError) {
	rw.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="%s"`, v.opts.TenantID, v.opts.Audience))
	v.writeError(rw, e)
}

func (v *Vault) rbacError(c fakeentra.Claims, op, name string) *kvError {
	action := "Microsoft.KeyVault/vaults/secrets/" + rbacAction[op]
	if op == "list" || op == "listDeleted" {
		action = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
	}
	resource := "/secrets"
	if name != "" {
		resource += "/" + name
	}
	return &kvError{
		status: http.StatusForbidden, code: "Forbidden", inner: "ForbiddenByRbac",
		msg: fmt.Sprintf("Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=%s;oid=%s;iss=%s\r\nAction: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: devstack;location=eastus2\r\n",
			c.AppID, c.ObjectID, c.Issuer, action, resource),
	}
}

func notFound(name, version string) *kvError {
	id := name
	if version != "" {
		id += "/" + version
	}
	return &kvError{status: http.StatusNotFound, code: "SecretNotFound", msg: fmt.Sprintf("A secret with (name/id) %s was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", id)}
}

// attributes is the wire form of SecretAttributes (unix seconds).
type attributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         *int64 `json:"created,omitempty"`
	Updated         *int64 `json:"updated,omitempty"`
	RecoverableDays *int32 `json:"recoverableDays,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
}

func unixPtr(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	u := t.Unix()
	return &u
}

func (v *Vault) attrs(s *Secret) attributes {
	en := s.Enabled
	days := int32(recoverableDays)
	return attributes{Enabled: &en, NotBefore: unixPtr(s.NotBefore), Expires: unixPtr(s.Expires), Created: unixPtr(s.Created), Updated: unixPtr(s.Updated), RecoverableDays: &days, RecoveryLevel: RecoveryLevel}
}

// bundle renders a secret version; withValue adds the value.
func (v *Vault) bundle(s *Secret, withValue bool) map[string]any {
	out := map[string]any{"id": s.ID, "attributes": v.attrs(s)}
	if withValue {
		out["value"] = s.Value
	}
	if s.ContentType != "" {
		out["contentType"] = s.ContentType
	}
	if s.Tags != nil {
		out["tags"] = s.Tags
	}
	return out
}

type setParams struct {
	Value       *string           `json:"value"`
	ContentType *string           `json:"contentType"`
	Tags        map[string]string `json:"tags"`
	Attributes  *struct {
		Enabled   *bool  `json:"enabled"`
		NotBefore *int64 `json:"nbf"`
		Expires   *int64 `json:"exp"`
	} `json:"attributes"`
}

func readParams(r *http.Request) (setParams, *kvError) {
	var p setParams
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(b, &p) != nil {
		return p, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "The request body is not valid JSON."}
	}
	if len(p.Tags) > 15 {
		return p, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "Too many tags: at most 15 are allowed."}
	}
	for k, val := range p.Tags {
		if len(k) > 512 || len(val) > 256 {
			return p, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "Tag names are limited to 512 characters and values to 256."}
		}
	}
	if p.ContentType != nil && len(*p.ContentType) > 255 {
		return p, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "contentType is limited to 255 characters."}
	}
	return p, nil
}

func timeOf(u *int64) time.Time {
	if u == nil {
		return time.Time{}
	}
	return time.Unix(*u, 0).UTC()
}

func (v *Vault) set(r *http.Request, name string) (any, *kvError) {
	p, err := readParams(r)
	if err != nil {
		return nil, err
	}
	if p.Value == nil {
		return nil, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "Property 'value' is required."}
	}
	if len(*p.Value) > 25*1024 {
		return nil, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "The secret value is larger than 25 KB."}
	}
	enabled := true
	var nbf, exp time.Time
	if p.Attributes != nil {
		if p.Attributes.Enabled != nil {
			enabled = *p.Attributes.Enabled
		}
		nbf, exp = timeOf(p.Attributes.NotBefore), timeOf(p.Attributes.Expires)
	}
	ct := ""
	if p.ContentType != nil {
		ct = *p.ContentType
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s, err := v.setLocked(name, *p.Value, ct, p.Tags, enabled, nbf, exp)
	if err != nil {
		return nil, err
	}
	return v.bundle(s, true), nil
}

func (v *Vault) setLocked(name, value, ct string, tags map[string]string, enabled bool, nbf, exp time.Time) (*Secret, *kvError) {
	key := strings.ToLower(name)
	s, ok := v.secrets[key]
	if ok && s.deleted {
		return nil, &kvError{status: http.StatusConflict, code: "Conflict", inner: "ObjectIsDeletedButRecoverable",
			msg: fmt.Sprintf("Secret %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.", s.name)}
	}
	if !ok {
		s = &secret{name: name}
		v.secrets[key] = s
	}
	now := v.clock.Now().UTC()
	ver := kit.Hex(16)
	sec := &Secret{
		Name: s.name, Version: ver, ID: v.URL() + "/secrets/" + s.name + "/" + ver,
		Value: value, ContentType: ct, Tags: maps.Clone(tags), Enabled: enabled,
		NotBefore: nbf, Expires: exp, Created: now, Updated: now,
	}
	s.versions = append(s.versions, sec)
	return sec, nil
}

func (v *Vault) findLocked(name, version string) (*Secret, *kvError) {
	s, ok := v.secrets[strings.ToLower(name)]
	if !ok || s.deleted || len(s.versions) == 0 {
		return nil, notFound(name, version)
	}
	if version == "" {
		return s.versions[len(s.versions)-1], nil
	}
	for _, ver := range s.versions {
		if strings.EqualFold(ver.Version, version) {
			return ver, nil
		}
	}
	return nil, notFound(name, version)
}

func (v *Vault) get(name, version string) (any, *kvError) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, err := v.findLocked(name, version)
	if err != nil {
		return nil, err
	}
	if !s.Enabled {
		return nil, &kvError{status: http.StatusForbidden, code: "Forbidden", inner: "SecretDisabled", msg: "Operation get is not allowed on a disabled secret."}
	}
	return v.bundle(s, true), nil
}

func (v *Vault) update(r *http.Request, name, version string) (any, *kvError) {
	p, perr := readParams(r)
	if perr != nil {
		return nil, perr
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s, err := v.findLocked(name, version)
	if err != nil {
		return nil, err
	}
	if p.ContentType != nil {
		s.ContentType = *p.ContentType
	}
	if p.Tags != nil {
		s.Tags = maps.Clone(p.Tags)
	}
	if a := p.Attributes; a != nil {
		if a.Enabled != nil {
			s.Enabled = *a.Enabled
		}
		if a.NotBefore != nil {
			s.NotBefore = timeOf(a.NotBefore)
		}
		if a.Expires != nil {
			s.Expires = timeOf(a.Expires)
		}
	}
	s.Updated = v.clock.Now().UTC()
	return v.bundle(s, false), nil
}

// list lists secrets (name == "") or the versions of one secret, one page
// at a time; $skiptoken is an opaque offset.
func (v *Vault) list(r *http.Request, name string) (any, *kvError) {
	q := r.URL.Query()
	size := v.opts.PageSize
	if m := q.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > 25 {
			return nil, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "maxresults must be between 1 and 25."}
		}
		size = min(size, n)
	}
	offset := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 {
			return nil, &kvError{status: http.StatusBadRequest, code: "BadParameter", msg: "Invalid $skiptoken."}
		}
		offset = n
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var items []map[string]any
	if name == "" {
		for _, s := range v.sortedLocked() {
			if s.deleted || len(s.versions) == 0 {
				continue
			}
			latest := s.versions[len(s.versions)-1]
			item := v.bundle(latest, false)
			item["id"] = v.URL() + "/secrets/" + s.name
			items = append(items, item)
		}
	} else {
		s, ok := v.secrets[strings.ToLower(name)]
		if !ok || s.deleted {
			return nil, notFound(name, "")
		}
		for _, ver := range s.versions {
			items = append(items, v.bundle(ver, false))
		}
	}
	if offset > len(items) {
		offset = len(items)
	}
	end := min(offset+size, len(items))
	page := items[offset:end]
	if page == nil {
		page = []map[string]any{}
	}
	var next *string
	if end < len(items) {
		path := "/secrets"
		if name != "" {
			path += "/" + name + "/versions"
		}
		apiVersion := q.Get("api-version")
		n := v.URL() + path + "?api-version=" + apiVersion + "&$skiptoken=" + base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end))) + "&maxresults=" + strconv.Itoa(size)
		next = &n
	}
	return map[string]any{"value": page, "nextLink": next}, nil
}

func (v *Vault) deletedBundle(s *secret) map[string]any {
	latest := s.versions[len(s.versions)-1]
	b := v.bundle(latest, false)
	b["recoveryId"] = v.URL() + "/deletedsecrets/" + s.name
	b["deletedDate"] = s.deletedAt.Unix()
	b["scheduledPurgeDate"] = s.deletedAt.Add(recoverableDays * 24 * time.Hour).Unix()
	return b
}

func (v *Vault) delete(name string) (any, *kvError) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.secrets[strings.ToLower(name)]
	if !ok || s.deleted {
		return nil, notFound(name, "")
	}
	s.deleted = true
	s.deletedAt = v.clock.Now().UTC()
	return v.deletedBundle(s), nil
}

// onDeleted runs f, under the lock, on the soft-deleted secret name: the
// operations on deleted secrets (get, purge, recover) answer a secret that
// is not deleted, or not there, with the same SecretNotFound.
func (v *Vault) onDeleted(name string, f func(*secret) any) (any, *kvError) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.secrets[strings.ToLower(name)]
	if !ok || !s.deleted {
		return nil, &kvError{status: http.StatusNotFound, code: "SecretNotFound", msg: fmt.Sprintf("Deleted Secret not found: %s", name)}
	}
	return f(s), nil
}

func (v *Vault) getDeleted(name string) (any, *kvError) {
	return v.onDeleted(name, func(s *secret) any { return v.deletedBundle(s) })
}

func (v *Vault) listDeleted() (any, *kvError) {
	v.mu.Lock()
	defer v.mu.Unlock()
	items := []map[string]any{}
	for _, s := range v.sortedLocked() {
		if s.deleted {
			b := v.deletedBundle(s)
			b["id"] = v.URL() + "/secrets/" + s.name
			items = append(items, b)
		}
	}
	return map[string]any{"value": items, "nextLink": nil}, nil
}

func (v *Vault) purge(name string) *kvError {
	_, err := v.onDeleted(name, func(s *secret) any {
		delete(v.secrets, strings.ToLower(name))
		return nil
	})
	return err
}

func (v *Vault) recover(name string) (any, *kvError) {
	return v.onDeleted(name, func(s *secret) any {
		s.deleted = false
		return v.bundle(s.versions[len(s.versions)-1], false)
	})
}
