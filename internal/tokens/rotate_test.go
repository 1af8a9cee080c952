package tokens

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVault keeps managed secrets in memory, versions newest first.
type fakeVault struct {
	mu       sync.Mutex
	secrets  map[string][]StoredToken
	disabled []string
	n        int
	fits     error    // what Fits answers
	read     []string // secrets listed one by one (Secret)
}

func newFakeVault() *fakeVault { return &fakeVault{secrets: map[string][]StoredToken{}} }

func (v *fakeVault) Put(_ context.Context, name string, _ Secret, st StoredToken) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.n++
	st.Name, st.Version, st.Enabled, st.Created = name, fmt.Sprintf("v%02d", v.n), true, st.IssuedAt
	st.URI = "https://kv.vault.azure.net/secrets/" + name + "/" + st.Version
	v.secrets[name] = append([]StoredToken{st}, v.secrets[name]...)
	return st.URI, nil
}

func (v *fakeVault) Claim(_ context.Context, name string, _ WorkspaceID) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.secrets[name]) > 0, nil
}
func (v *fakeVault) Fits(StoredToken) error { return v.fits }

func (v *fakeVault) Find(_ context.Context, name, tokenID string) (StoredToken, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, st := range v.secrets[name] {
		if st.TokenID == tokenID {
			return st, true, nil
		}
	}
	return StoredToken{}, false, nil
}

func (v *fakeVault) Get(_ context.Context, uri string) (StoredToken, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, vs := range v.secrets {
		for _, st := range vs {
			if st.URI == uri {
				return st, nil
			}
		}
	}
	return StoredToken{}, &Error{Code: CodeInvalidRequest, Message: "no such version: " + uri}
}

func (v *fakeVault) Disable(_ context.Context, st StoredToken) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	vs := v.secrets[st.Name]
	for i := range vs {
		if vs[i].Version == st.Version {
			vs[i].Enabled = false
		}
	}
	v.disabled = append(v.disabled, st.Version)
	return nil
}

func (v *fakeVault) Secret(_ context.Context, name string) (ManagedSecret, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.read = append(v.read, name)
	return ManagedSecret{Name: name, Versions: slices.Clone(v.secrets[name])}, nil
}

func (v *fakeVault) Managed(context.Context) ([]ManagedSecret, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []ManagedSecret
	for name, vs := range v.secrets {
		out = append(out, ManagedSecret{Name: name, Versions: slices.Clone(vs)})
	}
	return out, nil
}

// queueOnly grants the queue caller create with a lifetime cap, or denies it.
type queueOnly struct {
	max    time.Duration
	deny   bool
	mu     sync.Mutex
	asks   []Action
	scopes []Scopes // what each ask was for
}

type testCaller string

func (c testCaller) String() string   { return string(c) }
func (c testCaller) IsQueue() bool    { return c == "queue" }
func (c testCaller) CallerID() string { return "" }

func (a *queueOnly) Authorize(by Caller, act Action, ws WorkspaceID, s Scopes) (Grant, error) {
	a.mu.Lock()
	a.asks = append(a.asks, act)
	a.scopes = append(a.scopes, s)
	a.mu.Unlock()
	if by == nil || !by.IsQueue() || a.deny {
		return Grant{}, &Error{Code: CodeNotAuthorized, Message: "not authorized"}
	}
	return Grant{MaxLifetime: a.max}, nil
}

