package tokens

import (
	"context"
	"errors"
	"time"
)

// Ledger is the record of what the service issued, shared by every
// instance of the app (internal/ledger keeps it in Table Storage, or in
// memory for a single instance). It is the truth about request ids: the
// cross-instance lock that makes "one live token per request id" hold for
// the whole deployment, and the inventory. It never holds a token value.
//
// Errors: UpstreamUnavailable (the table throttles or cannot be reached;
// another instance still holds a request id past the budget), UpstreamError
// (the identity may not use the table), InvalidRequest (a bad inventory
// filter); ErrClaimLost from Record.
type Ledger interface {
	// Claim takes the right to issue the token of requestID in ws for
	// h.For, waiting while another instance holds it (unless that claim
	// was taken under h.Holder: then it is taken over at once). When a
	// usable token is recorded for it, Claim returns that instead and
	// holds nothing.
	Claim(ctx context.Context, ws WorkspaceID, requestID string, h Hold) (Claim, error)
	// Record records the token issued under c as live, and ends the claim.
	Record(ctx context.Context, c Claim, e Entry) error
	// Abandon ends a claim without recording a token.
	Abandon(ctx context.Context, c Claim) error
	// Mark records that a token was rotated, revoked or found expired
	// (revoked and expired are final), and returns what the ledger knows
	// of it (known is false for a token it does not know, which is no
	// error).
	Mark(ctx context.Context, ws WorkspaceID, tokenID string, state TokenState) (e Entry, known bool, err error)
	// Inventory lists recorded tokens, newest first, a page at a time.
	Inventory(ctx context.Context, f InventoryFilter) (InventoryPage, error)
	// Purge deletes the entries of tokens revoked or expired longer ago
	// than the retention (LEDGER_RETENTION), and returns the claims whose
	// holder died before recording anything (Workspace and RequestID set).
	Purge(ctx context.Context) (stranded []Entry, err error)
	// Due reports whether the periodic job is due: it never ran, or last
	// ran longer than every ago, anywhere in the deployment. When it is,
	// now is recorded as its last run, so one caller per period does it.
	Due(ctx context.Context, job string, every time.Duration) (bool, error)
	// Bind records owner under key unless the key has one, and returns
	// the owner it has (the first binder's, across every instance).
	Bind(ctx context.Context, key, owner string) (string, error)
	// Durable reports whether records outlive the process and are seen by
	// every instance (Table Storage). An in-memory ledger is not: after a
	// restart it knows nothing, so a request id the caller chose is looked
	// for in the workspace's tokens too, as before there was a ledger.
	Durable() bool
}

// Hold is what a claim asks for.
type Hold struct {
	// For is how long the claim lasts (holdFor).
	For time.Duration
	// Holder names the work item the attempt belongs to, the same on its
	// every attempt (CreateOptions.Holder): a claim still held under the
	// same holder was left by an attempt that is over, and is taken over
	// at once. Empty: none.
	Holder string
}

// ErrClaimLost is Record's answer when the claim ran out and another
// instance took it over: nothing was recorded.
var ErrClaimLost = errors.New("the claim on the request id passed to another instance")

// Claim is the outcome of Ledger.Claim.
type Claim struct {
	// Recorded is the usable token already recorded for the request id;
	// nil when the caller holds the claim.
	Recorded *Entry
	// TakenOver: an earlier holder's claim ran out before it recorded a
	// token. It may have created one: find it by its marker.
	TakenOver bool
	// Handle is the ledger's own hold on the request id, opaque here.
	Handle any
}

// TokenState is a recorded token's state (contract section 6).
type TokenState string

// Token states.
const (
	TokenLive    TokenState = "live"
	TokenRotated TokenState = "rotated"
	TokenRevoked TokenState = "revoked"
	TokenExpired TokenState = "expired"
)

// Entry is what the ledger knows of one issued token.
type Entry struct {
	Workspace WorkspaceID
	RequestID string
	TokenID   string
	SecretURI string // Key Vault delivery only
	Comment   string // the caller's, without the marker
	Scopes    []string
	// RequestedBy is the caller's object id; empty for the queue.
	RequestedBy string
	CreatedAt   time.Time
	ExpiresAt   time.Time // zero: never expires
	State       TokenState
}

// InventoryFilter selects entries (GET /api/tokens).
type InventoryFilter struct {
	Workspace      WorkspaceID // zero: every workspace
	Allow          func(WorkspaceID) bool
	States         []TokenState
	ExpiringWithin time.Duration
	RequestedBy    string
	Top            int
	// ContinuationToken continues after the previous page.
	ContinuationToken string
}

// InventoryPage is one page of entries.
type InventoryPage struct {
	Entries []Entry
	// ContinuationToken is empty on the last page.
	ContinuationToken string
}
