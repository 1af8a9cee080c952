package ledger_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// One behaviour suite, run against both implementations (memory_test.go,
// table_test.go): the in-memory ledger of a single instance must mean
// exactly what the table means.

// clock is a settable clock shared by a ledger and its test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// factory returns a fresh, empty ledger that reads time from c.
type factory func(t *testing.T, c *clock, retention time.Duration) ledger.Ledger

const sub = "6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f"

func workspace(t *testing.T, rg, name string) tokens.WorkspaceID {
	t.Helper()
	ws, err := tokens.ParseWorkspaceID("/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Databricks/workspaces/" + name)
	if err != nil {
		t.Fatalf("workspace %s/%s: %v", rg, name, err)
	}
	return ws
}

const lease = 30 * time.Second

func acquire(t *testing.T, l ledger.Ledger, k ledger.Key) ledger.Acquisition {
	t.Helper()
	a, err := l.Acquire(t.Context(), k, ledger.Terms{For: lease})
	if err != nil {
		t.Fatalf("Acquire(%q): %v", k.RequestID, err)
	}
	return a
}

func mustLease(t *testing.T, l ledger.Ledger, k ledger.Key) ledger.Lease {
	t.Helper()
	a := acquire(t, l, k)
	if a.Outcome != ledger.Leased {
		t.Fatalf("Acquire(%q) = %s, want leased", k.RequestID, a.Outcome)
	}
	return a.Lease
}

func token(id string, created time.Time, life time.Duration) ledger.Token {
	t := ledger.Token{TokenID: id, Comment: "comment of " + id, CreatedAt: created, RequestedBy: "00000000-0000-0000-0000-0000000000aa"}
	if life > 0 {
		t.ExpiresAt = created.Add(life)
	}
	return t
}

// issue records a token for k as a whole create would: acquire, complete.
func issue(t *testing.T, l ledger.Ledger, k ledger.Key, tok ledger.Token) ledger.Row {
	t.Helper()
	row, err := l.Complete(t.Context(), mustLease(t, l, k), tok)
	if err != nil {
		t.Fatalf("Complete(%q): %v", k.RequestID, err)
	}
	return row
}

func runSuite(t *testing.T, newLedger factory) {
	tests := []struct {
		name string
		run  func(t *testing.T, l ledger.Ledger, c *clock)
	}{
		{"first caller leases, completes, and the next finds the record", testLifecycle},
		{"concurrent first calls: one lease, the others wait", testRace},
		{"a lease whose holder died is taken over; the dead holder's Complete is refused", testTakeover},
		{"a redelivery takes over its own earlier attempt's lease at once, never another's", testResume},
		{"release gives the request id back", testRelease},
		{"a revoked or expired token's request id issues a new one", testReissue},
		{"status marks: rotated, revoked, expired; final states stay", testMarkStatus},
		{"odd request ids and workspaces round-trip and never collide", testOddKeys},
		{"inventory: newest first across workspaces, paged", testInventoryOrder},
		{"inventory filters", testInventoryFilters},
		{"inventory rejects bad filters", testInventoryInvalid},
		{"purge after the retention", testPurge},
		{"a periodic job is due once per period, to one of the racers", testDue},
		{"a key is bound to its first binder, for every racer", testBind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newClock()
			tt.run(t, newLedger(t, c, 24*time.Hour), c)
		})
	}
}