// plant issues a token in the fake workspace and stores it as the latest
// version of secret name, as an earlier create would have.
func plant(t *testing.T, api *fakeAPI, vault *fakeVault, name, origin, kind string, lifetime time.Duration) Issued {
	t.Helper()
	issued, err := api.CreateToken(t.Context(), Workspace{ID: testWS}, Marker{Kind: kind, RequestID: "first"}.Comment("etl"), lifetime, Scopes{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Put(t.Context(), name, issued.Value, StoredToken{TokenID: issued.ID, Workspace: testWS, Lifetime: lifetime,
		ExpiresAt: issued.ExpiresAt, IssuedAt: issued.CreatedAt, RequestID: "first", Comment: "etl", Kind: kind, Origin: origin}); err != nil {
		t.Fatal(err)
	}
	return issued
}

// Rotation renews a queue-issued token under the queue's rules as they are
// now (a rule's maxLifetime shortens the successor; a rule that no longer
// grants create stops the renewal), keeps the token's kind, and leaves the
// lifetime of an HTTP caller's token as that caller was granted it.
func TestRotationAppliesTheQueuePolicyAndKeepsTheKind(t *testing.T) {
	t.Parallel()
	// Tokens of 2 h are inside the 168 h window at once.
	cases := []struct {
		name, origin string
		deny         bool
		wantLifetime time.Duration // 0: no successor
		wantAsked    bool
	}{
		{"queue-issued, capped", OriginQueue, false, 24 * time.Hour, true},
		{"queue-issued, no longer granted", OriginQueue, true, 0, true},
		{"http-issued", OriginHTTP, false, 30 * 24 * time.Hour, false},
	}
	for _, c := range cases {
		api, vault := newFakeAPI(fixedNow), newFakeVault()
		authz := &queueOnly{max: 24 * time.Hour, deny: c.deny}
		svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Authorizer: authz, Now: fixedNow})
		old := plant(t, api, vault, "sec", c.origin, MarkerEvent, 30*24*time.Hour)
		// Bring the token inside the window: it was made long ago.
		vault.secrets["sec"][0].ExpiresAt = fixedNow().Add(2 * time.Hour)
		out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour, Queue: testCaller("queue")})
		if err != nil || len(out) != 1 {
			t.Fatalf("%s: %v %+v", c.name, err, out)
		}
		if asked := len(authz.asks) > 0; asked != c.wantAsked {
			t.Errorf("%s: policy asked %v; want %v", c.name, asked, c.wantAsked)
		}
		if c.wantLifetime == 0 {
			if out[0].Type != Failed || out[0].Err.Code != CodeNotAuthorized || api.count("create") != 1 {
				t.Errorf("%s: %+v, %d creates; want Failed NotAuthorized and no new token", c.name, out[0], api.count("create"))
			}
			continue
		}
		if out[0].Type != Rotated {
			t.Fatalf("%s: %+v", c.name, out[0])
		}
		latest := vault.secrets["sec"][0]
		if latest.Lifetime != c.wantLifetime || latest.Kind != MarkerEvent || latest.Origin != c.origin || latest.TokenID == old.ID {
			t.Errorf("%s: successor lifetime %s kind %q origin %q; want %s, %q, %q", c.name, latest.Lifetime, latest.Kind, latest.Origin, c.wantLifetime, MarkerEvent, c.origin)
		}
		toks, _ := api.ListTokens(t.Context(), Workspace{})
		for _, tok := range toks {
			if tok.ID == latest.TokenID && !strings.HasPrefix(tok.Comment, "[dtb:evt:rot-") {
				t.Errorf("%s: successor's Databricks comment %q is not an event marker", c.name, tok.Comment)
			}
		}
	}
}

// A version written before the kind was recorded takes it from the
// token's own marker.
func TestRotationReadsTheKindOfOlderVersionsFromTheToken(t *testing.T) {
	t.Parallel()
	api, vault := newFakeAPI(fixedNow), newFakeVault()
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
	plant(t, api, vault, "sec", "", MarkerEvent, 2*time.Hour)
	vault.secrets["sec"][0].Kind = ""
	out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour})
	if err != nil || len(out) != 1 || out[0].Type != Rotated {
		t.Fatalf("%v %+v", err, out)
	}
	if k := vault.secrets["sec"][0].Kind; k != MarkerEvent {
		t.Errorf("successor kind %q; want %q", k, MarkerEvent)
	}
}

// Revoking by token id disables the versions that hold it.
func TestRevokeDisablesHoldingVersions(t *testing.T) {
	t.Parallel()
	api, vault := newFakeAPI(fixedNow), newFakeVault()
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
	issued := plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, time.Hour)
	res, err := svc.Revoke(t.Context(), nil, RevokeRequest{Workspace: testWS, TokenID: issued.ID})
	if err != nil || res.Status != StatusRevoked || vault.secrets["sec"][0].Enabled {
		t.Errorf("revoke: %+v %v; version enabled %v", res, err, vault.secrets["sec"][0].Enabled)
	}
}

