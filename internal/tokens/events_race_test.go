package tokens

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookVault runs onPut before each write: a write that takes long enough
// for another instance to act meanwhile.
type hookVault struct {
	*fakeVault
	mu    sync.Mutex
	onPut func(name string, st StoredToken)
}

func (h *hookVault) Put(ctx context.Context, name string, v Secret, st StoredToken) (string, error) {
	h.mu.Lock()
	f := h.onPut
	h.onPut = nil // once
	h.mu.Unlock()
	if f != nil {
		f(name, st)
	}
	return h.fakeVault.Put(ctx, name, v, st)
}

func (f *fakeAPI) isLive(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.live[id]
	return ok
}

// twoInstances are two services (a and b) over one workspace, one vault
// (whose writes can be hooked) and one ledger, as two instances of the app.
func twoInstances() (api *fakeAPI, fv *fakeVault, vault *hookVault, a, b *Service) {
	api, fv, led := newFakeAPI(fixedNow), newFakeVault(), newFakeLedger()
	vault = &hookVault{fakeVault: fv}
	d := Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Ledger: led, Now: fixedNow}
	return api, fv, vault, newTestService(d), newTestService(d)
}

// A workspace event on one instance while another's rotation of the event
// token writes its successor: the event must not take the successor, made
// but not yet stored, for a crash's orphan. Before, it revoked it, and the
// rotation's write then made a dead token the secret's latest version.
func TestEventLeavesARotationsSuccessorInFlightAlone(t *testing.T) {
	t.Parallel()
	api, fv, vault, a, b := twoInstances()
	name := DefaultSecretName(testWS)
	api.now = func() time.Time { return fixedNow().Add(-25 * 24 * time.Hour) }
	plant(t, api, fv, name, OriginQueue, MarkerEvent, 30*24*time.Hour) // 5 days left: inside the 7-day window
	api.now = fixedNow
	var evErr error
	vault.onPut = func(_ string, st StoredToken) {
		if strings.HasPrefix(st.RequestID, "rot-") {
			_, evErr = b.EnsureLive(context.Background(), nil, testWS, EnsureOptions{RequestID: "evt-1", Lifetime: 720 * time.Hour, RotateBefore: 168 * time.Hour})
		}
	}
	out, err := a.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour})
	if err != nil || evErr != nil || len(out) != 1 || out[0].Type != Rotated {
		t.Fatalf("rotate: %v %+v; event: %v", err, out, evErr)
	}
	latest := fv.secrets[name][0]
	if latest.TokenID != out[0].TokenID || !latest.Enabled || !api.isLive(latest.TokenID) {
		t.Errorf("latest version holds %s (enabled %v, live %v); want the rotation's live successor %s", latest.TokenID, latest.Enabled, api.isLive(latest.TokenID), out[0].TokenID)
	}
	if n := api.liveCount(); n != 2 {
		t.Errorf("%d live tokens; want 2 (the predecessor until it expires, its successor): the event issued nothing", n)
	}
}

// An event token held in the workspace's secret of the earlier naming
// (databricks-<name>), whose versions keep being rotated where they are,
// is the workspace's event token: an event leaves it alone.
func TestEventFindsItsTokenInTheEarlierDefaultSecret(t *testing.T) {
	t.Parallel()
	api, fv := newFakeAPI(fixedNow), newFakeVault()
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: fv, Now: fixedNow})
	held := plant(t, api, fv, "databricks-"+testWS.Name, OriginQueue, MarkerEvent, 30*24*time.Hour)
	res, err := svc.EnsureLive(t.Context(), nil, testWS, EnsureOptions{RequestID: "evt-2", Lifetime: 720 * time.Hour, RotateBefore: 168 * time.Hour})
	if err != nil || res.Issued || len(res.Revoked) != 0 || !api.isLive(held.ID) {
		t.Errorf("event: %v, issued %v, revoked %v, held token live %v; want nothing done", err, res.Issued, res.Revoked, api.isLive(held.ID))
	}
}

// A revoke of a secret's token that lands while its rotation writes the
// successor ends the secret: the successor is revoked too, and the
// secret's latest version is not left a fresh live token.
func TestRevokeDuringRotationEndsTheSecret(t *testing.T) {
	t.Parallel()
	api, fv, vault, a, b := twoInstances()
	api.now = func() time.Time { return fixedNow().Add(-25 * 24 * time.Hour) }
	old := plant(t, api, fv, "etl-token", OriginHTTP, MarkerRequest, 30*24*time.Hour)
	api.now = fixedNow
	var rv RevokeResult
	var rerr error
	vault.onPut = func(string, StoredToken) {
		rv, rerr = b.Revoke(context.Background(), nil, RevokeRequest{Workspace: testWS, TokenID: old.ID})
	}
	out, err := a.Rotate(t.Context(), RotateOptions{Before: 168 * time.Hour, DefaultLifetime: time.Hour})
	if err != nil || rerr != nil || rv.Status != StatusRevoked {
		t.Fatalf("rotate: %v; revoke: %+v %v", err, rv, rerr)
	}
	if len(out) != 1 || out[0].Type != Failed {
		t.Errorf("rotation outcomes %+v; want one Failed", out)
	}
	for _, v := range fv.secrets["etl-token"] {
		if v.Enabled || api.isLive(v.TokenID) {
			t.Errorf("version %s (token %s) enabled %v, live %v; want every version off and every token revoked", v.Version, v.TokenID, v.Enabled, api.isLive(v.TokenID))
		}
	}
}