func testLifecycle(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "req-1"}
	if _, ok, err := l.Get(ctx, k); err != nil || ok {
		t.Fatalf("Get before anything: ok=%v err=%v", ok, err)
	}
	lz := mustLease(t, l, k)
	if lz.TakenOver || lz.Owner == "" || !lz.Until.Equal(c.Now().Add(lease)) {
		t.Errorf("lease = %+v", lz)
	}
	got, ok, err := l.Get(ctx, k)
	if err != nil || !ok || got.Status != ledger.StatusPending || got.LeaseOwner != lz.Owner || got.TokenID != "" {
		t.Fatalf("Get while pending = %+v, %v, %v", got, ok, err)
	}
	busy := acquire(t, l, k)
	if busy.Outcome != ledger.Busy || !busy.Row.LeaseUntil.Equal(lz.Until) {
		t.Fatalf("Acquire while leased = %s until %s, want busy until %s", busy.Outcome, busy.Row.LeaseUntil, lz.Until)
	}
	page, err := l.Query(ctx, ledger.Filter{})
	if err != nil || len(page.Rows) != 0 {
		t.Fatalf("a pending record is in the inventory: %+v, %v", page.Rows, err)
	}

	tok := ledger.Token{TokenID: "tok-1", SecretURI: "https://kv.vault.azure.net/secrets/s/1", Comment: "nightly ETL",
		Scopes: []string{"sql:read", "unity-catalog"}, RequestedBy: "11111111-2222-3333-4444-555555555555",
		CreatedAt: c.Now().Add(123456 * time.Microsecond), ExpiresAt: c.Now().Add(24 * time.Hour)}
	c.Advance(time.Second)
	row, err := l.Complete(ctx, lz, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Row{Key: k, Token: tok, Status: ledger.StatusLive, StatusChangedAt: c.Now()}
	want.CreatedAt = want.CreatedAt.Truncate(time.Millisecond) // the precision both stores keep
	if d := cmp.Diff(want, row); d != "" {
		t.Errorf("Complete (-want +got):\n%s", d)
	}
	if got, _, _ := l.Get(ctx, k); !cmp.Equal(want, got) {
		t.Errorf("Get after Complete (-want +got):\n%s", cmp.Diff(want, got))
	}
	rec := acquire(t, l, k)
	if rec.Outcome != ledger.Recorded || !cmp.Equal(want, rec.Row) {
		t.Errorf("Acquire after Complete = %s %+v, want recorded", rec.Outcome, rec.Row)
	}
	// A repeated Complete of the same token (a retry whose first try
	// landed) succeeds and changes nothing.
	if again, err := l.Complete(ctx, lz, tok); err != nil || again.TokenID != tok.TokenID {
		t.Errorf("repeated Complete = %+v, %v", again, err)
	}
	// Once recorded, the lease is spent: Release is refused.
	if err := l.Release(ctx, lz); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Release after Complete = %v, want ErrLeaseLost", err)
	}
	page, err = l.Query(ctx, ledger.Filter{})
	if err != nil || len(page.Rows) != 1 || !cmp.Equal(want, page.Rows[0]) || page.ContinuationToken != "" {
		t.Errorf("inventory = %+v, %q, %v", page.Rows, page.ContinuationToken, err)
	}
}

func testRace(t *testing.T, l ledger.Ledger, _ *clock) {
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "same-id"}
	const n = 8
	var wg sync.WaitGroup
	results := make([]ledger.Acquisition, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = l.Acquire(t.Context(), k, ledger.Terms{For: lease})
		})
	}
	close(start)
	wg.Wait()
	var leased, busy int
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Acquire %d: %v", i, errs[i])
		}
		switch results[i].Outcome {
		case ledger.Leased:
			leased++
		case ledger.Busy:
			busy++
		}
	}
	if leased != 1 || busy != n-1 {
		t.Fatalf("%d leased and %d busy of %d concurrent first calls, want 1 and %d", leased, busy, n, n-1)
	}
}