func TestDefaultSecretName(t *testing.T) {
	t.Parallel()
	a, _ := ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-a/providers/Microsoft.Databricks/workspaces/etl_prod")
	b, _ := ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-b/providers/Microsoft.Databricks/workspaces/etl-prod")
	upper, _ := ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/RG-A/providers/Microsoft.Databricks/workspaces/ETL_PROD")
	long, _ := ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" + strings.Repeat("g", 90) + "/providers/Microsoft.Databricks/workspaces/" + strings.Repeat("w", 64))
	na, nb := DefaultSecretName(a), DefaultSecretName(b)
	if !strings.HasPrefix(na, "databricks-etl-prod-") || len(na) != len("databricks-etl-prod-")+8 || strings.EqualFold(na, nb) {
		t.Errorf("names %q and %q", na, nb)
	}
	if !strings.EqualFold(DefaultSecretName(upper), na) { // Key Vault names ignore case
		t.Errorf("the same workspace in other casing got %q, not %q", DefaultSecretName(upper), na)
	}
	if n := DefaultSecretName(long); ValidSecretName(n) != nil {
		t.Errorf("%q is not a valid Key Vault name", n)
	}
}

// A queue-issued scoped token is renewed only if the queue's rules still
// allow its scopes: the policy is asked with them, and the successor gets
// exactly them.
func TestRotationAsksThePolicyWithTheTokensScopes(t *testing.T) {
	t.Parallel()
	api, vault := newFakeAPI(fixedNow), newFakeVault()
	authz := &queueOnly{}
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Authorizer: authz, Now: fixedNow})
	plant(t, api, vault, "sec", OriginQueue, MarkerRequest, 2*time.Hour)
	want := Scopes{List: []string{"sql:read", "jobs:read"}, Autoscope: true}
	vault.secrets["sec"][0].Scopes = want
	out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour, Queue: testCaller("queue")})
	if err != nil || len(out) != 1 || out[0].Type != Rotated {
		t.Fatalf("%v %+v", err, out)
	}
	if len(authz.scopes) != 1 || !slices.Equal(authz.scopes[0].List, want.List) || !authz.scopes[0].Autoscope {
		t.Errorf("the policy was asked about %+v; want %+v", authz.scopes, want)
	}
	latest := vault.secrets["sec"][0]
	toks, _ := api.ListTokens(t.Context(), Workspace{})
	for _, tok := range toks {
		if tok.ID == latest.TokenID && (!slices.Equal(tok.Scopes.List, want.List) || !tok.Scopes.Autoscope) {
			t.Errorf("successor created with %+v; want %+v", tok.Scopes, want)
		}
	}
	if !slices.Equal(latest.Scopes.List, want.List) || out[0].Record == nil || !slices.Equal(out[0].Record.Scopes.List, want.List) {
		t.Errorf("successor version %+v, record %+v", latest.Scopes, out[0].Record)
	}
}

// A successor is proved with a call made with it before it becomes the
// latest version. One that fails is revoked, the current version stays
// latest, and the outcome says why; a failed revoke is left to the next
// run, which finds the token by its rotation marker.
func TestRotationVerifiesTheSuccessor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		verifyErr  error
		deleteFail bool
		wantCode   Code
		wantLive   int // live tokens after the run
	}{
		{"refused", nil, false, CodeUpstreamError, 1},
		{"throttled", &Error{Code: CodeUpstreamUnavailable, Message: "throttled", RetryAfter: time.Second}, false, CodeUpstreamUnavailable, 1},
		{"refused, and the revoke fails", nil, true, CodeUpstreamError, 2},
	}
	for _, c := range cases {
		api, vault := newFakeAPI(fixedNow), newFakeVault()
		svc := newTestService(Deps{Resolver: fakeResolver{}, API: &deleteFails{fakeAPI: api, fail: c.deleteFail}, Vault: vault, Now: fixedNow})
		old := plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, 2*time.Hour)
		api.breakNext, api.verifyErr = 1, c.verifyErr
		out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour})
		if err != nil || len(out) != 1 {
			t.Fatalf("%s: %v %+v", c.name, err, out)
		}
		o := out[0]
		if o.Type != Failed || o.Err.Code != c.wantCode || !strings.Contains(o.Err.Message, "verification") || o.Rotating == nil || o.Rotating.TokenID != old.ID {
			t.Errorf("%s: outcome %s %+v", c.name, o.Type, o.Err)
		}
		if vs := vault.secrets["sec"]; len(vs) != 1 || vs[0].TokenID != old.ID || !vs[0].Enabled {
			t.Errorf("%s: %d versions; the old one must stay latest", c.name, len(vs))
		}
		if n := api.liveCount(); n != c.wantLive || api.count("verify") != 1 {
			t.Errorf("%s: %d live tokens, %d verifications; want %d and 1", c.name, n, api.count("verify"), c.wantLive)
		}
	}
}

