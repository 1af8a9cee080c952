package tokens

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/internal/input"
)

// Inventory page sizes (contract section 6: top is 1…500, default 100).
const (
	DefaultInventoryTop = 100
	MaxInventoryTop     = 500
)

// InventoryQuery is a validated GET /api/tokens query.
type InventoryQuery struct {
	// Workspace, when set, limits the answer to one workspace (compared
	// without regard to case, as ARM ids are).
	Workspace WorkspaceID
	// States keeps rows in any of these states; empty keeps all.
	States []TokenState
	// ExpiringWithin, when positive, keeps tokens that still work and
	// expire within it.
	ExpiringWithin time.Duration
	// RequestedBy keeps rows of one caller (Entra object id).
	RequestedBy string
	// Top is the page size; zero means DefaultInventoryTop.
	Top int
	// ContinuationToken continues after an earlier page. It is the
	// ledger's, opaque here; the ledger checks it.
	ContinuationToken string
}

// inventoryStates are the states a status parameter may name, in the
// order messages list them.
var inventoryStates = []TokenState{TokenLive, TokenRotated, TokenRevoked, TokenExpired}

// ParseInventoryQuery validates the query of GET /api/tokens and reports
// every problem at once, one detail per parameter. Parameter names are
// case-sensitive, as the body's fields are. Parameters it does not know
// are ignored, as list-tokens ignores them: code is the function key, and
// clients and gateways add their own. A parameter given with an empty
// value counts as not given (connectors send optional parameters that
// way); a single-valued one given twice is a problem, since neither value
// could be said to win.
func ParseInventoryQuery(v url.Values) (InventoryQuery, error) {
	var p input.Problems
	var q InventoryQuery
	single := func(name string) (string, bool) {
		var given []string
		for _, s := range v[name] {
			if s != "" {
				given = append(given, s)
			}
		}
		switch len(given) {
		case 0:
			return "", false
		case 1:
			return given[0], true
		}
		p.Add(name, "is given %d times; give it at most once", len(given))
		return "", false
	}
	if s, ok := single("workspaceResourceId"); ok {
		id, err := ParseWorkspaceID(s)
		if err != nil {
			p.Add("workspaceResourceId", "%v", err)
		}
		q.Workspace = id
	}
	var bad []string
	for _, s := range v["status"] {
		for item := range strings.SplitSeq(s, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			st := TokenState(strings.ToLower(item))
			switch {
			case !slices.Contains(inventoryStates, st):
				bad = append(bad, strconv.Quote(Clip(item, 40)))
			case !slices.Contains(q.States, st):
				q.States = append(q.States, st)
			}
		}
	}
	if len(bad) > 0 {
		p.Add("status", "has %s; each value must be one of live, rotated, revoked, expired (repeat the parameter or separate values with commas)", strings.Join(bad, ", "))
	}
	if s, ok := single("expiringWithin"); ok {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		switch {
		case err != nil:
			p.Add("expiringWithin", "%q is not a Go duration (for example 72h, 90m or 168h for a week)", Clip(s, 40))
		case d <= 0:
			p.Add("expiringWithin", "must be positive; got %s", d)
		default:
			q.ExpiringWithin = d
		}
	}
	if s, ok := single("requestedBy"); ok {
		s = strings.TrimSpace(s)
		if !IsGUID(s) {
			p.Add("requestedBy", "%q is not an object id (a GUID such as 00000000-0000-0000-0000-000000000000)", Clip(s, 40))
		}
		q.RequestedBy = strings.ToLower(s)
	}
	if s, ok := single("top"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		switch {
		case err != nil:
			p.Add("top", "%q is not a whole number from 1 to %d", Clip(s, 40), MaxInventoryTop)
		case n < 1 || n > MaxInventoryTop:
			p.Add("top", "must be from 1 to %d; got %d", MaxInventoryTop, n)
		default:
			q.Top = n
		}
	}
	if s, ok := single("continuationToken"); ok {
		q.ContinuationToken = s
	}
	if err := invalid(p); err != nil {
		return InventoryQuery{}, err
	}
	return q, nil
}

// Inventory lists the tokens the ledger recorded, newest first, one page
// at a time: across every workspace, or the one q names. It never holds a
// token value: the ledger has none.
//
// by is authorized for ActionInventory. A policy's workspace patterns
// select the rows: each workspace's rows are shown only if the Authorizer
// allows the caller there, so a page is full of rows the caller may see
// rather than thinned after the fact. A named workspace the caller may not
// see is NotAuthorized, and so is, without a workspace, a caller the policy
// grants inventory nowhere (an AnyAuthorizer says so), never an empty page
// that would read as "no tokens". Nothing here calls ARM or Databricks.
//
// Errors: NotAuthorized, InvalidRequest (a continuation token the ledger
// did not issue), UpstreamUnavailable, UpstreamError (the ledger's table).
func (s *Service) Inventory(ctx context.Context, by Caller, q InventoryQuery) (InventoryPage, error) {
	if q.Workspace != (WorkspaceID{}) {
		if _, err := s.authz.Authorize(by, ActionInventory, q.Workspace, Scopes{}); err != nil {
			return InventoryPage{}, err
		}
	} else if wide, ok := s.authz.(AnyAuthorizer); ok {
		if err := wide.AuthorizeAny(by, ActionInventory); err != nil {
			return InventoryPage{}, err
		}
	}
	if q.Top == 0 {
		q.Top = DefaultInventoryTop
	}
	f := InventoryFilter{Workspace: q.Workspace, States: q.States, ExpiringWithin: q.ExpiringWithin,
		RequestedBy: q.RequestedBy, Top: q.Top, ContinuationToken: q.ContinuationToken}
	if _, open := s.authz.(allowAll); !open {
		f.Allow = func(ws WorkspaceID) bool {
			_, err := s.authz.Authorize(by, ActionInventory, ws, Scopes{})
			return err == nil
		}
	}
	page, err := s.ledger.Inventory(ctx, f)
	if err != nil {
		return InventoryPage{}, err
	}
	return page, nil
}