func testResume(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "killed"}
	msg := ledger.Terms{For: lease, Holder: "sb/token-requests/42"}
	dead, err := l.Acquire(ctx, k, msg)
	if err != nil || dead.Outcome != ledger.Leased {
		t.Fatalf("first delivery: %s, %v", dead.Outcome, err)
	}
	// Other holders, and callers without one, wait for the live lease:
	// another message with the same request id, a holder whose name merely
	// starts the same, an HTTP repeat.
	for _, other := range []ledger.Terms{{For: lease, Holder: "sb/token-requests/43"}, {For: lease, Holder: "sb/token-requests/4"}, {For: lease}} {
		if a, err := l.Acquire(ctx, k, other); err != nil || a.Outcome != ledger.Busy {
			t.Fatalf("holder %q during the lease: %s, %v; want busy", other.Holder, a.Outcome, err)
		}
	}
	// The same message, redelivered after its handler died, resumes now.
	again, err := l.Acquire(ctx, k, msg)
	if err != nil || again.Outcome != ledger.Leased || !again.Lease.TakenOver || again.Lease.Owner == dead.Lease.Owner {
		t.Fatalf("redelivery: %s %+v, %v; want the lease taken over", again.Outcome, again.Lease, err)
	}
	if _, err := l.Complete(ctx, dead.Lease, token("tok-dead", c.Now(), time.Hour)); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Fatalf("Complete by the earlier attempt = %v, want ErrLeaseLost", err)
	}
	if _, err := l.Complete(ctx, again.Lease, token("tok-new", c.Now(), time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Once recorded, the holder answers from the record like anyone.
	if a, err := l.Acquire(ctx, k, msg); err != nil || a.Outcome != ledger.Recorded || a.Row.TokenID != "tok-new" {
		t.Fatalf("after the record: %s %+v, %v", a.Outcome, a.Row, err)
	}
}

func testTakeover(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "crashy"}
	dead := mustLease(t, l, k)
	c.Advance(lease - time.Second)
	if a := acquire(t, l, k); a.Outcome != ledger.Busy {
		t.Fatalf("before the lease ran out: %s, want busy", a.Outcome)
	}
	c.Advance(2 * time.Second)
	a := acquire(t, l, k)
	if a.Outcome != ledger.Leased || !a.Lease.TakenOver || a.Lease.Owner == dead.Owner {
		t.Fatalf("after the lease ran out: %s %+v, want a lease taken over", a.Outcome, a.Lease)
	}
	// The dead holder wakes up with a token it created: its final write
	// meets a newer ETag and records nothing.
	if _, err := l.Complete(ctx, dead, token("tok-dead", c.Now(), time.Hour)); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Fatalf("Complete with the lost lease = %v, want ErrLeaseLost", err)
	}
	if err := l.Release(ctx, dead); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Fatalf("Release of the lost lease = %v, want ErrLeaseLost", err)
	}
	if _, err := l.Complete(ctx, a.Lease, token("tok-new", c.Now(), time.Hour)); err != nil {
		t.Fatal(err)
	}
	// One live token, one consistent row, everywhere.
	got, _, _ := l.Get(ctx, k)
	page, err := l.Query(ctx, ledger.Filter{})
	if err != nil || got.TokenID != "tok-new" || got.Status != ledger.StatusLive || len(page.Rows) != 1 || page.Rows[0].TokenID != "tok-new" {
		t.Fatalf("after the takeover: record %+v, inventory %+v, %v", got, page.Rows, err)
	}
	// A taken-over lease that lapses again is taken over again.
	k2 := ledger.Key{Workspace: k.Workspace, RequestID: "crashy-2"}
	mustLease(t, l, k2)
	c.Advance(lease + time.Second)
	first := acquire(t, l, k2)
	c.Advance(lease + time.Second)
	second := acquire(t, l, k2)
	if !first.Lease.TakenOver || !second.Lease.TakenOver || second.Lease.Owner == first.Lease.Owner {
		t.Fatalf("second takeover: %+v then %+v", first.Lease, second.Lease)
	}
	if _, err := l.Complete(ctx, first.Lease, token("tok-x", c.Now(), time.Hour)); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("Complete of the first takeover's lease = %v, want ErrLeaseLost", err)
	}
}

func testRelease(t *testing.T, l ledger.Ledger, _ *clock) {
	ctx := t.Context()
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "failed-create"}
	lz := mustLease(t, l, k)
	if err := l.Release(ctx, lz); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.Get(ctx, k); err != nil || ok {
		t.Fatalf("Get after releasing a first issue: ok=%v err=%v, want no record", ok, err)
	}
	if err := l.Release(ctx, lz); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("second Release = %v, want ErrLeaseLost", err)
	}
	if a := acquire(t, l, k); a.Outcome != ledger.Leased || a.Lease.TakenOver {
		t.Errorf("Acquire after Release = %s %+v, want a fresh lease", a.Outcome, a.Lease)
	}
}

