package tokens

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	invSub = "6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f"
	invOID = "cccccccc-3333-4333-8333-cccccccccccc"
)

func invWS(rg, name string) WorkspaceID {
	return WorkspaceID{Subscription: invSub, ResourceGroup: rg, Name: name}
}

func TestParseInventoryQuery(t *testing.T) {
	t.Parallel()
	id := invWS("rg-demo", "dbw-01")
	tests := []struct {
		name  string
		query string
		want  InventoryQuery
	}{
		{"nothing", "", InventoryQuery{}},
		{"every parameter", "workspaceResourceId=" + url.QueryEscape(id.String()) + "&status=live&expiringWithin=72h&requestedBy=" + invOID + "&top=500&continuationToken=abc",
			InventoryQuery{Workspace: id, States: []TokenState{TokenLive}, ExpiringWithin: 72 * time.Hour, RequestedBy: invOID, Top: 500, ContinuationToken: "abc"}},
		{"workspace in another casing", "workspaceResourceId=" + url.QueryEscape(strings.ToUpper(id.String())),
			InventoryQuery{Workspace: WorkspaceID{Subscription: invSub, ResourceGroup: "RG-DEMO", Name: "DBW-01"}}},
		{"status repeated and as a comma list, once each", "status=live,%20rotated&status=REVOKED&status=live,,expired",
			InventoryQuery{States: []TokenState{TokenLive, TokenRotated, TokenRevoked, TokenExpired}}},
		{"requestedBy in upper case", "requestedBy=" + strings.ToUpper(invOID), InventoryQuery{RequestedBy: invOID}},
		{"top at its bounds", "top=1", InventoryQuery{Top: 1}},
		{"empty values count as not given", "workspaceResourceId=&status=&expiringWithin=&requestedBy=&top=&continuationToken=", InventoryQuery{}},
		{"the function key and unknown parameters are ignored", "code=secret-key&Top=0&api-version=2024-01-01&$filter=x", InventoryQuery{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseInventoryQuery(v)
			if err != nil {
				t.Fatalf("ParseInventoryQuery(%q): %v", tt.query, err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("ParseInventoryQuery(%q) (-want +got):\n%s", tt.query, d)
			}
		})
	}
}

// TestParseInventoryQueryReportsEveryProblem: one detail per bad
// parameter, all in one 400, each naming the parameter.
func TestParseInventoryQueryReportsEveryProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		query   string
		targets []string
		says    []string // substrings of the messages, in order
	}{
		{"everything wrong at once",
			"workspaceResourceId=/subscriptions/x&status=live,stale,gone&expiringWithin=7d&requestedBy=someone&top=501&code=k",
			[]string{"workspaceResourceId", "status", "expiringWithin", "requestedBy", "top"},
			[]string{"workspaceResourceId must look like", `status has "stale", "gone"; each value must be one of live, rotated, revoked, expired`,
				`expiringWithin "7d" is not a Go duration`, `requestedBy "someone" is not an object id`, "top must be from 1 to 500; got 501"}},
		{"top zero", "top=0", []string{"top"}, []string{"top must be from 1 to 500; got 0"}},
		{"top not a number", "top=ten", []string{"top"}, []string{`top "ten" is not a whole number from 1 to 500`}},
		{"top fractional", "top=1.5", []string{"top"}, []string{`top "1.5" is not a whole number`}},
		{"expiringWithin negative", "expiringWithin=-1h", []string{"expiringWithin"}, []string{"expiringWithin must be positive; got -1h0m0s"}},
		{"expiringWithin zero", "expiringWithin=0s", []string{"expiringWithin"}, []string{"expiringWithin must be positive"}},
		{"requestedBy almost a GUID", "requestedBy=" + invOID[:35] + "x", []string{"requestedBy"}, []string{"is not an object id"}},
		{"single-valued parameters given twice", "top=5&top=6&workspaceResourceId=a&workspaceResourceId=b", []string{"workspaceResourceId", "top"},
			[]string{"workspaceResourceId is given 2 times; give it at most once", "top is given 2 times"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseInventoryQuery(v)
			e := AsError(err)
			if e == nil || e.Code != CodeInvalidRequest {
				t.Fatalf("ParseInventoryQuery(%q) = %v; want InvalidRequest", tt.query, err)
			}
			var targets []string
			for i, d := range e.Details {
				targets = append(targets, d.Target)
				if i < len(tt.says) && !strings.Contains(d.Message, tt.says[i]) {
					t.Errorf("detail %d: %q; want it to say %q", i, d.Message, tt.says[i])
				}
				if d.Code != "InvalidField" {
					t.Errorf("detail %d code %q", i, d.Code)
				}
			}
			if !slices.Equal(targets, tt.targets) {
				t.Errorf("detail targets %v; want %v (one per bad parameter)", targets, tt.targets)
			}
		})
	}
}