// deleteFails makes DeleteToken fail when fail is set.
type deleteFails struct {
	*fakeAPI
	fail bool
}

func (d *deleteFails) DeleteToken(ctx context.Context, ws Workspace, id string) (bool, error) {
	if d.fail {
		return false, &Error{Code: CodeUpstreamUnavailable, Message: "unavailable"}
	}
	return d.fakeAPI.DeleteToken(ctx, ws, id)
}

// A version's tags can be edited by anyone who may write the vault; the
// token's own record in Databricks cannot. When Databricks lists the
// predecessor with scopes and the tags say otherwise (stripped, to get an
// unscoped successor, or changed), nothing is issued: the rotation fails
// and says so.
func TestRotationRefusesScopesThatDisagreeWithDatabricks(t *testing.T) {
	t.Parallel()
	for _, tagged := range []Scopes{{}, {List: []string{"sql"}}, {List: []string{"sql:read"}, Autoscope: true}} {
		api, vault := newFakeAPI(fixedNow), newFakeVault()
		svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
		old := plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, 2*time.Hour)
		tok := api.live[old.ID]
		tok.Scopes = Scopes{List: []string{"sql:read"}}
		api.live[old.ID] = tok
		vault.secrets["sec"][0].Scopes = tagged
		out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour})
		if err != nil || len(out) != 1 {
			t.Fatalf("%+v: %v %+v", tagged, err, out)
		}
		if out[0].Type != Failed || !strings.Contains(out[0].Err.Message, "scopes") || api.count("create") != 1 {
			t.Errorf("tags %+v, Databricks sql:read: %s %+v, %d creates; want Failed and no new token", tagged, out[0].Type, out[0].Err, api.count("create"))
		}
	}
	// Agreeing (in another order) rotates.
	api, vault := newFakeAPI(fixedNow), newFakeVault()
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
	old := plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, 2*time.Hour)
	tok := api.live[old.ID]
	tok.Scopes = Scopes{List: []string{"jobs", "sql:read"}}
	api.live[old.ID] = tok
	vault.secrets["sec"][0].Scopes = Scopes{List: []string{"sql:read", "jobs"}}
	if out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour}); err != nil || out[0].Type != Rotated {
		t.Errorf("agreeing scopes: %v %+v", err, out)
	}
}

// With a durable ledger, a rotation run reads what is due from it and lists
// only those secrets' versions: a vault of many secrets costs one listing
// per due secret, not a scan. Once a day (Ledger.Due) the whole vault is
// scanned, for versions the ledger does not know.
func TestRotationReadsWhatIsDueFromTheLedger(t *testing.T) {
	t.Parallel()
	api, vault, led := newFakeAPI(fixedNow), newFakeVault(), newFakeLedger()
	led.ledgerDriven = true
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Ledger: led, Now: fixedNow})
	due := plant(t, api, vault, "due", OriginHTTP, MarkerRequest, 2*time.Hour)
	fresh := plant(t, api, vault, "fresh", OriginHTTP, MarkerRequest, 30*24*time.Hour)
	plant(t, api, vault, "unknown", OriginHTTP, MarkerRequest, 2*time.Hour) // in the vault, not in the ledger
	for name, tok := range map[string]Issued{"due": due, "fresh": fresh} {
		led.entries[name] = Entry{Workspace: testWS, RequestID: name, TokenID: tok.ID, ExpiresAt: tok.ExpiresAt, State: TokenLive,
			SecretURI: vault.secrets[name][0].URI}
	}
	out, err := svc.Rotate(t.Context(), RotateOptions{Before: 24 * time.Hour, DefaultLifetime: time.Hour})
	if err != nil || len(out) != 1 || out[0].Type != Rotated || out[0].Rotating.TokenID != due.ID {
		t.Fatalf("ledger-driven run: %v %+v; want the due secret rotated", err, out)
	}
	if !slices.Equal(vault.read, []string{"due"}) {
		t.Errorf("secrets listed: %q; want only the due one", vault.read)
	}
	// The daily scan finds the version the ledger does not know (and the
	// due secret's successor, of the same two hours, is due again).
	led.ledgerDriven = false
	out, err = svc.Rotate(t.Context(), RotateOptions{Before: 24 * time.Hour, DefaultLifetime: time.Hour})
	if err != nil || !slices.ContainsFunc(out, func(o Outcome) bool { return o.Type == Rotated && o.Rotating.Name == "unknown" }) {
		t.Fatalf("vault scan: %v %+v; want the unknown secret rotated", err, out)
	}
}