func testReissue(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	ws := workspace(t, "rg-a", "dbw-a")
	k := ledger.Key{Workspace: ws, RequestID: "reused"}
	issue(t, l, k, token("tok-1", c.Now(), time.Hour))
	if _, ok, err := l.MarkStatus(ctx, ws, "tok-1", ledger.StatusRevoked); err != nil || !ok {
		t.Fatalf("MarkStatus: ok=%v err=%v", ok, err)
	}
	c.Advance(time.Minute)
	a := acquire(t, l, k)
	if a.Outcome != ledger.Leased || a.Row.TokenID != "tok-1" || a.Row.Status != ledger.StatusRevoked || a.Lease.TakenOver {
		t.Fatalf("Acquire over a revoked token = %s, row %+v", a.Outcome, a.Row)
	}
	// While the new token is being made, the inventory still shows the old.
	page, _ := l.Query(ctx, ledger.Filter{})
	if len(page.Rows) != 1 || page.Rows[0].TokenID != "tok-1" || page.Rows[0].Status != ledger.StatusRevoked {
		t.Fatalf("inventory during the reissue = %+v", page.Rows)
	}
	// Marking the old token now changes nothing and costs no lease.
	if row, ok, err := l.MarkStatus(ctx, ws, "tok-1", ledger.StatusRevoked); err != nil || !ok || row.Status != ledger.StatusPending {
		t.Fatalf("MarkStatus during the reissue = %+v, %v, %v", row, ok, err)
	}
	// Releasing the reissue restores the revoked record.
	if err := l.Release(ctx, a.Lease); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := l.Get(ctx, k); got.Status != ledger.StatusRevoked || got.TokenID != "tok-1" || got.LeaseOwner != "" {
		t.Fatalf("after releasing the reissue: %+v", got)
	}
	issue(t, l, k, token("tok-2", c.Now(), time.Hour))
	page, _ = l.Query(ctx, ledger.Filter{})
	if len(page.Rows) != 1 || page.Rows[0].TokenID != "tok-2" || page.Rows[0].Status != ledger.StatusLive {
		t.Fatalf("inventory after the reissue = %+v, want only tok-2 (one row per request id)", page.Rows)
	}

	// Expiry needs no mark: past its expiry a token reads as expired, and
	// its request id issues anew.
	k2 := ledger.Key{Workspace: ws, RequestID: "short"}
	issue(t, l, k2, token("tok-s", c.Now(), time.Hour))
	c.Advance(time.Hour)
	if got, _, _ := l.Get(ctx, k2); got.Status != ledger.StatusExpired {
		t.Fatalf("status at expiry = %s, want expired", got.Status)
	}
	if a := acquire(t, l, k2); a.Outcome != ledger.Leased || a.Row.Status != ledger.StatusExpired {
		t.Fatalf("Acquire over an expired token = %s %+v", a.Outcome, a.Row)
	}
	// A token that never expires stays live.
	k3 := ledger.Key{Workspace: ws, RequestID: "forever"}
	issue(t, l, k3, token("tok-f", c.Now(), 0))
	c.Advance(100 * 365 * 24 * time.Hour)
	if got, _, _ := l.Get(ctx, k3); got.Status != ledger.StatusLive || !got.ExpiresAt.IsZero() {
		t.Fatalf("never-expiring token after a century: %+v", got)
	}
}