// inventoryLedger records the filter the service passes and answers with
// the entries it keeps, as a ledger would: newest first, Allow applied.
type inventoryLedger struct {
	*fakeLedger
	rows  []Entry
	asked []InventoryFilter
}

func (l *inventoryLedger) Inventory(_ context.Context, f InventoryFilter) (InventoryPage, error) {
	l.asked = append(l.asked, f)
	var out InventoryPage
	for _, e := range l.rows {
		if (f.Workspace == WorkspaceID{} || f.Workspace.Equal(e.Workspace)) && (f.Allow == nil || f.Allow(e.Workspace)) {
			out.Entries = append(out.Entries, e)
		}
	}
	return out, nil
}

// groupPolicy allows inventory in one resource group, as an AUTHZ_POLICY
// rule on /subscriptions/<sub>/resourceGroups/<rg> does, and nothing else.
type groupPolicy struct {
	rg   string
	wide bool // implements AnyAuthorizer's question: grants inventory somewhere
}

func (p groupPolicy) Authorize(_ Caller, a Action, ws WorkspaceID, _ Scopes) (Grant, error) {
	if a == ActionInventory && strings.EqualFold(ws.ResourceGroup, p.rg) {
		return Grant{}, nil
	}
	return Grant{}, Errorf(CodeNotAuthorized, "the caller is not authorized to %s tokens in workspace %s", a, ws)
}

type anyPolicy struct{ groupPolicy }

func (p anyPolicy) AuthorizeAny(Caller, Action) error {
	if p.wide {
		return nil
	}
	return Errorf(CodeNotAuthorized, "the caller is not authorized to inventory tokens in any workspace")
}

