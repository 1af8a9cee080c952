package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/stack"
	"github.com/contoso/databricks-token-broker/internal/audit"
)

// GET /api/tokens (contract section 6): the ledger's inventory of every
// token the service issued, read through the host simulator with the
// ledger in Azurite's Table Storage, as in Azure.

// inventoryPage is one answer of GET /api/tokens.
type inventoryPage struct {
	rows []map[string]any
	next string
	more bool // the answer has a continuationToken member
}

// inventory calls GET /api/tokens on host h (nil: the first instance) and
// wants a 200 with the contract's shape and no token value in it.
func (e *env) inventory(h *hostsim.Host, query string, header ...string) inventoryPage {
	e.t.Helper()
	path := "/api/tokens"
	if query != "" {
		path += "?" + query
	}
	var r response
	if h == nil {
		r = e.do(http.MethodGet, path, nil, header...)
	} else {
		r = e.doAt(h, http.MethodGet, path, nil, header...)
	}
	if r.Status != 200 {
		e.t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	e.assertNoValue(r)
	body := r.json(e.t)
	var p inventoryPage
	for _, row := range body["tokens"].([]any) {
		p.rows = append(p.rows, row.(map[string]any))
	}
	p.next, p.more = body["continuationToken"].(string)
	if _, has := body["continuationToken"]; has && !p.more {
		e.t.Errorf("GET %s: continuationToken %v is not a string", path, body["continuationToken"])
	}
	return p
}

// assertNoValue: an inventory answer never holds a token value or an
// access token, in any field.
func (e *env) assertNoValue(r response) {
	e.t.Helper()
	for _, s := range e.stack.Secrets() {
		if s != "" && strings.Contains(string(r.Body), s) {
			e.t.Errorf("an inventory answer holds a secret (%s…)", s[:8])
		}
	}
	if strings.Contains(string(r.Body), "dapi") || strings.Contains(string(r.Body), "tokenValue") {
		e.t.Errorf("an inventory answer holds a token value: %s", r.Body)
	}
}

// requestIDs are the rows' request ids, in the answer's order.
func (p inventoryPage) requestIDs() []string {
	var out []string
	for _, r := range p.rows {
		out = append(out, r["requestId"].(string))
	}
	return out
}

func wantRows(t *testing.T, what string, got inventoryPage, want ...string) {
	t.Helper()
	if ids := got.requestIDs(); !slices.Equal(ids, want) {
		t.Errorf("%s: rows %v; want %v (newest first)", what, ids, want)
	}
}

func TestInventoryListsTheLedgerNewestFirstAcrossInstances(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{workspaces: 2, ledger: true})

	// One token from the queue, three over HTTP, in two workspaces.
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(1), "comment": "from the queue", "requestId": "inv-q1"}), "inv-q1")
	if res := e.results(1, 30*time.Second)[0]; res.Subject != "Databricks.Token.Created" {
		t.Fatalf("queued create: %+v", res)
	}
	created := map[string]map[string]any{}
	for _, c := range []map[string]any{
		{"workspaceResourceId": ws(0), "comment": "first", "lifetimeSeconds": 86400, "requestId": "inv-1"},
		{"workspaceResourceId": ws(1), "comment": "short-lived", "lifetimeSeconds": 3600, "requestId": "inv-2", "scopes": []string{"sql:read", "jobs"}},
		{"workspaceResourceId": ws(0), "requestId": "inv-3"},
	} {
		r := e.create(c)
		if r.Status != 201 {
			t.Fatalf("create %v: %d %s", c["requestId"], r.Status, r.Body)
		}
		created[c["requestId"].(string)] = r.json(t)
	}
	all := []string{"inv-3", "inv-2", "inv-1", "inv-q1"}

	// Every token, newest first, with the contract's fields.
	p := e.inventory(nil, "")
	wantRows(t, "the whole inventory", p, all...)
	if p.more {
		t.Errorf("a page of 100 holding 4 tokens has a continuationToken %q", p.next)
	}
	for _, row := range p.rows {
		id := row["requestId"].(string)
		if row["status"] != "live" || !strings.HasPrefix(fmt.Sprint(row["secretUri"]), e.stack.Vault.URL()+"/secrets/") {
			t.Errorf("%s: status %v, secretUri %v; want live, a version of the vault", id, row["status"], row["secretUri"])
		}
		if _, has := row["requestedBy"]; has {
			t.Errorf("%s: requestedBy %v, though no caller was known", id, row["requestedBy"])
		}
		if got := fmt.Sprint(row["scopes"]); id == "inv-2" && got != "[sql:read jobs]" {
			t.Errorf("%s: scopes %s; want the ones it was created with, [sql:read jobs]", id, got)
		} else if _, has := row["scopes"]; id != "inv-2" && has {
			t.Errorf("%s: scopes %v on an unscoped token", id, row["scopes"])
		}
		rec, ok := created[id]
		if !ok {
			if row["comment"] != "from the queue" || row["workspaceResourceId"] != ws(1) {
				t.Errorf("the queued token's row: %v", row)
			}
			continue
		}
		for _, f := range []string{"requestId", "workspaceResourceId", "tokenId", "comment", "createdAt", "expiresAt", "secretUri"} {
			if row[f] != rec[f] {
				t.Errorf("%s: %s = %v; the create answered %v", id, f, row[f], rec[f])
			}
		}
	}

	// Paging covers every row once, in the same order, whatever the size.
	for _, top := range []int{1, 3} {
		var seen []string
		next, pages := "", 0
		for {
			q := fmt.Sprintf("top=%d", top)
			if next != "" {
				q += "&continuationToken=" + url.QueryEscape(next)
			}
			page := e.inventory(nil, q)
			pages++
			if len(page.rows) > top {
				t.Fatalf("top=%d answered %d rows", top, len(page.rows))
			}
			seen = append(seen, page.requestIDs()...)
			if !page.more {
				break
			}
			next = page.next
			if pages > len(all) {
				t.Fatalf("top=%d: more pages than tokens", top)
			}
		}
		if !slices.Equal(seen, all) {
			t.Errorf("top=%d: pages covered %v; want %v, each once", top, seen, all)
		}
	}

	// Filters: a workspace in another casing, expiring soon, by status.
	wantRows(t, "workspace in upper case", e.inventory(nil, "workspaceResourceId="+url.QueryEscape(strings.ToUpper(ws(0)))), "inv-3", "inv-1")
	wantRows(t, "expiringWithin=2h", e.inventory(nil, "expiringWithin=2h"), "inv-2")
	wantRows(t, "expiringWithin=48h", e.inventory(nil, "expiringWithin=48h"), "inv-2", "inv-1")
	if r := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": created["inv-1"]["tokenId"]}); r.Status != 200 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	revoked := e.inventory(nil, "status=revoked")
	wantRows(t, "status=revoked", revoked, "inv-1")
	if len(revoked.rows) == 1 && revoked.rows[0]["status"] != "revoked" {
		t.Errorf("the revoked token's row says %v", revoked.rows[0]["status"])
	}
	wantRows(t, "status=live", e.inventory(nil, "status=live"), "inv-3", "inv-2", "inv-q1")
	wantRows(t, "status repeated", e.inventory(nil, "status=revoked&status=live"), all...)
	wantRows(t, "status as a comma list", e.inventory(nil, "status=revoked,live"), all...)
	wantRows(t, "status=rotated", e.inventory(nil, "status=rotated"))
	wantRows(t, "expiringWithin leaves revoked tokens out", e.inventory(nil, "expiringWithin=48h"), "inv-2")
	wantRows(t, "filters combine", e.inventory(nil, "workspaceResourceId="+url.QueryEscape(ws(1))+"&status=live&expiringWithin=2h"), "inv-2")
	wantRows(t, "the function key and unknown parameters are ignored", e.inventory(nil, "code=abc&Status=revoked&api-version=1"), all...)

	// Bad parameters: one 400, one detail per problem, all at once.
	r := e.do(http.MethodGet, "/api/tokens?workspaceResourceId=/subscriptions/x&status=live,stale&expiringWithin=soon&requestedBy=me&top=0&code=abc", nil)
	if r.Status != 400 || r.errorCode(t) != "InvalidRequest" {
		t.Fatalf("bad parameters: %d %s", r.Status, r.Body)
	}
	var targets []string
	for _, d := range r.json(t)["error"].(map[string]any)["details"].([]any) {
		targets = append(targets, d.(map[string]any)["target"].(string))
	}
	if want := []string{"workspaceResourceId", "status", "expiringWithin", "requestedBy", "top"}; !slices.Equal(targets, want) {
		t.Errorf("detail targets %v; want %v", targets, want)
	}
	for query, target := range map[string]string{"top=501": "top", "continuationToken=forged": "continuationToken", "expiringWithin=-1h": "expiringWithin"} {
		r := e.do(http.MethodGet, "/api/tokens?"+query, nil)
		details, _ := r.json(t)["error"].(map[string]any)["details"].([]any)
		if r.Status != 400 || len(details) != 1 || details[0].(map[string]any)["target"] != target {
			t.Errorf("%s: %d %s; want 400 with one detail on %s", query, r.Status, r.Body, target)
		}
	}

	// A second instance on the same table lists what the first issued, and
	// the first lists what the second issues.
	b := e.instance()
	wantRows(t, "instance B", e.inventory(b, ""), all...)
	if r := e.doAt(b, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws(1), "requestId": "inv-b"}); r.Status != 201 {
		t.Fatalf("create on instance B: %d %s", r.Status, r.Body)
	}
	wantRows(t, "instance A after a create on B", e.inventory(nil, "top=2"), "inv-b", "inv-3")

	l := e.lineOf(audit.TokensInventoried, func(l auditLine) bool { return l.str("workspace") == ws(1) })
	if l["count"] != float64(1) || l.str("action") != "inventory" || l.str("caller") != "unknown" {
		t.Errorf("the audit line of a filtered inventory: %v", l)
	}
	e.assertAuditLines()
}