func testMarkStatus(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	ws := workspace(t, "rg-a", "dbw-a")
	issue(t, l, ledger.Key{Workspace: ws, RequestID: "r1"}, token("tok-1", c.Now(), 2*time.Hour))
	c.Advance(time.Minute)
	steps := []struct {
		to, want ledger.Status
	}{
		{ledger.StatusRotated, ledger.StatusRotated},
		{ledger.StatusRotated, ledger.StatusRotated},
		{ledger.StatusRevoked, ledger.StatusRevoked},
		{ledger.StatusRotated, ledger.StatusRevoked}, // revoked is final
		{ledger.StatusExpired, ledger.StatusRevoked},
	}
	for _, s := range steps {
		row, ok, err := l.MarkStatus(ctx, ws, "tok-1", s.to)
		if err != nil || !ok || row.Status != s.want {
			t.Fatalf("mark %s: %s, %v, %v; want %s", s.to, row.Status, ok, err, s.want)
		}
	}
	if got, _, _ := l.Get(ctx, ledger.Key{Workspace: ws, RequestID: "r1"}); got.Status != ledger.StatusRevoked || !got.StatusChangedAt.Equal(c.Now()) {
		t.Errorf("record after the marks: %+v", got)
	}
	if _, ok, err := l.MarkStatus(ctx, ws, "no-such-token", ledger.StatusRevoked); err != nil || ok {
		t.Errorf("mark of an unknown token: ok=%v err=%v", ok, err)
	}
	other := workspace(t, "rg-b", "dbw-b")
	if _, ok, err := l.MarkStatus(ctx, other, "tok-1", ledger.StatusRevoked); err != nil || ok {
		t.Errorf("mark of a token of another workspace: ok=%v err=%v", ok, err)
	}
	if _, _, err := l.MarkStatus(ctx, ws, "tok-1", ledger.StatusLive); tokens.CodeOf(err) != tokens.CodeInternal {
		t.Errorf("mark back to live: %v, want a programming error", err)
	}
	// A mark never steals a lease: one held on another record completes.
	k := ledger.Key{Workspace: ws, RequestID: "r2"}
	lz := mustLease(t, l, k)
	if _, _, err := l.MarkStatus(ctx, ws, "tok-1", ledger.StatusExpired); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Complete(ctx, lz, token("tok-2", c.Now(), time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// Request ids the contract allows, and some it does not (the ledger must
// not trust validation to keep its keys well-formed).
func oddRequestIDs() []string {
	allowed := "AZaz09._:-"
	long := strings.Repeat(allowed, 13)[:128]
	return []string{
		long,
		strings.Repeat("x", 128),
		"a/b\\c#d?e",
		"it's",
		"tab\there\nnewline",
		"ctl\x01\x1f\x7f\u0085",
		"ünïcödé-ИД-名前",
		"%2F",
		"a%2Fb",
		"~tilde",
		"~" + strings.Repeat("0", 64),
		"r~x",
		"t~0000000000000~x",
		strings.Repeat("long/", 400),
		strings.Repeat("long/", 400) + "!",
		"UPPER",
		"upper",
	}
}

func testOddKeys(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	workspaces := []tokens.WorkspaceID{
		workspace(t, "rg-a", "dbw-a"),
		workspace(t, "RG.(odd)_name-1", "dbw_under-score"),
		workspace(t, "rg-ünïcödé", "dbw-x"),
		workspace(t, strings.Repeat("g", 90), strings.Repeat("w", 64)),
	}
	var keys []ledger.Key
	for _, ws := range workspaces {
		for _, id := range oddRequestIDs() {
			keys = append(keys, ledger.Key{Workspace: ws, RequestID: id})
		}
	}
	for i, k := range keys {
		issue(t, l, k, token(fmt.Sprintf("tok-%03d", i), c.Now().Add(time.Duration(i)*time.Millisecond), time.Hour))
	}
	for i, k := range keys {
		got, ok, err := l.Get(ctx, k)
		if err != nil || !ok || got.Key.RequestID != k.RequestID || !got.Workspace.Equal(k.Workspace) || got.TokenID != fmt.Sprintf("tok-%03d", i) {
			t.Errorf("Get(%q in %s) = %+v, %v, %v", k.RequestID, k.Workspace, got.Key, ok, err)
		}
	}
	// The same workspace spelled in other case is the same record.
	upper, _ := tokens.ParseWorkspaceID(strings.ToUpper(workspaces[0].String()))
	if got, ok, _ := l.Get(ctx, ledger.Key{Workspace: upper, RequestID: "UPPER"}); !ok || got.TokenID == "" {
		t.Errorf("the workspace in upper case does not find its record")
	}
	// Every record is in the inventory once.
	seen := map[string]bool{}
	for f := (ledger.Filter{Top: ledger.MaxTop}); ; {
		page, err := l.Query(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Rows {
			if seen[r.TokenID] {
				t.Errorf("%s listed twice", r.TokenID)
			}
			seen[r.TokenID] = true
		}
		if page.ContinuationToken == "" {
			break
		}
		f.ContinuationToken = page.ContinuationToken
	}
	if len(seen) != len(keys) {
		t.Errorf("inventory lists %d records, want %d", len(seen), len(keys))
	}
	for _, ws := range workspaces {
		page, err := l.Query(ctx, ledger.Filter{Workspace: ws, Top: ledger.MaxTop})
		if err != nil || len(page.Rows) != len(oddRequestIDs()) {
			t.Errorf("inventory of %s: %d rows, %v; want %d", ws, len(page.Rows), err, len(oddRequestIDs()))
		}
	}
}

// inventory fills three workspaces with tokens of various ages, statuses
// and callers, newest last, and returns the keys newest first.
func inventory(t *testing.T, l ledger.Ledger, c *clock) (want []string, ws []tokens.WorkspaceID) {
	t.Helper()
	ctx := t.Context()
	ws = []tokens.WorkspaceID{workspace(t, "rg-a", "dbw-a"), workspace(t, "rg-b", "dbw-b"), workspace(t, "rg-c", "dbw-c")}
	base := c.Now().Add(-10 * time.Hour)
	for i := range 15 {
		w := ws[i%3]
		created := base.Add(time.Duration(i) * time.Minute)
		if i >= 12 {
			created = base.Add(12 * time.Minute) // three tokens of one millisecond, in three workspaces
		}
		tok := token(fmt.Sprintf("tok-%02d", i), created, time.Duration(i+1)*time.Hour)
		if i%4 == 0 {
			tok.RequestedBy = "ABCDEF00-0000-0000-0000-0000000000BB"
		}
		issue(t, l, ledger.Key{Workspace: w, RequestID: fmt.Sprintf("req-%02d", i)}, tok)
		want = append(want, tok.TokenID)
	}
	// tok-00..tok-08 expired already (lifetimes of 1-9 h, created 10 h ago
	// and later); revoke one live and rotate another.
	if _, ok, err := l.MarkStatus(ctx, ws[1], "tok-10", ledger.StatusRevoked); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok, err := l.MarkStatus(ctx, ws[2], "tok-11", ledger.StatusRotated); !ok || err != nil {
		t.Fatal(ok, err)
	}
	slices.Reverse(want)
	// The three of one millisecond sort by partition: rg-a, rg-b, rg-c.
	want[0], want[2] = want[2], want[0]
	return want, ws
}

func ids(rows []ledger.Row) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.TokenID)
	}
	return out
}

func testInventoryOrder(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	want, _ := inventory(t, l, c)
	all, err := l.Query(ctx, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(all.Rows); i++ {
		if all.Rows[i].CreatedAt.After(all.Rows[i-1].CreatedAt) {
			t.Errorf("row %d (%s) is newer than row %d", i, all.Rows[i].TokenID, i-1)
		}
	}
	got := ids(all.Rows)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
	for _, top := range []int{1, 2, 4, 5, 14, 15} {
		var paged []string
		f := ledger.Filter{Top: top}
		for pages := 0; ; pages++ {
			page, err := l.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Rows) > top || (page.ContinuationToken != "" && len(page.Rows) != top) {
				t.Fatalf("top %d: a page of %d rows, continuation %q", top, len(page.Rows), page.ContinuationToken)
			}
			paged = append(paged, ids(page.Rows)...)
			if page.ContinuationToken == "" {
				break
			}
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			f.ContinuationToken = page.ContinuationToken
		}
		if d := cmp.Diff(got, paged); d != "" {
			t.Errorf("top %d: pages together (-one page +paged):\n%s", top, d)
		}
	}
	// Tokens created after a page was read never shift the next page.
	first, _ := l.Query(ctx, ledger.Filter{Top: 5})
	issue(t, l, ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "late"}, token("tok-late", c.Now(), time.Hour))
	next, _ := l.Query(ctx, ledger.Filter{Top: 5, ContinuationToken: first.ContinuationToken})
	if d := cmp.Diff(got[5:10], ids(next.Rows)); d != "" {
		t.Errorf("second page after a new token (-want +got):\n%s", d)
	}
}

