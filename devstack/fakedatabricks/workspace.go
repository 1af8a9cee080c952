package fakedatabricks

import (
	"crypto/sha256"
	"encoding/hex"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// Defaults.
const (
	// DefaultMaxLiveTokens is Databricks' quota of live PATs per principal per workspace.
	DefaultMaxLiveTokens = 600
	// DefaultLifetime is the lifetime of a token created without lifetime_seconds.
	DefaultLifetime = 730 * 24 * time.Hour
)

// Options configure StartWorkspace. The zero value is usable.
type Options struct {
	// Plain serves plain http instead of TLS (to test ALLOW_INSECURE_LOOPBACK).
	Plain bool
	// ResourceID is the workspace's ARM id, compared case-insensitively with
	// the X-Databricks-Azure-Workspace-Resource-Id header. Default
	// /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-devstack/providers/Microsoft.Databricks/workspaces/ws-<workspace id>.
	ResourceID string
	// WorkspaceID is the numeric workspace id. Default random (16 digits).
	WorkspaceID string
	// Hosts are extra names for the TLS certificate.
	Hosts []string
	// MaxTokenLifetimeDays sets workspace-conf maxTokenLifetimeDays (0 = unset).
	MaxTokenLifetimeDays int
	// TokensDisabled sets workspace-conf enableTokensConfig to "false".
	TokensDisabled bool
	// AllowNewPrincipalsWithoutManagementToken lets a principal that is not
	// yet a member in without X-Databricks-Azure-SP-Management-Token (it
	// becomes a member). By default such a call is refused with
	// PERMISSION_DENIED "Management API token must be provided for service
	// principal admin user login".
	AllowNewPrincipalsWithoutManagementToken bool
	// Members are object ids (oid) that are workspace members from the start.
	Members []string
	// MaxLiveTokens per principal; default DefaultMaxLiveTokens; negative:
	// no quota (benchmarks, which issue many thousands).
	MaxLiveTokens int
	// Clock drives PAT creation and expiry. Default time.Now. Advance adds to it.
	Clock func() time.Time
	// AuthClock is the clock Entra tokens are checked against. Default
	// time.Now, not Clock: SDK credentials cache Entra tokens on real time,
	// so advancing the PAT clock must not expire them. Pass the entra MSI's
	// Now to follow its Advance.
	AuthClock func() time.Time
	// TenantID, when set, is required as the tid of Entra tokens.
	TenantID string
}

// TokenState is the state of a PAT.
type TokenState string

// Token states.
const (
	Live    TokenState = "live"
	Revoked TokenState = "revoked"
	Expired TokenState = "expired"
)

// Token is a snapshot of a PAT, value included (so tests can scan logs for leaks).
type Token struct {
	ID             string // SHA-256 hex of Value
	Value          string // dapi + 32 hex
	Comment        string
	PrincipalOID   string
	PrincipalAppID string
	CreationTime   int64 // epoch ms
	ExpiryTime     int64 // epoch ms, -1 = never
	RevokedAt      time.Time
	State          TokenState
	// Scopes are the API scopes it was created with (nil: unscoped, every
	// API its principal may call); Autoscope is autoscope_enabled.
	Scopes    []string
	Autoscope bool
	// Broken tokens were issued while IssueBrokenTokens was in force: the
	// workspace refuses them as invalid access tokens.
	Broken bool
}

// Created returns CreationTime as a time.
func (t Token) Created() time.Time { return time.UnixMilli(t.CreationTime) }

// Expires returns ExpiryTime as a time; zero for a token that never expires.
func (t Token) Expires() time.Time {
	if t.ExpiryTime < 0 {
		return time.Time{}
	}
	return time.UnixMilli(t.ExpiryTime)
}

// Request records one call, without any secret: only which auth headers
// were present and the audiences of the Entra tokens.
type Request struct {
	Time   time.Time
	Method string
	Path   string
	Op     string
	Status int // 0 when the connection was dropped
	Fault  string
	// Auth is "entra", "pat", "invalid" or "none".
	Auth                   string
	BearerAudience         string
	ManagementTokenPresent bool
	ManagementAudience     string
	ResourceIDPresent      bool
	ResourceID             string // the header's value (not a secret)
	PrincipalOID           string
}

type token struct {
	Token
}

// Workspace is one Azure Databricks workspace stand-in with its own HTTPS listener.
type Workspace struct {
	srv  *testca.Server
	opts Options

	clock   kit.Clock
	traffic kit.Traffic[Fault, Request]

	mu       sync.Mutex
	latency  time.Duration
	tokens   []*token
	byID     map[string]*token
	byValue  map[string]*token
	members  map[string]bool
	noCanUse map[string]bool
	conf     map[string]*string
	random   *randomFaults
	// broken is how many of the next tokens created are refused when used.
	broken int
}

// StartWorkspace starts a workspace stand-in with a certificate from c.
func StartWorkspace(c *testca.CA, opts Options) (*Workspace, error) {
	if opts.WorkspaceID == "" {
		opts.WorkspaceID = kit.WorkspaceNumber()
	}
	if opts.ResourceID == "" {
		opts.ResourceID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-devstack/providers/Microsoft.Databricks/workspaces/ws-" + opts.WorkspaceID
	}
	if opts.MaxLiveTokens == 0 {
		opts.MaxLiveTokens = DefaultMaxLiveTokens
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.AuthClock == nil {
		opts.AuthClock = time.Now
	}
	w := &Workspace{
		opts:     opts,
		clock:    kit.Clock{Base: opts.Clock},
		byID:     map[string]*token{},
		byValue:  map[string]*token{},
		members:  map[string]bool{},
		noCanUse: map[string]bool{},
		conf:     map[string]*string{},
	}
	for _, m := range opts.Members {
		w.members[strings.ToLower(m)] = true
	}
	if opts.MaxTokenLifetimeDays > 0 {
		w.SetMaxTokenLifetimeDays(opts.MaxTokenLifetimeDays)
	}
	if opts.TokensDisabled {
		w.SetTokensEnabled(false)
	}
	return kit.Serve(c, w, &w.srv, opts.Plain, opts.Hosts)
}

// Close stops the listener; calls in progress (delays) are cut short.
func (w *Workspace) Close() error { return w.srv.Close() }

// Host returns 127.0.0.1:PORT, the form of ARM's properties.workspaceUrl.
func (w *Workspace) Host() string { return w.srv.Addr() }

// URL returns https://127.0.0.1:PORT.
func (w *Workspace) URL() string { return w.srv.URL() }

// ResourceID returns the workspace's ARM id.
func (w *Workspace) ResourceID() string { return w.opts.ResourceID }

// WorkspaceID returns the numeric workspace id.
func (w *Workspace) WorkspaceID() string { return w.opts.WorkspaceID }

// Now returns the PAT clock (Clock plus Advance offsets).
func (w *Workspace) Now() time.Time { return w.clock.Now() }

// Advance moves the PAT clock by d, so tokens expire. Entra tokens are not
// affected (see Options.AuthClock).
func (w *Workspace) Advance(d time.Duration) { w.clock.Advance(d) }

// SetLatency makes every call wait d before it is handled.
func (w *Workspace) SetLatency(d time.Duration) {
	w.mu.Lock()
	w.latency = d
	w.mu.Unlock()
}

// SetMaxTokenLifetimeDays sets workspace-conf maxTokenLifetimeDays; 0 means
// no limit (the key then reads "0"; it reads null only if never set).
func (w *Workspace) SetMaxTokenLifetimeDays(n int) {
	v := strconv.Itoa(n)
	w.mu.Lock()
	w.conf["maxTokenLifetimeDays"] = &v
	w.mu.Unlock()
}

// SetTokensEnabled sets workspace-conf enableTokensConfig. With tokens
// disabled, create fails and existing PATs stop authenticating (they are
// not deleted; re-enabling brings them back).
func (w *Workspace) SetTokensEnabled(enabled bool) {
	v := strconv.FormatBool(enabled)
	w.mu.Lock()
	w.conf["enableTokensConfig"] = &v
	w.mu.Unlock()
}

// AddMember makes the principal (object id) a workspace member.
func (w *Workspace) AddMember(oid string) {
	w.mu.Lock()
	w.members[strings.ToLower(oid)] = true
	w.mu.Unlock()
}

// RemoveMember removes the principal from the workspace.
func (w *Workspace) RemoveMember(oid string) {
	w.mu.Lock()
	delete(w.members, strings.ToLower(oid))
	w.mu.Unlock()
}

// IsMember reports whether the principal (object id) is a member.
func (w *Workspace) IsMember(oid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.members[strings.ToLower(oid)]
}

// SetCanUse grants (true) or takes away (false) CAN USE on tokens for a
// principal, named by object id or application (client) id. Without it,
// token calls fail with PERMISSION_DENIED "User <appid> does not have
// permission to use tokens.".
func (w *Workspace) SetCanUse(principal string, canUse bool) {
	w.mu.Lock()
	if canUse {
		delete(w.noCanUse, strings.ToLower(principal))
	} else {
		w.noCanUse[strings.ToLower(principal)] = true
	}
	w.mu.Unlock()
}

// InjectFault queues f for op (OpCreate, OpList, OpDelete, OpConf, OpUnknown,
// or OpAny / "" for the next call of any kind). A call consumes the first
// fault queued for its op, else the first queued for any op.
func (w *Workspace) InjectFault(op string, f Fault) {
	if op == "" {
		op = OpAny
	}
	w.traffic.Faults.Add(op, f)
}

// SetRandomFaults turns on probabilistic faults for soak tests, from a
// seeded generator (deterministic for a given order of calls).
func (w *Workspace) SetRandomFaults(seed uint64, rates FaultRates) {
	w.mu.Lock()
	w.random = &randomFaults{rng: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), rates: rates}
	w.mu.Unlock()
}

// ClearFaults drops queued faults and turns random faults off.
func (w *Workspace) ClearFaults() {
	w.traffic.Faults.Clear()
	w.mu.Lock()
	w.random = nil
	w.mu.Unlock()
}

func (w *Workspace) nextFault(op string) Fault {
	for _, k := range []string{op, OpAny} {
		if f, ok := w.traffic.Faults.Take(k); ok {
			return f
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.random != nil {
		return w.random.pick(op)
	}
	return nil
}

// Calls returns the number of calls per operation (OpCreate, …), all
// outcomes included.
func (w *Workspace) Calls() map[string]int { return w.traffic.Calls.Snapshot() }

// Requests returns the record of every call so far, oldest first.
func (w *Workspace) Requests() []Request { return w.traffic.Requests.All() }

func (w *Workspace) stateLocked(t *token, nowMs int64) TokenState {
	switch {
	case !t.RevokedAt.IsZero():
		return Revoked
	case t.ExpiryTime >= 0 && nowMs >= t.ExpiryTime:
		return Expired
	}
	return Live
}

func (w *Workspace) snapshotLocked(t *token, nowMs int64) Token {
	s := t.Token
	s.State = w.stateLocked(t, nowMs)
	s.Scopes = append([]string(nil), t.Scopes...)
	return s
}

// Tokens returns every token ever created here, oldest first, with its
// state on the PAT clock.
func (w *Workspace) Tokens() []Token {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clock.Now().UnixMilli()
	out := make([]Token, 0, len(w.tokens))
	for _, t := range w.tokens {
		out = append(out, w.snapshotLocked(t, now))
	}
	return out
}

// LiveTokens returns the live (unrevoked, unexpired) tokens, oldest first.
func (w *Workspace) LiveTokens() []Token {
	var out []Token
	for _, t := range w.Tokens() {
		if t.State == Live {
			out = append(out, t)
		}
	}
	return out
}

// Token returns the token with the given id.
func (w *Workspace) Token(id string) (Token, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.byID[id]
	if !ok {
		return Token{}, false
	}
	return w.snapshotLocked(t, w.clock.Now().UnixMilli()), true
}

// CreateToken creates a token directly (no HTTP, not counted), e.g. to
// seed a principal close to its quota. lifetime <= 0 means never expires.
func (w *Workspace) CreateToken(principalOID, principalAppID, comment string, lifetime time.Duration) Token {
	w.mu.Lock()
	defer w.mu.Unlock()
	exp := int64(-1)
	now := w.clock.Now()
	if lifetime > 0 {
		exp = now.Add(lifetime).UnixMilli()
	}
	return w.createLocked(principalOID, principalAppID, comment, now.UnixMilli(), exp, nil, false)
}

// IssueBrokenTokens makes the next n tokens created (over HTTP or with
// CreateToken) tokens that do not work: create answers normally, list
// shows them, but any call made with one is refused as an invalid access
// token (the gateway's HTML 403), as Databricks refuses a token it does
// not recognise. It stands for a successor that was issued but cannot
// authenticate, which a rotation must notice before handing it out.
func (w *Workspace) IssueBrokenTokens(n int) {
	w.mu.Lock()
	w.broken = n
	w.mu.Unlock()
}

// RevokeToken revokes a token as an admin would; false if unknown.
func (w *Workspace) RevokeToken(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.byID[id]
	if !ok || !t.RevokedAt.IsZero() {
		return false
	}
	t.RevokedAt = w.clock.Now()
	return true
}

func (w *Workspace) createLocked(oid, appid, comment string, createdMs, expiryMs int64, scopes []string, autoscope bool) Token {
	value := "dapi" + kit.Hex(16)
	sum := sha256.Sum256([]byte(value))
	t := &token{Token{
		ID:             hex.EncodeToString(sum[:]),
		Value:          value,
		Comment:        comment,
		PrincipalOID:   oid,
		PrincipalAppID: appid,
		CreationTime:   createdMs,
		ExpiryTime:     expiryMs,
		Scopes:         scopes,
		Autoscope:      autoscope,
		Broken:         w.broken > 0,
	}}
	if w.broken > 0 {
		w.broken--
	}
	w.tokens = append(w.tokens, t)
	w.byID[t.ID] = t
	w.byValue[value] = t
	return w.snapshotLocked(t, createdMs)
}

func (w *Workspace) liveCountLocked(oid string, nowMs int64) int {
	n := 0
	for _, t := range w.tokens {
		if strings.EqualFold(t.PrincipalOID, oid) && w.stateLocked(t, nowMs) == Live {
			n++
		}
	}
	return n
}

func (w *Workspace) confLocked(key string) (string, bool) {
	v, ok := w.conf[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func (w *Workspace) tokensEnabledLocked() bool {
	v, ok := w.confLocked("enableTokensConfig")
	return !ok || !strings.EqualFold(v, "false")
}

func (w *Workspace) maxLifetimeDaysLocked() int {
	v, ok := w.confLocked("maxTokenLifetimeDays")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// knownConfKeys are the workspace-conf keys this stand-in accepts.
var knownConfKeys = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range []string{
		"maxTokenLifetimeDays", "enableTokensConfig", "enableIpAccessLists",
		"enableDbfsFileBrowser", "enableExportNotebook", "enableResultsDownloading",
		"enableNotebookTableClipboard", "enableUploadDataUis", "enableWebTerminal",
		"enableVerboseAuditLogs", "enableDeprecatedGlobalInitScripts",
		"enforceUserIsolation", "maxUserInactiveDays", "enableEnforceImdsV2",
		"storeInteractiveNotebookResultsInCustomerAccount",
	} {
		m[k] = true
	}
	return m
}()