const (
	aliceObject   = "dddddddd-4444-4444-8444-dddddddddddd"
	bobObject     = "eeeeeeee-5555-4555-8555-eeeeeeeeeeee"
	auditorObject = "ffffffff-6666-4666-8666-ffffffffffff"
)

// auditWorkspace lives in another resource group than the stack's.
var auditWorkspace = "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-audit/providers/Microsoft.Databricks/workspaces/dbw-audit"

// inventoryPolicy: Tokens.Create holders create, revoke and inventory in
// the whole subscription; the auditor may inventory rg-audit only; the
// reader may only list.
func inventoryPolicy() string {
	return fmt.Sprintf(`{"version":1,"rules":[
	 {"principals":[{"appRole":"Tokens.Create"}],"actions":["create","revoke","inventory"],"workspaces":["/subscriptions/%[1]s"]},
	 {"principals":[{"objectId":"%[2]s"}],"actions":["inventory"],"workspaces":["/subscriptions/%[1]s/resourceGroups/rg-audit"]},
	 {"principals":[{"objectId":"%[3]s"}],"actions":["list"],"workspaces":["/subscriptions/%[1]s"]}]}`, stack.Subscription, auditorObject, readerObject)
}

func TestInventoryFollowsThePolicy(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{workspaces: 2, ledger: true, easyAuth: true, settings: []string{"AUTHZ_POLICY=" + inventoryPolicy()},
		before: func(s *stack.Stack) {
			if _, err := s.AddWorkspace(auditWorkspace); err != nil {
				t.Fatal(err)
			}
		}})
	alice := bearer(fakeeasyauth.Caller{ObjectID: aliceObject, AppID: logicAppID, Roles: []string{"Tokens.Create"}})
	bob := bearer(fakeeasyauth.Caller{ObjectID: bobObject, AppID: intruderApp, Roles: []string{"Tokens.Create"}})
	auditor := bearer(fakeeasyauth.Caller{ObjectID: auditorObject, AppID: intruderApp})
	reader := bearer(fakeeasyauth.Caller{ObjectID: readerObject, AppID: intruderApp})

	for _, c := range []struct {
		who []string
		ws  string
		id  string
	}{{alice, ws(0), "p-1"}, {bob, ws(1), "p-2"}, {alice, auditWorkspace, "p-3"}, {bob, auditWorkspace, "p-4"}} {
		e.mustCreate(map[string]any{"workspaceResourceId": c.ws, "requestId": c.id}, c.who...)
	}

	// Each row names its requester; requestedBy selects by it, in any case.
	p := e.inventory(nil, "", alice...)
	wantRows(t, "granted everywhere", p, "p-4", "p-3", "p-2", "p-1")
	for _, row := range p.rows {
		want := aliceObject
		if id := row["requestId"]; id == "p-2" || id == "p-4" {
			want = bobObject
		}
		if !strings.EqualFold(fmt.Sprint(row["requestedBy"]), want) {
			t.Errorf("%v: requestedBy %v; want %s", row["requestId"], row["requestedBy"], want)
		}
	}
	wantRows(t, "requestedBy alice", e.inventory(nil, "requestedBy="+aliceObject, alice...), "p-3", "p-1")
	wantRows(t, "requestedBy bob in upper case", e.inventory(nil, "requestedBy="+strings.ToUpper(bobObject), alice...), "p-4", "p-2")

	// Granted inventory on one resource group: only its rows, full pages.
	wantRows(t, "the auditor", e.inventory(nil, "", auditor...), "p-4", "p-3")
	page := e.inventory(nil, "top=1", auditor...)
	wantRows(t, "the auditor's first page of one", page, "p-4")
	wantRows(t, "the auditor's second page", e.inventory(nil, "top=1&continuationToken="+url.QueryEscape(page.next), auditor...), "p-3")
	wantRows(t, "the auditor names its workspace in lower case", e.inventory(nil, "workspaceResourceId="+url.QueryEscape(strings.ToLower(auditWorkspace)), auditor...), "p-4", "p-3")
	r := e.do(http.MethodGet, "/api/tokens?workspaceResourceId="+url.QueryEscape(ws(0)), nil, auditor...)
	if r.Status != 403 || r.errorCode(t) != "NotAuthorized" || !strings.Contains(string(r.Body), "inventory tokens in workspace "+ws(0)) {
		t.Errorf("the auditor naming a workspace outside its grant: %d %s", r.Status, r.Body)
	}

	// Not granted inventory anywhere (list is not inventory): 403.
	r = e.do(http.MethodGet, "/api/tokens", nil, reader...)
	if r.Status != 403 || r.errorCode(t) != "NotAuthorized" || !strings.Contains(string(r.Body), "inventory tokens in any workspace") {
		t.Errorf("a caller without inventory: %d %s", r.Status, r.Body)
	}
	if strings.Contains(string(r.Body), "Tokens.Create") || strings.Contains(string(r.Body), auditorObject) || strings.Contains(string(r.Body), "rg-audit") {
		t.Errorf("the refusal reveals the policy: %s", r.Body)
	}

	l := e.lineOf(audit.TokensInventoried, func(l auditLine) bool { return l.str("caller_object_id") == auditorObject })
	if l.str("action") != "inventory" || l.str("caller") != "principal" {
		t.Errorf("the auditor's audit line: %v", l)
	}
	refused := e.lineOf(audit.TokenRefused, func(l auditLine) bool { return l.str("caller_object_id") == readerObject })
	if refused.str("code") != "NotAuthorized" || refused.str("action") != "inventory" {
		t.Errorf("the refusal's audit line: %v", refused)
	}
	e.assertAuditLines()
}