// A successor lives no longer than Databricks says its predecessor was
// given (a lifetime tag raised by whoever may write the vault buys
// nothing) nor than TOKEN_MAX_LIFETIME allows now.
func TestRotationBoundsTheSuccessorsLifetime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		given, tag   time.Duration // what Databricks gave the predecessor; what its version's tag says
		max          time.Duration // TOKEN_MAX_LIFETIME
		wantLifetime time.Duration
	}{
		{"as given", 2 * time.Hour, 2 * time.Hour, 90 * 24 * time.Hour, 2 * time.Hour},
		{"a raised tag", 2 * time.Hour, 10 * 365 * 24 * time.Hour, 0, 2 * time.Hour},
		{"a lowered maximum", 30 * 24 * time.Hour, 30 * 24 * time.Hour, 7 * 24 * time.Hour, 7 * 24 * time.Hour},
	}
	for _, c := range cases {
		api, vault := newFakeAPI(fixedNow), newFakeVault()
		svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
		plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, c.given)
		vault.secrets["sec"][0].Lifetime = c.tag
		vault.secrets["sec"][0].ExpiresAt = fixedNow().Add(time.Hour) // inside the window
		out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour, MaxLifetime: c.max})
		if err != nil || len(out) != 1 || out[0].Type != Rotated {
			t.Fatalf("%s: %v %+v", c.name, err, out)
		}
		successor := vault.secrets["sec"][0]
		if successor.Lifetime != c.wantLifetime {
			t.Errorf("%s: successor's lifetime %s; want %s", c.name, successor.Lifetime, c.wantLifetime)
		}
		toks, _ := api.ListTokens(t.Context(), Workspace{})
		for _, tok := range toks {
			if got := tok.ExpiresAt.Sub(tok.CreatedAt).Round(time.Second); tok.ID == successor.TokenID && got != c.wantLifetime {
				t.Errorf("%s: Databricks gave the successor %s; want %s", c.name, got, c.wantLifetime)
			}
		}
	}
}

// A version whose tags were edited to name a token it does not hold buys
// nothing: rotation issues no successor (however the tags set scopes,
// lifetime and origin), and retiring such a version revokes no one's
// token. Tags can be edited by anyone who may write the vault.
func TestRotationTrustsNoTokenTheVersionDoesNotHold(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		forge  func(v *StoredToken, victim Issued)
		retire bool // the forged version is an expired, superseded one
	}{
		{"a made-up token id", func(v *StoredToken, _ Issued) { v.TokenID = "made-up" }, false},
		{"another request's token", func(v *StoredToken, victim Issued) { v.TokenID = victim.ID }, false},
		{"retiring another request's live token", func(v *StoredToken, victim Issued) { v.TokenID = victim.ID }, true},
	}
	for _, c := range cases {
		api, vault := newFakeAPI(fixedNow), newFakeVault()
		svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
		// The victim: an inline token of another request, live in the workspace.
		victim, err := api.CreateToken(t.Context(), Workspace{ID: testWS}, Marker{Kind: MarkerRequest, RequestID: "victim"}.Comment("inline"), time.Hour, Scopes{List: []string{"sql"}})
		if err != nil {
			t.Fatal(err)
		}
		plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, 30*24*time.Hour)
		forged := &vault.secrets["sec"][0]
		c.forge(forged, victim)
		forged.Scopes, forged.Lifetime = Scopes{}, 90*24*time.Hour
		forged.ExpiresAt = fixedNow().Add(time.Hour) // due
		if c.retire {
			forged.ExpiresAt = fixedNow().Add(-time.Hour) // expired: retired once a successor is latest
			plant(t, api, vault, "sec", OriginHTTP, MarkerRequest, 30*24*time.Hour)
		}
		before := api.liveCount()
		out, err := svc.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !c.retire && (len(out) != 1 || out[0].Type != Failed || out[0].Err.Code != CodeInvalidRequest) {
			t.Errorf("%s: outcomes %+v; want one Failed InvalidRequest", c.name, out)
		}
		if api.liveCount() != before {
			t.Errorf("%s: live tokens went from %d to %d; want no token made or revoked", c.name, before, api.liveCount())
		}
		if _, ok := api.live[victim.ID]; !ok {
			t.Errorf("%s: the victim's token was revoked", c.name)
		}
	}
}