func testInventoryFilters(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	all, ws := inventory(t, l, c)
	keep := func(pred func(i int) bool) []string {
		var out []string
		for _, id := range all {
			var i int
			fmt.Sscanf(id, "tok-%d", &i)
			if pred(i) {
				out = append(out, id)
			}
		}
		return out
	}
	expired := func(i int) bool { return i <= 8 }
	tests := []struct {
		name string
		f    ledger.Filter
		want []string
	}{
		{"workspace", ledger.Filter{Workspace: ws[1]}, keep(func(i int) bool { return i%3 == 1 })},
		{"workspace in other case", ledger.Filter{Workspace: func() tokens.WorkspaceID {
			w, _ := tokens.ParseWorkspaceID(strings.ToUpper(ws[1].String()))
			return w
		}()}, keep(func(i int) bool { return i%3 == 1 })},
		{"live", ledger.Filter{Statuses: []ledger.Status{ledger.StatusLive}}, keep(func(i int) bool { return !expired(i) && i != 10 && i != 11 })},
		{"expired, read from expiry", ledger.Filter{Statuses: []ledger.Status{ledger.StatusExpired}}, keep(expired)},
		{"revoked or rotated", ledger.Filter{Statuses: []ledger.Status{ledger.StatusRevoked, ledger.StatusRotated}}, []string{"tok-11", "tok-10"}},
		// Token i expires (i+1-10) h and i min from now (12 min for i >= 12):
		// tok-09 in 9 min, tok-10 (revoked) in 1 h 10, tok-11 (rotated) in
		// 2 h 11, tok-12 in 3 h 12.
		{"expiring within 2h: still working only", ledger.Filter{ExpiringWithin: 2 * time.Hour}, []string{"tok-09"}},
		{"expiring within 3h: rotated ones too", ledger.Filter{ExpiringWithin: 3 * time.Hour}, []string{"tok-11", "tok-09"}},
		{"requested by, case-insensitive", ledger.Filter{RequestedBy: "abcdef00-0000-0000-0000-0000000000bb"}, keep(func(i int) bool { return i%4 == 0 })},
		{"allowed workspaces", ledger.Filter{Allow: func(w tokens.WorkspaceID) bool { return w.Name != "dbw-a" }}, keep(func(i int) bool { return i%3 != 0 })},
		{"workspace not allowed", ledger.Filter{Workspace: ws[0], Allow: func(w tokens.WorkspaceID) bool { return w.Name != "dbw-a" }}, nil},
		{"everything at once", ledger.Filter{Workspace: ws[0], Statuses: []ledger.Status{ledger.StatusLive, ledger.StatusExpired},
			RequestedBy: "ABCDEF00-0000-0000-0000-0000000000BB"}, keep(func(i int) bool { return i%3 == 0 && i%4 == 0 })},
	}
	for _, tt := range tests {
		var got []string
		f := tt.f
		f.Top = 2 // filters and paging together
		for {
			page, err := l.Query(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			got = append(got, ids(page.Rows)...)
			if page.ContinuationToken == "" {
				break
			}
			f.ContinuationToken = page.ContinuationToken
		}
		if d := cmp.Diff(tt.want, got, cmp.Transformer("sorted", func(s []string) []string {
			// Order is checked elsewhere; ties of one millisecond may fall
			// either way between the three workspaces.
			s = slices.Clone(s)
			slices.Sort(s)
			return s
		})); d != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, d)
		}
	}
}