func TestInventoryAppliesThePolicyToRows(t *testing.T) {
	t.Parallel()
	data, web := invWS("rg-data", "lake"), invWS("rg-web", "site")
	rows := []Entry{{Workspace: data, RequestID: "a", TokenID: "t1"}, {Workspace: web, RequestID: "b", TokenID: "t2"}}
	newService := func(a Authorizer) (*Service, *inventoryLedger) {
		l := &inventoryLedger{fakeLedger: newFakeLedger(), rows: rows}
		return NewService(Deps{Resolver: fakeResolver{}, API: newFakeAPI(fixedNow), Authorizer: a, Ledger: l, Now: fixedNow}), l
	}
	ctx := context.Background()

	// Without a policy every row is listed and no per-row question is asked.
	svc, l := newService(nil)
	page, err := svc.Inventory(ctx, nil, InventoryQuery{})
	if err != nil || len(page.Entries) != 2 || l.asked[0].Allow != nil || l.asked[0].Top != DefaultInventoryTop {
		t.Errorf("no policy: %v, %d rows, filter %+v; want both rows, top 100", err, len(page.Entries), l.asked)
	}

	// A policy granting one resource group: only its rows.
	svc, l = newService(anyPolicy{groupPolicy{rg: "rg-data", wide: true}})
	page, err = svc.Inventory(ctx, testCaller("ops"), InventoryQuery{Top: 10})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].TokenID != "t1" || l.asked[0].Top != 10 {
		t.Errorf("policy on rg-data: %v, %+v", err, page.Entries)
	}
	// Naming a workspace it may see in other casing works; one it may not is refused before the ledger is asked.
	if page, err := svc.Inventory(ctx, testCaller("ops"), InventoryQuery{Workspace: invWS("RG-DATA", "LAKE")}); err != nil || len(page.Entries) != 1 {
		t.Errorf("named workspace in other casing: %v, %+v", err, page.Entries)
	}
	asked := len(l.asked)
	_, err = svc.Inventory(ctx, testCaller("ops"), InventoryQuery{Workspace: web})
	if CodeOf(err) != CodeNotAuthorized || !strings.Contains(AsError(err).Message, "inventory tokens in workspace "+web.String()) {
		t.Errorf("named workspace outside the grant: %v; want NotAuthorized naming it", err)
	}
	if len(l.asked) != asked {
		t.Error("the ledger was asked for a workspace the caller may not see")
	}

	// Granted inventory nowhere: refused, not an empty page.
	svc, l = newService(anyPolicy{groupPolicy{rg: "rg-data", wide: false}})
	if _, err := svc.Inventory(ctx, testCaller("stranger"), InventoryQuery{}); CodeOf(err) != CodeNotAuthorized || len(l.asked) != 0 {
		t.Errorf("no grant anywhere: %v (ledger asked %d times); want NotAuthorized before the ledger", err, len(l.asked))
	}

	// An Authorizer that cannot answer for every workspace still filters rows.
	svc, _ = newService(groupPolicy{rg: "rg-web"})
	if page, err := svc.Inventory(ctx, testCaller("ops"), InventoryQuery{}); err != nil || len(page.Entries) != 1 || page.Entries[0].TokenID != "t2" {
		t.Errorf("per-workspace authorizer: %v, %+v", err, page.Entries)
	}
}

func TestInventoryPassesFiltersAndLedgerErrors(t *testing.T) {
	t.Parallel()
	l := &inventoryLedger{fakeLedger: newFakeLedger()}
	svc := NewService(Deps{Resolver: fakeResolver{}, API: newFakeAPI(fixedNow), Ledger: l, Now: fixedNow})
	q := InventoryQuery{Workspace: invWS("rg", "ws1"), States: []TokenState{TokenRevoked}, ExpiringWithin: time.Hour, RequestedBy: invOID, Top: 3, ContinuationToken: "next"}
	if _, err := svc.Inventory(context.Background(), nil, q); err != nil {
		t.Fatal(err)
	}
	f := l.asked[0]
	f.Allow = nil
	want := InventoryFilter{Workspace: q.Workspace, States: q.States, ExpiringWithin: time.Hour, RequestedBy: invOID, Top: 3, ContinuationToken: "next"}
	if d := cmp.Diff(want, f, cmp.Comparer(func(a, b func(WorkspaceID) bool) bool { return (a == nil) == (b == nil) })); d != "" {
		t.Errorf("filter (-want +got):\n%s", d)
	}

	bad := &failingInventory{fakeLedger: newFakeLedger(), err: FieldError(CodeInvalidRequest, "continuationToken", "continuationToken is not one this service returned")}
	svc = NewService(Deps{Resolver: fakeResolver{}, API: newFakeAPI(fixedNow), Ledger: bad, Now: fixedNow})
	if _, err := svc.Inventory(context.Background(), nil, InventoryQuery{ContinuationToken: "forged"}); !errors.Is(err, bad.err) {
		t.Errorf("the ledger's refusal of a continuation token: %v", err)
	}
}

type failingInventory struct {
	*fakeLedger
	err error
}

func (l *failingInventory) Inventory(context.Context, InventoryFilter) (InventoryPage, error) {
	return InventoryPage{}, l.err
}
