package tokens

import (
	"fmt"
	"time"
)

// Action is what a caller asks the service to do, as a policy names it.
type Action string

// The actions a policy can grant.
const (
	ActionCreate Action = "create"
	ActionRevoke Action = "revoke"
	ActionList   Action = "list"
	// ActionInventory reads the ledger's records (GET /api/tokens): every
	// token the service issued, in every workspace. A rule's workspace
	// patterns select the rows a caller sees, so it is an action of its own
	// rather than a kind of list (which shows one workspace's live tokens
	// as Databricks has them).
	ActionInventory Action = "inventory"
)

// Caller is who asks, as the transport authenticated it: an App Service
// Authentication principal, the queue principal for queue commands,
// workspace events and rotation, or nil when nothing vouches for the
// caller. The domain never looks inside; it hands the caller to the
// Authorizer and names it in results (String is requestedBy).
type Caller interface {
	String() string
	// IsQueue reports whether this is the queue principal: automation
	// without a caller identity (queue commands, workspace events, the
	// rotation of what those issued).
	IsQueue() bool
	// CallerID is the caller's object id, as the ledger records who asked;
	// empty for the queue.
	CallerID() string
}

// isQueue is Caller.IsQueue for a possibly nil caller.
func isQueue(by Caller) bool { return by != nil && by.IsQueue() }

// Grant is what an Authorizer allows beyond "yes".
type Grant struct {
	// MaxLifetime caps the lifetime of a token the caller may create: a
	// request without a lifetime gets at most this, one asking for more is
	// refused. Zero means no cap of the policy's own (TOKEN_MAX_LIFETIME
	// still applies).
	MaxLifetime time.Duration
}

// Authorizer decides who may do what. The service asks it on every path
// that issues, revokes or lists, before any upstream call (a revoke by
// secretUri once the secret's tags named the workspace). For a create the
// Authorizer is given the token's scopes, since which rule allows them
// also decides its lifetime; for revoke and list they are empty.
//
// Errors: NotAuthorized, with a message that names the action and the
// workspace (target workspaceResourceId) or the refused scopes (target
// scopes), never the policy.
type Authorizer interface {
	Authorize(by Caller, a Action, ws WorkspaceID, s Scopes) (Grant, error)
}

// AnyAuthorizer is an Authorizer that can also tell whether a caller may
// do an action in at least one workspace. The inventory asks it when no
// workspace is named, so that a caller granted nothing anywhere is refused
// (NotAuthorized) instead of being shown an empty list it would take for
// "no tokens". An Authorizer without it is asked per workspace only.
type AnyAuthorizer interface {
	AuthorizeAny(by Caller, a Action) error
}

// allowAll is the Authorizer when no policy is configured.
type allowAll struct{}

func (allowAll) Authorize(Caller, Action, WorkspaceID, Scopes) (Grant, error) { return Grant{}, nil }

// capLifetime applies a grant's maximum lifetime to a create: a default
// lifetime is shortened to it; an explicit longer one is refused.
func capLifetime(req *CreateRequest, g Grant) error {
	if g.MaxLifetime <= 0 || req.Lifetime <= g.MaxLifetime {
		return nil
	}
	if !req.LifetimeGiven {
		req.Lifetime = g.MaxLifetime
		return nil
	}
	return FieldError(CodeNotAuthorized, "lifetimeSeconds", LifetimeDeniedMessage(g.MaxLifetime, req.Workspace))
}

// LifetimeDeniedMessage says that a lifetime is over what the caller may
// have, without quoting the policy beyond the caller's own limit.
func LifetimeDeniedMessage(max time.Duration, ws WorkspaceID) string {
	return fmt.Sprintf("lifetimeSeconds may be at most %d for this caller in workspace %s", int64(max/time.Second), ws)
}