func testInventoryInvalid(t *testing.T, l ledger.Ledger, _ *clock) {
	for _, f := range []ledger.Filter{
		{Top: -1}, {Top: ledger.MaxTop + 1},
		{Statuses: []ledger.Status{"pending"}}, {Statuses: []ledger.Status{"bogus"}},
		{ExpiringWithin: -time.Hour},
		{ContinuationToken: "not-a-token"},
		{ContinuationToken: "eyJpIjoiMTIzIn0"}, // {"i":"123"}
		{ContinuationToken: strings.Repeat("A", 4000)},
	} {
		_, err := l.Query(t.Context(), f)
		if e := tokens.AsError(err); err == nil || e.Code != tokens.CodeInvalidRequest || len(e.Details) == 0 {
			t.Errorf("Query(%+v) = %v, want InvalidRequest with a detail", f, err)
		}
	}
}

func testPurge(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	ws := workspace(t, "rg-a", "dbw-a")
	key := func(id string) ledger.Key { return ledger.Key{Workspace: ws, RequestID: id} }
	issue(t, l, key("revoked"), token("tok-r", c.Now(), 0))
	issue(t, l, key("expires"), token("tok-e", c.Now(), time.Hour))
	issue(t, l, key("live"), token("tok-l", c.Now(), 1000*time.Hour))
	issue(t, l, key("forever"), token("tok-f", c.Now(), 0))
	issue(t, l, key("rotated"), token("tok-o", c.Now(), 2*time.Hour))
	if _, _, err := l.MarkStatus(ctx, ws, "tok-r", ledger.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.MarkStatus(ctx, ws, "tok-o", ledger.StatusRotated); err != nil {
		t.Fatal(err)
	}
	dead := mustLease(t, l, key("stranded"))

	c.Advance(24*time.Hour - time.Second) // retention 24h: not yet
	rep, err := l.Purge(ctx)
	if err != nil || rep.Deleted != 0 {
		t.Fatalf("purge inside the retention: %+v, %v", rep, err)
	}
	if len(rep.Stranded) != 1 || rep.Stranded[0].RequestID != "stranded" || rep.Stranded[0].LeaseOwner != dead.Owner {
		t.Errorf("stranded = %+v, want the lapsed lease", rep.Stranded)
	}
	c.Advance(time.Hour + 2*time.Second) // revoked 24h ago, expired 24h ago, rotated token expired 23h ago
	rep, err = l.Purge(ctx)
	if err != nil || rep.Deleted != 2 {
		t.Fatalf("purge after the retention: %+v, %v; want 2 deleted", rep, err)
	}
	c.Advance(time.Hour)
	if rep, err = l.Purge(ctx); err != nil || rep.Deleted != 1 {
		t.Fatalf("purge an hour later: %+v, %v; want the rotated token", rep, err)
	}
	for id, want := range map[string]bool{"revoked": false, "expires": false, "rotated": false, "live": true, "forever": true, "stranded": true} {
		if _, ok, err := l.Get(ctx, key(id)); err != nil || ok != want {
			t.Errorf("after purging, record %s present=%v (err %v), want %v", id, ok, err, want)
		}
	}
	page, _ := l.Query(ctx, ledger.Filter{})
	if d := cmp.Diff([]string{"tok-l", "tok-f"}, ids(page.Rows), cmp.Transformer("sorted", func(s []string) []string {
		s = slices.Clone(s)
		slices.Sort(s)
		return s
	})); d != "" {
		t.Errorf("inventory after purging (-want +got):\n%s", d)
	}
	// A purged request id is free again.
	if a := acquire(t, l, key("revoked")); a.Outcome != ledger.Leased || a.Row.TokenID != "" {
		t.Errorf("Acquire of a purged id = %s %+v", a.Outcome, a.Row)
	}
}

func testDue(t *testing.T, l ledger.Ledger, c *clock) {
	ctx := t.Context()
	const every = 24 * time.Hour
	var wg sync.WaitGroup
	got := make([]bool, 4)
	for i := range got {
		wg.Go(func() {
			due, err := l.Due(ctx, "rotation-vault-scan", every)
			if err != nil {
				t.Errorf("Due: %v", err)
			}
			got[i] = due
		})
	}
	wg.Wait()
	if n := countTrue(got); n != 1 {
		t.Fatalf("first period: %d of 4 racers were told the job is due (%v); want 1", n, got)
	}
	c.Advance(every - time.Minute)
	if due, err := l.Due(ctx, "rotation-vault-scan", every); err != nil || due {
		t.Fatalf("within the period: %v, %v; want not due", due, err)
	}
	if due, err := l.Due(ctx, "another/job", every); err != nil || !due {
		t.Fatalf("another job: %v, %v; want due", due, err)
	}
	c.Advance(2 * time.Minute)
	if due, err := l.Due(ctx, "rotation-vault-scan", every); err != nil || !due {
		t.Fatalf("next period: %v, %v; want due", due, err)
	}
	// Jobs never show in the inventory.
	if page, err := l.Query(ctx, ledger.Filter{}); err != nil || len(page.Rows) != 0 {
		t.Fatalf("inventory after jobs: %+v, %v", page.Rows, err)
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func testBind(t *testing.T, l ledger.Ledger, _ *clock) {
	ctx := t.Context()
	var wg sync.WaitGroup
	got := make([]string, 6)
	for i := range got {
		wg.Go(func() {
			owner, err := l.Bind(ctx, "secret/etl-token", fmt.Sprintf("ws-%d", i%2))
			if err != nil {
				t.Errorf("Bind: %v", err)
			}
			got[i] = owner
		})
	}
	wg.Wait()
	for _, o := range got {
		if o != got[0] || o == "" {
			t.Fatalf("racers were told owners %v; want one owner for all", got)
		}
	}
	if owner, err := l.Bind(ctx, "secret/etl-token", "ws-late"); err != nil || owner != got[0] {
		t.Errorf("a later Bind = %q, %v; want %q", owner, err, got[0])
	}
	long := "secret/" + strings.Repeat("x", 2000) // past a row key's length: hashed
	if owner, err := l.Bind(ctx, long, "ws-9"); err != nil || owner != "ws-9" {
		t.Errorf("another key = %q, %v; want ws-9", owner, err)
	}
	if page, err := l.Query(ctx, ledger.Filter{}); err != nil || len(page.Rows) != 0 {
		t.Fatalf("inventory after binds: %+v, %v", page.Rows, err)
	}
}
