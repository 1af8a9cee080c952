package ledger

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Ledger is what the token service needs from the ledger. Both
// implementations ([Memory] and [Table]) behave the same; only Table is
// shared between instances. Errors other than [ErrLeaseLost] are
// *tokens.Error: UpstreamUnavailable (with RetryAfter) when the table
// throttles, fails or cannot be reached within the context's deadline;
// UpstreamError when it refuses (403: the identity lacks Storage Table Data
// Contributor); InvalidRequest for a bad [Filter].
type Ledger interface {
	// Acquire looks at the record of key and, unless a usable token is
	// recorded or someone else holds a live lease, takes a lease of
	// leaseFor on it. See [Acquisition] for the three outcomes. A lease is
	// taken over when its holder let it run out, and a new one is granted
	// over a record whose token was revoked or has expired (the request id
	// then issues a new token). A live lease is taken over too when it was
	// taken under the same [Terms.Holder]: see there.
	Acquire(ctx context.Context, key Key, terms Terms) (Acquisition, error)
	// Complete records the token the lease holder created and delivered,
	// as live, and ends the lease. ErrLeaseLost: the lease had run out and
	// someone else took it; nothing was recorded.
	Complete(ctx context.Context, lease Lease, t Token) (Row, error)
	// Release ends a lease without recording a token: the record returns
	// to what it was before Acquire (no record at all for a first issue).
	// ErrLeaseLost: the lease had already passed to someone else.
	Release(ctx context.Context, lease Lease) error
	// Get returns the record of key; ok is false when there is none.
	Get(ctx context.Context, key Key) (row Row, ok bool, err error)
	// MarkStatus records that the token tokenID of workspace ws was
	// rotated (superseded, still working until it expires), revoked or
	// found expired. ok is false when no record holds that token. Revoked
	// and expired are final: a later mark leaves them as they are. The
	// returned row shows the status after the call.
	MarkStatus(ctx context.Context, ws tokens.WorkspaceID, tokenID string, status Status) (row Row, ok bool, err error)
	// Query lists recorded tokens, newest first (by creation time), one
	// page at a time. Records whose first lease is still pending are not
	// listed: they hold no token yet.
	Query(ctx context.Context, f Filter) (Page, error)
	// Purge deletes the records of tokens revoked or expired longer ago
	// than the retention, and reports stranded leases.
	Purge(ctx context.Context) (PurgeReport, error)
	// Due reports whether the periodic job is due (it never ran, or last
	// ran longer than every ago) and, when it is, records now as its last
	// run: of callers racing for one period, one gets true.
	Due(ctx context.Context, job string, every time.Duration) (bool, error)
	// Bind records owner under key unless the key already has one, and
	// returns the owner it has: of callers racing to bind one key, all
	// are told the first one's owner.
	Bind(ctx context.Context, key, owner string) (string, error)
}

// ErrLeaseLost is returned by Complete and Release when the lease is no
// longer the caller's: it ran out and another instance took it over (an
// ETag mismatch, 412, on the final write). It is an expected outcome, never
// shown to a caller: the holder that lost it revokes the token it created,
// if any, and acquires again to learn what the new holder recorded.
var ErrLeaseLost = errors.New("ledger: the lease passed to another holder")

// Key identifies a record: one per workspace and request id.
type Key struct {
	Workspace tokens.WorkspaceID
	RequestID string
}

// Status is the state of a record's token.
type Status string

// Statuses. Pending is a record's state while a lease is held; the other
// four are the inventory's (contract section 6).
const (
	StatusPending Status = "pending"
	StatusLive    Status = "live"
	StatusRotated Status = "rotated"
	StatusRevoked Status = "revoked"
	StatusExpired Status = "expired"
)

// ParseStatus reads one of the inventory's statuses (live, rotated, revoked,
// expired), as the status query parameter gives it.
func ParseStatus(s string) (Status, bool) {
	switch st := Status(strings.ToLower(strings.TrimSpace(s))); st {
	case StatusLive, StatusRotated, StatusRevoked, StatusExpired:
		return st, true
	}
	return "", false
}

// Token is what Complete records about an issued token. Never its value.
type Token struct {
	TokenID   string
	SecretURI string   // Key Vault delivery only
	Comment   string   // the caller's, without the service's marker
	Scopes    []string // nil: unscoped
	// RequestedBy is the caller's object id; empty for queue commands and
	// workspace events.
	RequestedBy string
	CreatedAt   time.Time
	ExpiresAt   time.Time // zero: never expires
}

