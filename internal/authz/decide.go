package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// The actions a rule may grant (the domain's typed actions).
const (
	ActionCreate    = tokens.ActionCreate
	ActionRevoke    = tokens.ActionRevoke
	ActionList      = tokens.ActionList
	ActionInventory = tokens.ActionInventory
)

// Actions are the actions a rule may grant, in the order messages list them.
var Actions = []tokens.Action{ActionCreate, ActionRevoke, ActionList, ActionInventory}

// actionNames is Actions for messages.
func actionNames() string {
	names := make([]string, len(Actions))
	for i, a := range Actions {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// PolicyVersion is the only policy format version.
const PolicyVersion = 1

// PrincipalQueue is the policy's principal for queue commands.
const PrincipalQueue = "queue"

// MaxRuleLifetime is the largest maxLifetime a rule may set: Databricks'
// own cap on new tokens (730 days).
const MaxRuleLifetime = 730 * 24 * time.Hour

// maxPolicySize bounds a policy (inline or file).
const maxPolicySize = 1 << 20

// Policy is a validated authorization policy. A nil *Policy is "no policy
// configured" (see Decide).
type Policy struct {
	rules []rule
}

type rule struct {
	principals  []principalSpec
	actions     []tokens.Action
	workspaces  []scopePattern
	maxLifetime time.Duration // 0: no limit of its own
	// scopes are the patterns a create's scopes must each match (nil: any
	// scope but authentication and all-apis); requireScopes refuses
	// unscoped (and autoscoped) tokens.
	scopes        []string
	requireScopes bool
}

type principalKind int

const (
	byObjectID principalKind = iota
	byAppID
	byAppRole
	byQueue
)

type principalSpec struct {
	kind  principalKind
	value string // lower case GUID for object and app ids; exact for app roles
}

// scopePattern is a parsed workspace pattern: a subscription, resource
// group or workspace scope, each named segment lower case and possibly with
// '*' wildcards. depth is 1 (subscription), 2 (resource group) or 3
// (workspace).
type scopePattern struct {
	depth            int
	sub, group, name string
}

// Decision is the outcome of Decide. It holds nothing of the policy beyond
// the caller's own outcome, so messages built from it are safe to return.
type Decision struct {
	Allowed bool
	// MaxLifetime caps the lifetime of a token the caller may create; 0
	// means no rule limit (TOKEN_MAX_LIFETIME still applies).
	MaxLifetime time.Duration
	// Rule is the index of the deciding rule (for audit logs), -1 when no
	// rule decided (denied, or no policy configured).
	Rule int
	// Scopes, for a create that rules grant on the workspace but not with
	// these scopes, says what was wrong with them.
	Scopes ScopeRefusal
}

// ScopeRefusal says why the scopes of a create were refused; the zero
// value means they were not (or the action was not granted at all).
type ScopeRefusal struct {
	// Unscoped: every rule that could grant the create requires scoped
	// tokens, and the request is unscoped or autoscoped.
	Unscoped bool
	// Denied lists, comma-joined, the requested scopes no such rule allows.
	Denied string
	// Together: each scope is allowed by some rule, but no one rule allows
	// them all.
	Together bool
}

// Refused reports whether the create was refused for its scopes.
func (r ScopeRefusal) Refused() bool { return r.Unscoped || r.Denied != "" || r.Together }

// Decide tells whether pr may perform action (one of Actions) on
// workspace, and for a create, with these scopes. Rules are
// matched on action, principal and workspace, and for a create on scopes
// (a rule's requireScopes refuses an unscoped or autoscoped token; each
// requested scope must match one of its scope patterns; authentication and
// all-apis, which can mint further tokens, only a pattern that names them
// literally). When several rules allow, the most generous maxLifetime wins
// (a matching rule without maxLifetime means no rule limit). Nothing
// matching means denied, as do a nil principal and an unknown action.
//
// A nil policy means no policy is configured: everything is allowed
// (Allowed true, Rule -1), as before authorization existed.
func (p *Policy) Decide(pr *Principal, action tokens.Action, workspace tokens.WorkspaceID, scopes tokens.Scopes) Decision {
	if p == nil {
		return Decision{Allowed: true, Rule: -1}
	}
	denied := Decision{Rule: -1}
	if pr == nil || !slices.Contains(Actions, action) {
		return denied
	}
	sub, group, name := strings.ToLower(workspace.Subscription), strings.ToLower(workspace.ResourceGroup), strings.ToLower(workspace.Name)
	d := denied
	var refusal scopeTally
	for i, r := range p.rules {
		if !slices.Contains(r.actions, action) ||
			!slices.ContainsFunc(r.principals, func(s principalSpec) bool { return s.matches(pr) }) ||
			!slices.ContainsFunc(r.workspaces, func(w scopePattern) bool { return w.matches(sub, group, name) }) {
			continue
		}
		if action == ActionCreate && !refusal.accepts(r, scopes) {
			continue
		}
		switch {
		case !d.Allowed:
			d = Decision{Allowed: true, MaxLifetime: r.maxLifetime, Rule: i}
		case r.maxLifetime == 0 || r.maxLifetime > d.MaxLifetime:
			d = Decision{Allowed: true, MaxLifetime: r.maxLifetime, Rule: i}
		}
		if action != ActionCreate {
			d.MaxLifetime = 0
		}
		if d.MaxLifetime == 0 {
			break
		}
	}
	if !d.Allowed {
		d.Scopes = refusal.result(scopes)
	}
	return d
}

// scopeTally collects, over the rules that grant a create on the
// workspace, why they refused its scopes, to tell the caller (never the
// policy): that it must ask for scopes, which scopes no rule allows, or
// that the scopes are allowed only apart.
type scopeTally struct {
	matched     int             // rules that grant the action here
	pastRequire int             // of those, rules whose requireScopes the request passed
	allowed     map[string]bool // scopes one of those rules allows
}

// accepts reports whether rule r allows these scopes, and tallies why not.
func (t *scopeTally) accepts(r rule, s tokens.Scopes) bool {
	t.matched++
	if r.requireScopes && s.Unrestricted() {
		return false
	}
	t.pastRequire++
	ok := true
	for _, sc := range s.List {
		if r.allowsScope(sc) {
			if t.allowed == nil {
				t.allowed = map[string]bool{}
			}
			t.allowed[sc] = true
		} else {
			ok = false
		}
	}
	return ok
}

func (t scopeTally) result(s tokens.Scopes) ScopeRefusal {
	switch {
	case t.matched == 0:
		return ScopeRefusal{} // no rule grants the action here at all
	case t.pastRequire == 0:
		return ScopeRefusal{Unscoped: true}
	}
	var denied []string
	for _, sc := range s.List {
		if !t.allowed[sc] {
			denied = append(denied, sc)
		}
	}
	if len(denied) == 0 {
		return ScopeRefusal{Together: true}
	}
	return ScopeRefusal{Denied: strings.Join(denied, ",")}
}

// allowsScope reports whether a requested scope matches one of the rule's
// patterns. A scope that can mint tokens (authentication, all-apis, with
// any modifiers) must be named literally: no wildcard and no rule without
// patterns grants it, so a rule written for "anything scoped" never hands
// out the power to issue more tokens.
func (r rule) allowsScope(s string) bool {
	if tokens.Privileged(s) {
		return slices.Contains(r.scopes, s)
	}
	if r.scopes == nil {
		return true
	}
	return slices.ContainsFunc(r.scopes, func(p string) bool { return glob(p, s) })
}

// Rules returns the number of rules.
func (p *Policy) Rules() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// CheckMaxLifetime reports, one error per rule, rules whose maxLifetime is
// above the service's TOKEN_MAX_LIFETIME (such a limit could never apply).
func (p *Policy) CheckMaxLifetime(serviceMax time.Duration) error {
	if p == nil {
		return nil
	}
	var errs []error
	for i, r := range p.rules {
		if r.maxLifetime > serviceMax {
			errs = append(errs, fmt.Errorf("rules[%d].maxLifetime: %s is above TOKEN_MAX_LIFETIME %s", i, r.maxLifetime, serviceMax))
		}
	}
	return errors.Join(errs...)
}

// DeniedAnywhereMessage is the caller-facing message for an action no rule
// grants the caller on any workspace (an inventory across workspaces).
func DeniedAnywhereMessage(action tokens.Action) string {
	return fmt.Sprintf("the caller is not authorized to %s tokens in any workspace", action)
}

// DeniedMessage is the caller-facing message for a denied action: it names
// the action and the workspace and nothing of the policy.
func DeniedMessage(action tokens.Action, workspace tokens.WorkspaceID) string {
	return fmt.Sprintf("the caller is not authorized to %s tokens in workspace %s", action, workspace)
}

// LifetimeDeniedMessage is the caller-facing message for a create whose
// lifetime is above the caller's Decision.MaxLifetime: it tells the caller
// its own limit and nothing else of the policy.
func LifetimeDeniedMessage(max time.Duration, workspace tokens.WorkspaceID) string {
	return tokens.LifetimeDeniedMessage(max, workspace)
}

func (s principalSpec) matches(pr *Principal) bool {
	if s.kind == byQueue || pr.IsQueue() {
		return s.kind == byQueue && pr.IsQueue()
	}
	switch s.kind {
	case byObjectID:
		return strings.EqualFold(pr.ObjectID, s.value)
	case byAppID:
		return pr.AppID != "" && strings.EqualFold(pr.AppID, s.value)
	case byAppRole:
		return pr.HasRole(s.value)
	}
	return false
}

func (w scopePattern) matches(sub, group, name string) bool {
	if !glob(w.sub, sub) {
		return false
	}
	if w.depth >= 2 && !glob(w.group, group) {
		return false
	}
	return w.depth < 3 || glob(w.name, name)
}

// glob matches s against pattern, where '*' matches any run of characters
// (also empty) and everything else itself. Both are lower case already.
func glob(pattern, s string) bool {
	// Iterative matcher with single-star backtracking: O(len(pattern)*len(s)).
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// HasQueueRules reports whether any rule names the queue principal. Queue
// commands carry no caller identity: who may send to the queue (its RBAC)
// is the control there, and the policy restricts them only when it says
// something about them.
func (p *Policy) HasQueueRules() bool {
	if p == nil {
		return false
	}
	for _, r := range p.rules {
		if slices.ContainsFunc(r.principals, func(s principalSpec) bool { return s.kind == byQueue }) {
			return true
		}
	}
	return false
}

// Authorizer applies a Policy to the token service's callers: it is the
// tokens.Authorizer of main. A nil Policy allows everything, as before
// authorization existed. Queue commands, workspace events and the rotation
// of queue-issued tokens act as the Queue principal, which the policy
// restricts only when it has rules for it (HasQueueRules): the queue's
// RBAC is the control there. Even then, a scope that can mint tokens
// (authentication, all-apis) needs a rule that names it, so with a policy
// and no queue rules the queue cannot get one.
type Authorizer struct{ Policy *Policy }

var (
	_ tokens.Authorizer    = Authorizer{}
	_ tokens.AnyAuthorizer = Authorizer{}
)

// Authorize implements tokens.Authorizer. by is a *Principal (nil: nobody
// vouched for the caller, which any policy denies).
func (a Authorizer) Authorize(by tokens.Caller, act tokens.Action, ws tokens.WorkspaceID, scopes tokens.Scopes) (tokens.Grant, error) {
	if a.Policy == nil {
		return tokens.Grant{}, nil
	}
	pr, _ := by.(*Principal)
	if pr.IsQueue() && !a.Policy.HasQueueRules() {
		if act == ActionCreate {
			var priv []string
			for _, s := range scopes.List {
				if tokens.Privileged(s) {
					priv = append(priv, s)
				}
			}
			if len(priv) > 0 {
				return tokens.Grant{}, scopeDenied(ScopeRefusal{Denied: strings.Join(priv, ",")}, ws)
			}
		}
		return tokens.Grant{}, nil
	}
	d := a.Policy.Decide(pr, act, ws, scopes)
	switch {
	case d.Allowed:
		return tokens.Grant{MaxLifetime: d.MaxLifetime}, nil
	case d.Scopes.Refused():
		return tokens.Grant{}, scopeDenied(d.Scopes, ws)
	}
	return tokens.Grant{}, &tokens.Error{Code: tokens.CodeNotAuthorized, Target: "workspaceResourceId", Message: DeniedMessage(act, ws)}
}

// scopeDenied is the refusal of a create for its scopes. Like every
// refusal it names the caller's request and the workspace, never the
// policy's patterns.
func scopeDenied(r ScopeRefusal, ws tokens.WorkspaceID) error {
	return tokens.FieldError(tokens.CodeNotAuthorized, "scopes", ScopeDeniedMessage(r, ws))
}

// ScopeDeniedMessage is the caller-facing message for a create refused for
// its scopes.
func ScopeDeniedMessage(r ScopeRefusal, ws tokens.WorkspaceID) string {
	switch {
	case r.Unscoped:
		return fmt.Sprintf("the caller may create only scoped tokens in workspace %s: name the scopes the token needs (autoscope counts as unscoped, since the token may call every API while Databricks observes it)", ws)
	case r.Together:
		return fmt.Sprintf("the caller may not create one token with all of these scopes in workspace %s; ask for them in separate tokens", ws)
	}
	return fmt.Sprintf("the caller is not authorized to create tokens with scope %s in workspace %s", strings.ReplaceAll(r.Denied, ",", ", "), ws)
}

// GrantsAny reports whether some rule grants pr the action on some
// workspace: what an inventory across workspaces needs before it asks
// Decide about each workspace's rows.
func (p *Policy) GrantsAny(pr *Principal, action tokens.Action) bool {
	if p == nil {
		return true
	}
	if pr == nil || !slices.Contains(Actions, action) {
		return false
	}
	for _, r := range p.rules {
		if slices.Contains(r.actions, action) && slices.ContainsFunc(r.principals, func(s principalSpec) bool { return s.matches(pr) }) {
			return true
		}
	}
	return false
}

// AuthorizeAny implements tokens.AnyAuthorizer: nil when some rule grants
// the caller the action somewhere (the rows it may see are then decided
// per workspace by Authorize), NotAuthorized when none does.
func (a Authorizer) AuthorizeAny(by tokens.Caller, act tokens.Action) error {
	if a.Policy == nil {
		return nil
	}
	pr, _ := by.(*Principal)
	if pr.IsQueue() && !a.Policy.HasQueueRules() {
		return nil
	}
	if !a.Policy.GrantsAny(pr, act) {
		return &tokens.Error{Code: tokens.CodeNotAuthorized, Message: DeniedAnywhereMessage(act)}
	}
	return nil
}
