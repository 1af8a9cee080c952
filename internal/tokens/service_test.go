package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is an in-memory Token API for one identity.
type fakeAPI struct {
	mu      sync.Mutex
	now     func() time.Time
	next    int
	live    map[string]Token
	calls   map[string]int
	dropped int // the next N creates succeed, then report an ambiguous failure
	policy  WorkspacePolicy
	quota   int // 0: no quota
	// broken tokens fail VerifyToken with this error.
	broken    map[string]bool
	verifyErr error
	breakNext int // the next N tokens created fail VerifyToken
}

func newFakeAPI(now func() time.Time) *fakeAPI {
	return &fakeAPI{now: now, live: map[string]Token{}, calls: map[string]int{}, policy: WorkspacePolicy{TokensEnabled: true}}
}

func (f *fakeAPI) CreateToken(_ context.Context, _ Workspace, comment string, lifetime time.Duration, scopes Scopes) (Issued, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["create"]++
	if f.quota > 0 && len(f.live) >= f.quota {
		return Issued{}, &Error{Code: CodeTokenQuotaExceeded, Message: "quota"}
	}
	f.next++
	t := Token{ID: fmt.Sprintf("tok%03d", f.next), Comment: comment, CreatedAt: f.now().Add(time.Duration(f.next) * time.Millisecond), ExpiresAt: f.now().Add(lifetime), Scopes: scopes}
	f.live[t.ID] = t
	if f.breakNext > 0 {
		f.breakNext--
		if f.broken == nil {
			f.broken = map[string]bool{}
		}
		f.broken[t.ID] = true
	}
	if f.dropped > 0 {
		f.dropped--
		return Issued{}, &Error{Code: CodeUpstreamUnavailable, Err: ErrAmbiguous}
	}
	return Issued{Token: t, Value: NewSecret("dapi-" + t.ID)}, nil
}

func (f *fakeAPI) ListTokens(context.Context, Workspace) ([]Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["list"]++
	var out []Token
	for _, t := range f.live {
		out = append(out, t)
	}
	return out, nil
}

func (f *fakeAPI) DeleteToken(_ context.Context, _ Workspace, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["delete"]++
	_, ok := f.live[id]
	delete(f.live, id)
	return ok, nil
}

func (f *fakeAPI) VerifyToken(_ context.Context, _ Workspace, v Secret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["verify"]++
	id := strings.TrimPrefix(v.Reveal(), "dapi-")
	if _, live := f.live[id]; !live || f.broken[id] {
		if f.verifyErr != nil {
			return f.verifyErr
		}
		return &Error{Code: CodeUpstreamError, Message: "Invalid access token."}
	}
	return nil
}

func (f *fakeAPI) Policy(context.Context, Workspace) (WorkspacePolicy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["policy"]++
	return f.policy, nil
}

func (f *fakeAPI) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeAPI) liveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

type fakeResolver struct{}

func (fakeResolver) Resolve(_ context.Context, id WorkspaceID) (Workspace, error) {
	return Workspace{ID: id, URL: "https://adb-1.1.azuredatabricks.net"}, nil
}

var testWS = WorkspaceID{"00000000-0000-0000-0000-000000000000", "rg", "ws1"}

func fixedNow() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) }

func TestCreateIssuesWithMarkerAndKeepsCallerComment(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	res, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Comment: "nightly", Lifetime: time.Hour, RequestID: "r1"}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Issued || res.Record.Comment != "nightly" || res.Record.Value.Reveal() != "dapi-tok001" {
		t.Errorf("record = %+v", res.Record)
	}
	if got := api.live["tok001"].Comment; got != "[dtb:req:r1] nightly" {
		t.Errorf("Databricks comment = %q", got)
	}
	if n := api.count("list"); n != 0 {
		t.Errorf("a generated request id cannot repeat, yet the service listed %d times", n)
	}
}

