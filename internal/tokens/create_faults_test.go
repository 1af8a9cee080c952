package tokens

import (
	"context"
	"strings"
	"testing"
	"time"
)

// takeoverLedger says the first claim it grants was taken over from a dead
// attempt.
type takeoverLedger struct {
	*fakeLedger
	once bool
}

func (l *takeoverLedger) Claim(ctx context.Context, ws WorkspaceID, id string, h Hold) (Claim, error) {
	c, err := l.fakeLedger.Claim(ctx, ws, id, h)
	if err == nil && c.Recorded == nil && !l.once {
		l.once = true
		c.TakenOver = true
	}
	return c, err
}

// listFailsAfterCreate throttles every list once a token was created.
type listFailsAfterCreate struct{ *fakeAPI }

func (f listFailsAfterCreate) ListTokens(ctx context.Context, ws Workspace) ([]Token, error) {
	if f.count("create") > 0 {
		return nil, &Error{Code: CodeUpstreamUnavailable, RetryAfter: time.Second, Message: "throttled past the budget"}
	}
	return f.fakeAPI.ListTokens(ctx, ws)
}

// After a takeover, the second look for the dead attempt's late token
// failing must not fail a create whose token is delivered and recorded:
// the caller would lose an inline value its retry can never see again.
func TestFailedLateLookKeepsTheIssuedToken(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: listFailsAfterCreate{api}, Ledger: &takeoverLedger{fakeLedger: newFakeLedger()}, Now: fixedNow})
	res, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r-takeover", RequestIDGiven: true}, CreateOptions{})
	if err != nil || !res.Issued || res.Record.Value.IsZero() || !api.isLive(res.Record.TokenID) {
		t.Errorf("create: %v, issued %v, value %v; want the live token and its value", err, res.Issued, !res.Record.Value.IsZero())
	}
}

// failRecordLedger fails the first Record, as a table answering 503 right
// after the claim; its Purge then reports that claim stranded.
type failRecordLedger struct {
	*fakeLedger
	failed   bool
	stranded []Entry
}

func (l *failRecordLedger) Record(ctx context.Context, c Claim, e Entry) error {
	if !l.failed {
		l.failed = true
		l.stranded = append(l.stranded, Entry{Workspace: e.Workspace, RequestID: e.RequestID})
		return &Error{Code: CodeUpstreamUnavailable, RetryAfter: time.Second, Message: "table unavailable"}
	}
	return l.fakeLedger.Record(ctx, c, e)
}

func (l *failRecordLedger) Purge(context.Context) ([]Entry, error) { return l.stranded, nil }

// An inline create whose record cannot be written is a transient failure
// with its token revoked, not a 201 whose token the timer's sweep revokes
// under its holder later (it finds the claim stranded and no vault
// holding the token). With Key Vault the delivery stands: the vault holds
// the token, and the sweep adopts it.
func TestUnrecordedInlineTokenIsNotHandedOut(t *testing.T) {
	t.Parallel()
	for _, keyVault := range []bool{false, true} {
		api, led := newFakeAPI(fixedNow), &failRecordLedger{fakeLedger: newFakeLedger()}
		d := Deps{Resolver: fakeResolver{}, API: api, Ledger: led, Now: fixedNow}
		if keyVault {
			d.Vault = newFakeVault()
		}
		svc := newTestService(d)
		res, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: 48 * time.Hour, RequestID: "r-sweep", RequestIDGiven: true}, CreateOptions{})
		held := len(led.held) // before the sweep settles what is left
		if _, serr := svc.Sweep(t.Context(), SweepOptions{RotateBefore: 168 * time.Hour}); serr != nil {
			t.Fatalf("key vault %v: sweep: %v", keyVault, serr)
		}
		switch {
		case !keyVault && (CodeOf(err) != CodeUpstreamUnavailable || api.liveCount() != 0 || held != 0):
			t.Errorf("inline: %v, %d live tokens, %d claims held; want UpstreamUnavailable, none live, the claim given back", err, api.liveCount(), held)
		case keyVault && (err != nil || !res.Issued || !api.isLive(res.Record.TokenID)):
			t.Errorf("key vault: %v, issued %v; want the delivered token kept live after the sweep", err, res.Issued)
		}
	}
}

// A new secret may not take another workspace's default name: taken
// first, it would refuse that workspace's creates and events. Its own
// default, a date-like suffix and a secret that already holds this
// workspace's tokens are fine.
func TestSecretNameCannotSquatAnotherWorkspacesDefault(t *testing.T) {
	t.Parallel()
	other, err := ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/other")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		planted bool // the secret already holds this workspace's token
		ok      bool
	}{
		{DefaultSecretName(other), false, false}, // databricks-other-faac2293
		{strings.ToUpper(DefaultSecretName(other)), false, false},
		{"databricks-anything-0a1b2c3d", false, false},
		{"databricks-anything-0a1b2c3d", true, true},
		{DefaultSecretName(testWS), false, true},
		{"databricks-etl-20261128", false, true},
		{"etl-token-0a1b2c3d", false, true},
	}
	for _, c := range cases {
		api, vault := newFakeAPI(fixedNow), newFakeVault()
		svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
		if c.planted {
			plant(t, api, vault, c.name, OriginHTTP, MarkerRequest, time.Hour)
		}
		before := api.liveCount()
		_, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, SecretName: c.name, RequestID: "r1"}, CreateOptions{})
		refused := CodeOf(err) == CodeInvalidRequest && AsError(err).Target == "secretName"
		if refused == c.ok || (refused && api.liveCount() != before) {
			t.Errorf("secretName %s (planted %v): %v; want accepted %v, and no token when refused", c.name, c.planted, err, c.ok)
		}
	}
}

// disableFailsOnce is a vault whose first Disable fails (throttled).
type disableFailsOnce struct {
	*fakeVault
	failed bool
}

func (v *disableFailsOnce) Disable(ctx context.Context, st StoredToken) error {
	if !v.failed {
		v.failed = true
		return &Error{Code: CodeUpstreamUnavailable, RetryAfter: time.Second, Message: "Key Vault throttled"}
	}
	return v.fakeVault.Disable(ctx, st)
}

// A token revoked outside the service has its version disabled by the
// sweep; when that disable fails, the ledger still says live, so the next
// sweep tries again instead of leaving the version on for good.
func TestSweepRetriesAFailedDisable(t *testing.T) {
	t.Parallel()
	api, fv := newFakeAPI(fixedNow), newFakeVault()
	vault := &disableFailsOnce{fakeVault: fv}
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
	res, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: 48 * time.Hour, SecretName: "etl", RequestID: "r1"}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.DeleteToken(t.Context(), Workspace{ID: testWS}, res.Record.TokenID); err != nil { // the Databricks UI
		t.Fatal(err)
	}
	for run := range 2 {
		if _, err := svc.Sweep(t.Context(), SweepOptions{RotateBefore: 168 * time.Hour}); err != nil {
			t.Fatalf("sweep %d: %v", run, err)
		}
	}
	if v := fv.secrets["etl"][0]; v.Enabled {
		t.Errorf("after two sweeps the version of the revoked token %s is still enabled", v.TokenID)
	}
}