// Row is a record as read. Times are UTC with millisecond precision.
type Row struct {
	Key
	// Token is the recorded token; zero while the first lease is pending.
	// A pending lease over an ended token (a reissue) keeps the old one
	// here until Complete replaces it.
	Token
	// Status is as of the read: a live or rotated token past its expiry
	// reads as expired, whether or not anyone marked it.
	Status Status
	// StatusChangedAt is when the token was recorded, rotated, revoked or
	// marked expired.
	StatusChangedAt time.Time
	// LeaseOwner and LeaseUntil describe the lease of a pending record.
	LeaseOwner string
	LeaseUntil time.Time
}

// Terms are what Acquire asks for.
type Terms struct {
	// For is how long the lease lasts.
	For time.Duration
	// Holder names the work item the caller acts for, the same on each of
	// its attempts: a Service Bus message's entity and sequence number
	// (assigned by the broker, the same on every redelivery, and never
	// chosen by a sender). Service Bus hands a message out again only once
	// its earlier delivery is over (abandoned, or its handler died and the
	// lock was released or ran out), so a live lease taken under the same
	// holder belongs to an attempt that is gone: it is taken over at once
	// (Lease.TakenOver), instead of keeping the redelivery waiting for a
	// dead holder's lease. Empty (HTTP calls, the timer): no such
	// knowledge; only a lease that ran out is taken over.
	Holder string
}

// owner is the LeaseOwner written for a lease: unique to one Acquire call,
// prefixed with the holder when there is one.
func (t Terms) owner() string {
	if t.Holder == "" {
		return uuid.NewString()
	}
	return t.Holder + "/" + uuid.NewString()
}

// resumes reports whether a pending lease written by owner was taken under
// t's holder: an earlier attempt of the same work item.
func (t Terms) resumes(owner string) bool {
	i := strings.LastIndexByte(owner, '/') // holders may hold '/'; the uuid never does
	return t.Holder != "" && i > 0 && owner[:i] == t.Holder
}

// Outcome says what Acquire found.
type Outcome int

// Acquire's outcomes.
const (
	// Leased: the caller holds the lease. It creates the token (with the
	// request id's marker in its comment), delivers it, and calls
	// Complete; or Release if nothing was created. When Lease.TakenOver is
	// set, a previous holder died holding the lease and may have created a
	// token: list the workspace's tokens by the marker first, and revoke
	// (or, with Key Vault, adopt) what it left, so no token is orphaned
	// and none is doubled.
	Leased Outcome = iota + 1
	// Recorded: a usable (live or rotated) token is recorded; answer with
	// Acquisition.Row.
	Recorded
	// Busy: another caller holds a live lease. Wait and acquire again
	// while the budget lasts; past it, answer UpstreamUnavailable with
	// Retry-After until Acquisition.Row.LeaseUntil.
	Busy
)

func (o Outcome) String() string {
	switch o {
	case Leased:
		return "leased"
	case Recorded:
		return "recorded"
	case Busy:
		return "busy"
	}
	return "unknown"
}

// Acquisition is the result of Acquire.
type Acquisition struct {
	Outcome Outcome
	// Lease is set for Leased.
	Lease Lease
	// Row is the record: the recorded token for Recorded, the holder's
	// pending record for Busy, the record as it was before the lease for
	// Leased (zero when the key had none).
	Row Row
}

// Lease is the right to create the token of one key until Until.
type Lease struct {
	Key   Key
	Owner string
	Until time.Time
	// TakenOver is set when the lease was taken from a holder whose lease
	// ran out before it recorded a token.
	TakenOver bool
	// etag is the record's version when the lease was written: Complete
	// and Release succeed only if nobody wrote it since.
	etag string
	// prevIndex is the inventory entry of the token the record held
	// before (a reissue), which Complete replaces.
	prevIndex string
}

// Filter selects the rows of an inventory page (GET /api/tokens).
type Filter struct {
	// Workspace, when set (Name not empty), limits the page to one
	// workspace.
	Workspace tokens.WorkspaceID
	// Allow, when set, limits the page to the workspaces it accepts (an
	// AUTHZ_POLICY's workspace patterns), so pages stay full.
	Allow func(tokens.WorkspaceID) bool
	// Statuses, when not empty, keeps rows of these statuses (as of now).
	Statuses []Status
	// ExpiringWithin, when positive, keeps tokens that still work (live or
	// rotated) and expire within it from now; never-expiring tokens do not.
	ExpiringWithin time.Duration
	// RequestedBy, when set, keeps rows of that caller (object id,
	// case-insensitive).
	RequestedBy string
	// Top is the page size: 1-500; 0 means 100.
	Top int
	// ContinuationToken continues after the previous page.
	ContinuationToken string
}

// Page sizes of Query (contract section 6).
const (
	DefaultTop = 100
	MaxTop     = 500
)

// Page is one page of Query.
type Page struct {
	Rows []Row
	// ContinuationToken is empty on the last page.
	ContinuationToken string
}