func TestSameRequestIDReturnsTheSameToken(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	req := CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r1", RequestIDGiven: true}
	shared := newFakeLedger()
	first, err := newTestService(Deps{Resolver: fakeResolver{}, API: api, Ledger: shared, Now: fixedNow}).Create(t.Context(), nil, req, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A new instance (another worker, or after a restart) finds it in the
	// shared ledger, without asking Databricks.
	again, err := newTestService(Deps{Resolver: fakeResolver{}, API: api, Ledger: shared, Now: fixedNow}).Create(t.Context(), nil, req, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Issued || again.Record.TokenID != first.Record.TokenID || !again.Record.Value.IsZero() {
		t.Errorf("replay = %+v, want the first token's record without a value", again)
	}
	if api.liveCount() != 1 || api.count("create") != 1 || api.count("list") != 0 {
		t.Errorf("live = %d, creates = %d, lists = %d; want 1, 1 and 0", api.liveCount(), api.count("create"), api.count("list"))
	}
}

func TestConcurrentSameRequestIDMakesOneToken(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	req := CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "same", RequestIDGiven: true}
	var wg sync.WaitGroup
	var mu sync.Mutex
	issued, ids := 0, map[string]bool{}
	for range 16 {
		wg.Go(func() {
			res, err := svc.Create(context.Background(), nil, req, CreateOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[res.Record.TokenID] = true
			if res.Issued {
				issued++
			}
		})
	}
	wg.Wait()
	if issued != 1 || len(ids) != 1 || api.liveCount() != 1 {
		t.Errorf("issued = %d, distinct ids = %d, live = %d; want 1, 1, 1", issued, len(ids), api.liveCount())
	}
}

func TestAmbiguousCreateLeavesNoOrphan(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	api.dropped = 1
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	res, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r1"}, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if api.liveCount() != 1 || res.Record.TokenID != "tok002" {
		t.Errorf("live = %d, token = %s; want only the second create alive", api.liveCount(), res.Record.TokenID)
	}
	if _, ok := api.live["tok001"]; ok {
		t.Error("the token whose value was lost is still live")
	}
}

func TestAmbiguousTwiceGivesUpCleanly(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	api.dropped = 2
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	_, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r1"}, CreateOptions{})
	if CodeOf(err) != CodeUpstreamUnavailable {
		t.Fatalf("err = %v, want UpstreamUnavailable", err)
	}
	if api.liveCount() != 0 {
		t.Errorf("%d orphan tokens left", api.liveCount())
	}
}

func TestRedeliveryReissuesUndeliveredToken(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	req := CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "m1", RequestIDGiven: true}
	first, _ := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow}).Create(t.Context(), nil, req, CreateOptions{})
	// The first attempt died before delivering; its redelivery runs on a fresh process.
	res, err := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow}).Create(t.Context(), nil, req, CreateOptions{ReissueUndelivered: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Issued || res.Record.TokenID == first.Record.TokenID || res.Record.Value.IsZero() {
		t.Errorf("redelivery = %+v, want a new token with its value", res)
	}
	if len(res.Revoked) != 1 || res.Revoked[0] != first.Record.TokenID || api.liveCount() != 1 {
		t.Errorf("revoked = %v, live = %d; want the first token revoked and one live", res.Revoked, api.liveCount())
	}
}

func TestEnsureLive(t *testing.T) {
	t.Parallel()
	now := fixedNow()
	clock := func() time.Time { return now }
	api := newFakeAPI(clock)
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: clock})
	opts := EnsureOptions{RequestID: "evt-1", Lifetime: 30 * 24 * time.Hour, RotateBefore: 7 * 24 * time.Hour}
	res, err := svc.EnsureLive(t.Context(), nil, testWS, opts)
	if err != nil || !res.Issued {
		t.Fatalf("first event: %+v %v, want a token", res, err)
	}
	opts.RequestID = "evt-2"
	if res, err := svc.EnsureLive(t.Context(), nil, testWS, opts); err != nil || res.Issued {
		t.Fatalf("second event: %+v %v, want nothing (a live token is held)", res, err)
	}
	// Manual tokens do not count: only the service's event tokens do.
	now = now.Add(24*24*time.Hour + time.Minute) // inside the rotation window
	opts.RequestID = "evt-3"
	res, err = svc.EnsureLive(t.Context(), nil, testWS, opts)
	if err != nil || !res.Issued {
		t.Fatalf("event inside the rotation window: %+v %v, want a new token", res, err)
	}
	if api.count("create") != 2 {
		t.Errorf("creates = %d, want 2", api.count("create"))
	}
}

func TestAsErrorTranslatesUnknowns(t *testing.T) {
	t.Parallel()
	if got := AsError(context.DeadlineExceeded); got.Code != CodeUpstreamUnavailable || got.RetryAfter <= 0 {
		t.Errorf("deadline = %+v", got)
	}
	if got := AsError(errors.New("boom")); got.Code != CodeInternal || got.Message != "internal error" {
		t.Errorf("unknown = %+v", got)
	}
	if !CodeUpstreamUnavailable.Transient() || CodeInvalidRequest.Transient() || CodeTokenQuotaExceeded.Transient() {
		t.Error("Transient classification is wrong")
	}
}

func TestQuotaMakesRoomFromSupersededEventTokens(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	api.quota = 3
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	// Two event tokens (the older one superseded) and one manual token fill the quota.
	for _, c := range []string{"[dtb:evt:e1]", "[dtb:evt:e2]", "someone's manual token"} {
		if _, err := api.CreateToken(t.Context(), Workspace{}, c, time.Hour, Scopes{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r1"}, CreateOptions{})
	if err != nil {
		t.Fatalf("create at quota: %v", err)
	}
	if len(res.Revoked) != 1 || res.Revoked[0] != "tok001" {
		t.Errorf("revoked %v; want only the superseded event token tok001", res.Revoked)
	}
	// Now nothing of ours is superseded: the quota error stands.
	if _, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r2"}, CreateOptions{}); CodeOf(err) != CodeTokenQuotaExceeded {
		t.Errorf("err = %v; want TokenQuotaExceeded", err)
	}
	if _, ok := api.live["tok003"]; !ok {
		t.Error("a token the service did not issue was revoked")
	}
}

func TestLifetimeCheckedAgainstWorkspacePolicy(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	api.policy = WorkspacePolicy{TokensEnabled: true, MaxLifetime: 7 * 24 * time.Hour}
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	_, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: 8 * 24 * time.Hour, RequestID: "r1"}, CreateOptions{})
	if e := AsError(err); e == nil || e.Code != CodeInvalidRequest || e.Target != "lifetimeSeconds" {
		t.Fatalf("err = %v", err)
	}
	if api.count("create") != 0 {
		t.Error("a create was sent anyway")
	}
	for range 3 {
		if _, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: 2 * 24 * time.Hour, RequestID: fmt.Sprint(time.Now().UnixNano())}, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := api.count("policy"); n != 1 {
		t.Errorf("workspace settings read %d times; want 1 (cached)", n)
	}
	// Tokens of a day or less never need the settings.
	api2 := newFakeAPI(fixedNow)
	if _, err := newTestService(Deps{Resolver: fakeResolver{}, API: api2, Now: fixedNow}).Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "x"}, CreateOptions{}); err != nil || api2.count("policy") != 0 {
		t.Errorf("short token: err %v, settings reads %d", err, api2.count("policy"))
	}
	api.policy.TokensEnabled = false
	svc3 := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	if _, err := svc3.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: 2 * 24 * time.Hour, RequestID: "y"}, CreateOptions{}); CodeOf(err) != CodeUpstreamError {
		t.Errorf("tokens disabled: %v", err)
	}
}

func TestRevokedTokenIsNotAnsweredForItsRequestID(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(fixedNow)
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Now: fixedNow})
	req := CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r1", RequestIDGiven: true}
	first, _ := svc.Create(t.Context(), nil, req, CreateOptions{})
	if _, err := svc.Revoke(t.Context(), nil, RevokeRequest{Workspace: testWS, TokenID: first.Record.TokenID}); err != nil {
		t.Fatal(err)
	}
	again, err := svc.Create(t.Context(), nil, req, CreateOptions{})
	if err != nil || !again.Issued || again.Record.TokenID == first.Record.TokenID {
		t.Errorf("after revoking, the same request id answered %+v %v; want a new token", again, err)
	}
}

// A token whose record Key Vault could not hold is never created: the
// vault is asked first.
func TestCreateChecksTheVaultCanRecordTheTokenFirst(t *testing.T) {
	t.Parallel()
	api, vault := newFakeAPI(fixedNow), newFakeVault()
	vault.fits = FieldError(CodeInvalidRequest, "scopes", "too many tags")
	svc := newTestService(Deps{Resolver: fakeResolver{}, API: api, Vault: vault, Now: fixedNow})
	_, err := svc.Create(t.Context(), nil, CreateRequest{Workspace: testWS, Lifetime: time.Hour, RequestID: "r1",
		Scopes: Scopes{List: []string{"sql:read"}}}, CreateOptions{})
	if CodeOf(err) != CodeInvalidRequest || api.count("create") != 0 {
		t.Errorf("err %v, %d creates; want InvalidRequest and none", err, api.count("create"))
	}
}