// PurgeReport is what Purge did and found.
type PurgeReport struct {
	// Deleted counts the records (with their inventory entries) deleted.
	Deleted int
	// Stranded are pending records whose lease ran out and that nobody
	// came back for: the holder died, perhaps after creating a token. The
	// service acquires each (taking the lease over) and resolves it by the
	// comment marker, so a token created by a dead holder never lingers.
	Stranded []Row
}

// DefaultRetention is LEDGER_RETENTION's default.
const DefaultRetention = 2160 * time.Hour

// Options are what both implementations share.
type Options struct {
	// Now is the clock; nil means time.Now. Leases and expiry are judged by
	// it, so instances' clocks must agree to within a small part of a
	// lease (NTP-synchronised hosts do).
	Now func() time.Time
	// Retention is how long records of revoked and expired tokens are kept
	// (LEDGER_RETENTION); zero means DefaultRetention.
	Retention time.Duration
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return msUTC(time.Now())
	}
	return msUTC(o.Now())
}

func (o Options) retention() time.Duration {
	if o.Retention <= 0 {
		return DefaultRetention
	}
	return o.Retention
}

// msUTC is the precision both stores keep: Table Storage DateTimes go to
// 100 ns, Databricks reports milliseconds, and one precision everywhere
// makes a row read back equal to the row written.
func msUTC(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Millisecond)
}

// never is how "no expiry" is stored: a time after every real one, so that
// "expires after now" holds for it without a special case in filters.
var never = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// effective is a stored status as of now: live and rotated tokens past
// their expiry read as expired.
func effective(stored Status, expiresAt, now time.Time) Status {
	if (stored == StatusLive || stored == StatusRotated) && !expiresAt.IsZero() && !expiresAt.After(now) {
		return StatusExpired
	}
	return stored
}

// usable reports whether a row's token still works.
func usable(st Status) bool { return st == StatusLive || st == StatusRotated }

// transition is the status a mark leaves: revoked and expired are final,
// and a token is never marked back to live.
func transition(from, to Status) Status {
	switch {
	case from == StatusRevoked || from == StatusExpired:
		return from
	case to == StatusLive:
		return from
	}
	return to
}

// removable reports whether a record's token ended before cutoff.
func removable(r Row, storedStatus Status, cutoff time.Time) bool {
	if storedStatus == StatusPending || r.TokenID == "" {
		return false
	}
	if (storedStatus == StatusRevoked || storedStatus == StatusExpired) && r.StatusChangedAt.Before(cutoff) {
		return true
	}
	return !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(cutoff)
}

// normalize validates a filter and fills its defaults.
func normalize(f Filter) (Filter, *position, error) {
	var details []tokens.Detail
	bad := func(target, msg string) {
		details = append(details, tokens.Detail{Code: "InvalidField", Target: target, Message: target + " " + msg})
	}
	if f.Top == 0 {
		f.Top = DefaultTop
	}
	if f.Top < 1 || f.Top > MaxTop {
		bad("top", "must be 1-500")
	}
	for _, s := range f.Statuses {
		if _, ok := ParseStatus(string(s)); !ok {
			bad("status", "must be live, rotated, revoked or expired")
			break
		}
	}
	if f.ExpiringWithin < 0 {
		bad("expiringWithin", "must not be negative")
	}
	f.RequestedBy = strings.TrimSpace(f.RequestedBy)
	var pos *position
	if f.ContinuationToken != "" {
		p, err := decodeContinuation(f.ContinuationToken)
		if err != nil {
			details = append(details, tokens.AsError(err).Details...)
		} else {
			pos = &p
		}
	}
	if len(details) > 0 {
		return f, nil, &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the inventory query is invalid", Target: details[0].Target, Details: details}
	}
	slices.Sort(f.Statuses)
	f.Statuses = slices.Compact(f.Statuses)
	return f, pos, nil
}

// matches is the filter's meaning, for rows already known to be in an
// allowed workspace. Table builds the same selection as an OData filter.
func matches(f Filter, r Row, now time.Time) bool {
	if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, r.Status) {
		return false
	}
	if f.ExpiringWithin > 0 && (!usable(r.Status) || r.ExpiresAt.IsZero() || r.ExpiresAt.After(now.Add(f.ExpiringWithin))) {
		return false
	}
	if f.RequestedBy != "" && !strings.EqualFold(f.RequestedBy, r.RequestedBy) {
		return false
	}
	return true
}

func workspaceAllowed(f Filter, ws tokens.WorkspaceID) bool {
	if f.Workspace.Name != "" && !f.Workspace.Equal(ws) {
		return false
	}
	return f.Allow == nil || f.Allow(ws)
}

func cloneToken(t Token) Token {
	t.Scopes = slices.Clone(t.Scopes)
	t.CreatedAt, t.ExpiresAt = msUTC(t.CreatedAt), msUTC(t.ExpiresAt)
	return t
}
