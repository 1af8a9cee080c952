package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/faketables"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/stack"
	"github.com/contoso/databricks-token-broker/handler"
	"github.com/contoso/databricks-token-broker/test/apispec"
)

// The OpenAPI document (api/openapi.json) is what Logic Apps, Power
// Automate and API Management users import; these tests keep it from
// drifting away from the binary. The first checks the document against the
// routes and function folders; the second calls every documented operation
// on the real binary, behind the host simulator, provokes every documented
// status it can, and validates each request and each answer against the
// document.

// wantOperations is the surface issue #7 asks for: one typed action per
// HTTP function, named as a Logic Apps author sees it.
var wantOperations = map[string]struct {
	path, method, summary string
	statuses              []int
}{
	"CreateToken": {"/create-token", http.MethodPost, "Create Databricks token", []int{200, 201, 400, 401, 403, 404, 405, 409, 413, 500, 502, 503}},
	"RevokeToken": {"/revoke-token", http.MethodPost, "Revoke Databricks token", []int{200, 400, 401, 403, 404, 405, 413, 500, 502, 503}},
	"ListTokens":  {"/list-tokens", http.MethodGet, "List Databricks tokens", []int{200, 400, 401, 403, 404, 405, 500, 502, 503}},
	// Issue 13: the ledger's inventory. No 404: it asks ARM nothing.
	"ListTokenInventory": {"/tokens", http.MethodGet, "List token inventory", []int{200, 400, 401, 403, 405, 500, 502, 503}},
}

func loadSpec(t *testing.T) *apispec.Spec {
	t.Helper()
	spec, err := apispec.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestOpenAPIDocumentMatchesRoutes(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	v2 := spec.V2
	if v2.BasePath != "/api" || v2.Host == "" || !slices.Equal(v2.Schemes, []string{"https"}) {
		t.Errorf("basePath %q, host %q, schemes %v; want /api, a placeholder host, [https]", v2.BasePath, v2.Host, v2.Schemes)
	}

	// Every route the binary serves under /api is documented, and nothing
	// else is: the host forwards /api/<folder> to the same path.
	served := map[string]string{} // path -> function folder
	for folder, route := range handler.Routes {
		if strings.HasPrefix(route, "/api/") {
			served[route] = folder
		}
	}
	for route := range served {
		if v2.Paths[strings.TrimPrefix(route, v2.BasePath)] == nil {
			t.Errorf("the binary serves %s but api/openapi.json does not document it", route)
		}
	}
	for path := range v2.Paths {
		if _, ok := served[v2.BasePath+path]; !ok {
			t.Errorf("api/openapi.json documents %s%s, which the binary does not serve", v2.BasePath, path)
		}
	}

	// Each documented path has exactly the methods its function.json lets
	// through the host, with the operation issue #7 names.
	for path, item := range spec.V3.Paths.Map() {
		folder, ok := served[v2.BasePath+path]
		if !ok {
			continue // reported above
		}
		methods := functionMethods(t, folder)
		var documented []string
		for m, op := range item.Operations() {
			documented = append(documented, m)
			want, ok := wantOperations[op.OperationID]
			if !ok || want.path != path || want.method != m {
				t.Errorf("%s %s: operationId %q; want one of %v at its own path and method", m, path, op.OperationID, wantOperations)
				continue
			}
			if op.Summary != want.summary {
				t.Errorf("%s summary %q; want %q (the Logic Apps action name)", op.OperationID, op.Summary, want.summary)
			}
			var got []int
			for code := range op.Responses.Map() {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s documents response %q; only explicit statuses are documented", op.OperationID, code)
				}
				got = append(got, n)
			}
			slices.Sort(got)
			if !slices.Equal(got, want.statuses) {
				t.Errorf("%s documents statuses %v; want %v", op.OperationID, got, want.statuses)
			}
			checkResponseConventions(t, op)
		}
		slices.Sort(documented)
		if !slices.Equal(documented, methods) {
			t.Errorf("%s: documented methods %v; %s/function.json lets %v through the host", path, documented, folder, methods)
		}
	}
	for opID, want := range wantOperations {
		if item := spec.V3.Paths.Value(want.path); item == nil || item.GetOperation(want.method) == nil || item.GetOperation(want.method).OperationID != opID {
			t.Errorf("%s is not documented as %s %s", opID, want.method, want.path)
		}
	}

	// The function key, in the header or the query, is the documented security.
	schemes := spec.V3.Components.SecuritySchemes
	for name, want := range map[string][2]string{"functionKeyHeader": {"header", "x-functions-key"}, "functionKeyQuery": {"query", "code"}} {
		s := schemes[name]
		if s == nil || s.Value.Type != "apiKey" || s.Value.In != want[0] || s.Value.Name != want[1] {
			t.Errorf("security scheme %s = %+v; want apiKey in %s named %s", name, s, want[0], want[1])
		}
	}
	if len(spec.V3.Security) != 2 {
		t.Errorf("security = %v; want either function key scheme", spec.V3.Security)
	}
}

// checkResponseConventions: errors use the error schema, 503 says when to
// retry, 405 says what is allowed, 401 (the host's) has no body.
func checkResponseConventions(t *testing.T, op *openapi3.Operation) {
	t.Helper()
	for code, ref := range op.Responses.Map() {
		r := ref.Value
		schema := ""
		if mt := r.Content.Get("application/json"); mt != nil && mt.Schema != nil {
			schema = mt.Schema.Ref
		}
		status, _ := strconv.Atoi(code)
		switch {
		case status == 401:
			if len(r.Content) != 0 {
				t.Errorf("%s 401 documents a body; the host answers it empty", op.OperationID)
			}
		case status >= 400 && schema != "#/components/schemas/ErrorResponse":
			t.Errorf("%s %d: schema %q; want the error schema", op.OperationID, status, schema)
		case status < 400 && schema == "":
			t.Errorf("%s %d: no schema", op.OperationID, status)
		}
		for status, header := range map[int]string{503: "Retry-After", 405: "Allow"} {
			if code == strconv.Itoa(status) && r.Headers[header] == nil {
				t.Errorf("%s %d does not document the %s header", op.OperationID, status, header)
			}
		}
	}
}

// functionMethods reads the methods a function folder's httpTrigger lists
// (upper case, sorted).
func functionMethods(t *testing.T, folder string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), folder, "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fn struct {
		Bindings []struct {
			Type    string   `json:"type"`
			Methods []string `json:"methods"`
		} `json:"bindings"`
	}
	if err := json.Unmarshal(b, &fn); err != nil {
		t.Fatalf("%s/function.json: %v", folder, err)
	}
	var out []string
	for _, b := range fn.Bindings {
		if b.Type == "httpTrigger" {
			for _, m := range b.Methods {
				out = append(out, strings.ToUpper(m))
			}
		}
	}
	slices.Sort(out)
	return out
}

// apiCall is one request of the conformance test and what must come back.
type apiCall struct {
	name   string
	op     string // operationId whose responses document the answer
	method string // default: the operation's
	path   string // under /api, with any query
	// query, when set, is appended to path when the call is made (a value
	// an earlier call returned, such as a continuation token).
	query    func() string
	body     any // string, or marshalled to JSON
	header   []string
	direct   bool // call the binary itself, not through the host
	noKey    bool // send no function key
	docValid bool // the request conforms to the document
	status   int
	code     string // the error code, for an error
	// retryAfter is the Retry-After a 503 must carry, when the test knows it.
	retryAfter string
	before     func()
	check      func(t *testing.T, body map[string]any)
}

// testFunctionKey is sent with every call: the main host checks no key
// (as Core Tools), the keyed host checks it.
const testFunctionKey = "openapi-test-function-key"

func TestOpenAPIResponsesConformToDocument(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t)
	var (
		quotaWS      = "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/full"
		foreignSub   = "/subscriptions/99999999-9999-9999-9999-999999999999/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/other"
		foreignHost  = "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/elsewhere"
		unknown      = "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/missing"
		provisioning = "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/fresh"
	)
	e := start(t, envOptions{settings: []string{"UPSTREAM_RETRY_BUDGET=3s"}, before: func(s *stack.Stack) {
		// A workspace whose one allowed live token is taken.
		w, err := fakedatabricks.StartWorkspace(s.CA, fakedatabricks.Options{ResourceID: quotaWS, MaxLiveTokens: 1})
		if err != nil {
			t.Fatal(err)
		}
		s.Workspaces = append(s.Workspaces, w)
		if err := s.ARM.AddWorkspace(quotaWS, w.Host(), "Succeeded"); err != nil {
			t.Fatal(err)
		}
		w.CreateToken(s.MSI.Identity().ObjectID, s.MSI.Identity().ClientID, "seed", time.Hour)
		// A workspace outside the host allow-list, and one still provisioning.
		rogue, err := fakedatabricks.StartWorkspace(s.CA, fakedatabricks.Options{ResourceID: foreignHost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rogue.Close() })
		if err := s.ARM.AddWorkspace(foreignHost, rogue.Host(), "Succeeded"); err != nil {
			t.Fatal(err)
		}
		if err := s.ARM.AddWorkspace(provisioning, "", "Accepted"); err != nil {
			t.Fatal(err)
		}
	}})
	dbw := e.stack.Workspaces[0]
	id := e.stack.MSI.Identity()
	// A token that never expires, so that list-tokens answers a null expiresAt.
	dbw.CreateToken(id.ObjectID, id.ClientID, "never expires", 0)
	lowerCased := strings.NewReplacer("resourceGroups", "resourcegroups", "Microsoft.Databricks", "microsoft.databricks").Replace(ws(0))
	long := strings.Repeat("x", 201)
	big := strings.Repeat("a", 70000)
	var tokenID string          // set by the first create
	var inventoryNext string    // the continuation token of an inventory page
	var inventoryFirst []string // that page's token ids

	calls := []apiCall{
		// CreateToken
		{name: "create with every inline field", op: "CreateToken", path: "/create-token", docValid: true, status: 201,
			body: map[string]any{"workspaceResourceId": ws(0), "comment": "nightly ETL", "lifetimeSeconds": 3600, "requestId": "openapi-1"},
			check: func(t *testing.T, b map[string]any) {
				tokenID, _ = b["tokenId"].(string)
				if v, _ := b["tokenValue"].(string); !strings.HasPrefix(v, "dapi") {
					t.Errorf("201 of inline delivery has no tokenValue")
				}
			}},
		{name: "create replayed", op: "CreateToken", path: "/create-token", docValid: true, status: 200,
			body: map[string]any{"workspaceResourceId": ws(0), "comment": "nightly ETL", "lifetimeSeconds": 3600, "requestId": "openapi-1"},
			check: func(t *testing.T, b map[string]any) {
				if _, ok := b["tokenValue"]; ok || b["tokenId"] != tokenID {
					t.Errorf("replay: tokenValue present or another token: %v", b)
				}
			}},
		{name: "create with the request id in the header", op: "CreateToken", path: "/create-token", docValid: true, status: 201,
			body: map[string]any{"workspaceResourceId": lowerCased}, header: []string{"x-ms-client-request-id", "hdr:openapi.2"}},
		{name: "create scoped", op: "CreateToken", path: "/create-token", docValid: true, status: 201,
			body: map[string]any{"workspaceResourceId": ws(0), "scopes": []string{"sql:read:restricted-query", "unity-catalog:read"}, "autoscope": false, "lifetimeSeconds": 3600},
			check: func(t *testing.T, b map[string]any) {
				if s, _ := b["scopes"].([]any); len(s) != 2 {
					t.Errorf("scoped create: scopes %v", b["scopes"])
				}
			}},
		{name: "create autoscoped", op: "CreateToken", path: "/create-token", docValid: true, status: 201,
			body: map[string]any{"workspaceResourceId": ws(0), "scopes": []string{"jobs"}, "autoscope": true, "lifetimeSeconds": 3600}},
		{name: "create bad scopes", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "scopes": []string{"SQL", "sql:write"}}, status: 400, code: "InvalidRequest"},
		{name: "create empty scopes", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "scopes": []string{}}, status: 400, code: "InvalidRequest"},
		{name: "create malformed JSON", op: "CreateToken", path: "/create-token", body: `{"workspaceResourceId":`, status: 400, code: "InvalidRequest"},
		{name: "create empty body", op: "CreateToken", path: "/create-token", body: ``, status: 400, code: "InvalidRequest"},
		{name: "create without workspace", op: "CreateToken", path: "/create-token", body: map[string]any{"comment": "x"}, status: 400, code: "InvalidRequest"},
		{name: "create unknown field", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "scope": "all"}, status: 400, code: "InvalidRequest"},
		{name: "create bad resource id", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": "/subscriptions/x"}, status: 400, code: "InvalidRequest"},
		{name: "create resource group ending in a dot", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": strings.Replace(ws(0), "rg-demo", "rg-demo.", 1)}, status: 400, code: "InvalidRequest"},
		{name: "create lifetime 0", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 0}, status: 400, code: "InvalidRequest"},
		{name: "create lifetime not whole", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 1.5}, status: 400, code: "InvalidRequest"},
		{name: "create lifetime quoted", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": "60"}, status: 400, code: "InvalidRequest"},
		{name: "create lifetime over TOKEN_MAX_LIFETIME", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 7776001}, status: 400, code: "InvalidRequest"},
		{name: "create comment too long", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "comment": long}, status: 400, code: "InvalidRequest"},
		{name: "create comment of 200 wide characters", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "comment": strings.Repeat("é", 200)}, status: 201},
		{name: "create comment with a control character", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "comment": "a\x1bb"}, status: 400, code: "InvalidRequest"},
		{name: "create comment with a C1 control character", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "comment": "a\u0085b"}, status: 400, code: "InvalidRequest"},
		{name: "create secretName without Key Vault", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "secretName": "etl"}, status: 400, code: "InvalidRequest"},
		{name: "create bad secretName", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "secretName": "etl token"}, status: 400, code: "InvalidRequest"},
		{name: "create bad requestId", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "requestId": "has spaces"}, status: 400, code: "InvalidRequest"},
		{name: "create bad client request id header", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0)}, header: []string{"x-ms-client-request-id", "has spaces in it"}, status: 400, code: "InvalidRequest"},
		{name: "create subscription outside the allow-list", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": foreignSub}, status: 403, code: "WorkspaceNotAllowed"},
		{name: "create host outside the allow-list", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": foreignHost}, status: 403, code: "WorkspaceNotAllowed"},
		{name: "create unknown workspace", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": unknown}, status: 404, code: "WorkspaceNotFound"},
		{name: "create wrong method", op: "CreateToken", method: http.MethodPut, path: "/create-token", direct: true, status: 405, code: "MethodNotAllowed"},
		{name: "create over quota", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": quotaWS}, status: 409, code: "TokenQuotaExceeded"},
		{name: "create body over 64 KiB", op: "CreateToken", path: "/create-token", body: `{"comment":"` + big + `"}`, status: 413, code: "RequestTooLarge"},
		{name: "create gateway HTML 403", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0)}, status: 502, code: "UpstreamError",
			before: func() { dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.HTML403{}) }},
		{name: "create throttled beyond the budget", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0)}, status: 503, code: "UpstreamUnavailable",
			before:     func() { dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "120"}) },
			retryAfter: "120"},
		{name: "create workspace still provisioning", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": provisioning}, status: 503, code: "WorkspaceNotReady"},

		// ListTokens
		{name: "list", op: "ListTokens", method: http.MethodGet, path: "/list-tokens?workspaceResourceId=" + ws(0), docValid: true, status: 200,
			check: func(t *testing.T, b map[string]any) {
				toks, _ := b["tokens"].([]any)
				never := 0
				for _, tok := range toks {
					if m, _ := tok.(map[string]any); m != nil && m["expiresAt"] == nil {
						never++
					}
				}
				scoped := 0
				for _, tok := range toks {
					if m, _ := tok.(map[string]any); m != nil && m["scopes"] != nil {
						scoped++
					}
				}
				if len(toks) < 3 || never != 1 || scoped != 2 {
					t.Errorf("list: %d tokens, %d never expiring, %d scoped; want at least 3, 1 with expiresAt null, 2 with scopes", len(toks), never, scoped)
				}
			}},
		{name: "list with lower-case id segments", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + lowerCased, docValid: true, status: 200},
		{name: "list without workspace", op: "ListTokens", path: "/list-tokens", status: 400, code: "InvalidRequest"},
		{name: "list bad resource id", op: "ListTokens", path: "/list-tokens?workspaceResourceId=x", status: 400, code: "InvalidRequest"},
		{name: "list subscription outside the allow-list", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + foreignSub, docValid: true, status: 403, code: "WorkspaceNotAllowed"},
		{name: "list unknown workspace", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + unknown, docValid: true, status: 404, code: "WorkspaceNotFound"},
		{name: "list wrong method", op: "ListTokens", method: http.MethodPost, path: "/list-tokens", direct: true, status: 405, code: "MethodNotAllowed"},
		{name: "list gateway HTML 403", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), docValid: true, status: 502, code: "UpstreamError",
			before: func() { dbw.InjectFault(fakedatabricks.OpList, fakedatabricks.HTML403{}) }},
		{name: "list throttled beyond the budget", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), docValid: true, status: 503, code: "UpstreamUnavailable",
			before:     func() { dbw.InjectFault(fakedatabricks.OpList, fakedatabricks.Status429{RetryAfter: "120"}) },
			retryAfter: "120"},
		{name: "list 503 storm outlasting the budget", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), docValid: true, status: 503, code: "UpstreamUnavailable",
			before: func() {
				for range 30 {
					dbw.InjectFault(fakedatabricks.OpList, fakedatabricks.Status503{})
				}
			}},
		{name: "list workspace still provisioning", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + provisioning, docValid: true, status: 503, code: "WorkspaceNotReady",
			before: func() { dbw.ClearFaults() }},

		// ListTokenInventory: the ledger (in memory here) holds every create above.
		{name: "inventory", op: "ListTokenInventory", path: "/tokens", docValid: true, status: 200,
			check: func(t *testing.T, b map[string]any) {
				if ids := checkInventoryPage(t, b); len(ids) < 3 {
					t.Errorf("inventory: %d tokens; the creates above issued at least 3", len(ids))
				}
				if _, more := b["continuationToken"]; more {
					t.Errorf("the default page of 100 should hold every token: %v", b["continuationToken"])
				}
			}},
		{name: "inventory of one workspace with every filter", op: "ListTokenInventory", docValid: true, status: 200,
			path: "/tokens?workspaceResourceId=" + lowerCased + "&status=live,rotated&expiringWithin=744h&top=2",
			check: func(t *testing.T, b map[string]any) {
				if inventoryFirst = checkInventoryPage(t, b); len(inventoryFirst) != 2 {
					t.Errorf("a page of top=2 has %d tokens", len(inventoryFirst))
				}
				inventoryNext, _ = b["continuationToken"].(string)
				if inventoryNext == "" {
					t.Errorf("a page of 2 out of more has no continuationToken")
				}
			}},
		{name: "inventory next page", op: "ListTokenInventory", docValid: true, status: 200,
			path:  "/tokens?workspaceResourceId=" + lowerCased + "&status=live,rotated&expiringWithin=744h&top=2&continuationToken=",
			query: func() string { return url.QueryEscape(inventoryNext) },
			check: func(t *testing.T, b map[string]any) {
				next := checkInventoryPage(t, b)
				if len(next) == 0 || slices.ContainsFunc(next, func(id string) bool { return slices.Contains(inventoryFirst, id) }) {
					t.Errorf("the next page %v is empty or repeats the first %v", next, inventoryFirst)
				}
			}},
		{name: "inventory by requester", op: "ListTokenInventory", path: "/tokens?requestedBy=" + readerObject + "&status=revoked", docValid: true, status: 200,
			check: func(t *testing.T, b map[string]any) {
				if toks, _ := b["tokens"].([]any); len(toks) != 0 {
					t.Errorf("%d tokens requested by a caller that asked for none", len(toks))
				}
			}},
		{name: "inventory with every parameter wrong", op: "ListTokenInventory", status: 400, code: "InvalidRequest",
			path: "/tokens?workspaceResourceId=x&status=stale&expiringWithin=7d&requestedBy=someone&top=0"},
		{name: "inventory top over 500", op: "ListTokenInventory", path: "/tokens?top=501", status: 400, code: "InvalidRequest"},
		{name: "inventory forged continuation token", op: "ListTokenInventory", path: "/tokens?continuationToken=forged", docValid: true, status: 400, code: "InvalidRequest"},
		{name: "inventory wrong method", op: "ListTokenInventory", method: http.MethodPost, path: "/tokens", direct: true, status: 405, code: "MethodNotAllowed"},

		// RevokeToken
		{name: "revoke", op: "RevokeToken", path: "/revoke-token", docValid: true, status: 200,
			body: func() any {
				return map[string]any{"workspaceResourceId": ws(0), "tokenId": tokenID, "requestId": "openapi-revoke-1"}
			},
			check: wantRevokeStatus("revoked")},
		{name: "revoke again", op: "RevokeToken", path: "/revoke-token", docValid: true, status: 200,
			body:   func() any { return map[string]any{"workspaceResourceId": ws(0), "tokenId": tokenID} },
			header: []string{"x-ms-client-request-id", "openapi-revoke-2"}, check: wantRevokeStatus("notFound")},
		{name: "revoke empty object", op: "RevokeToken", path: "/revoke-token", body: map[string]any{}, status: 400, code: "InvalidRequest"},
		{name: "revoke without token id", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0)}, status: 400, code: "InvalidRequest"},
		{name: "revoke both forms", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"secretUri": "https://kv.vault.azure.net/secrets/x", "tokenId": "abc"}, status: 400, code: "InvalidRequest"},
		{name: "revoke by secret without Key Vault", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"secretUri": "https://kv.vault.azure.net/secrets/x"}, status: 400, code: "InvalidRequest"},
		{name: "revoke bad token id", op: "RevokeToken", path: "/revoke-token", body: map[string]any{"workspaceResourceId": ws(0), "tokenId": "a b"}, status: 400, code: "InvalidRequest"},
		{name: "revoke unknown field", op: "RevokeToken", path: "/revoke-token", body: map[string]any{"workspaceResourceId": ws(0), "tokenId": "abc", "force": true}, status: 400, code: "InvalidRequest"},
		{name: "revoke subscription outside the allow-list", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"workspaceResourceId": foreignSub, "tokenId": "abc"}, status: 403, code: "WorkspaceNotAllowed"},
		{name: "revoke unknown workspace", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"workspaceResourceId": unknown, "tokenId": "abc"}, status: 404, code: "WorkspaceNotFound"},
		{name: "revoke wrong method", op: "RevokeToken", method: http.MethodGet, path: "/revoke-token", direct: true, status: 405, code: "MethodNotAllowed"},
		{name: "revoke body over 64 KiB", op: "RevokeToken", path: "/revoke-token", body: `{"tokenId":"` + big + `"}`, status: 413, code: "RequestTooLarge"},
		{name: "revoke gateway HTML 403", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "tokenId": "abc"}, status: 502, code: "UpstreamError",
			before: func() { dbw.InjectFault(fakedatabricks.OpDelete, fakedatabricks.HTML403{}) }},
		{name: "revoke throttled beyond the budget", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "tokenId": "abc"}, status: 503, code: "UpstreamUnavailable",
			before:     func() { dbw.InjectFault(fakedatabricks.OpDelete, fakedatabricks.Status429{RetryAfter: "120"}) },
			retryAfter: "120"},
		{name: "revoke workspace still provisioning", op: "RevokeToken", path: "/revoke-token", docValid: true, body: map[string]any{"workspaceResourceId": provisioning, "tokenId": "abc"}, status: 503, code: "WorkspaceNotReady"},
	}

	v := newConformance(t, spec)
	main := endpoint{host: e.host.URL(), direct: handlerURL(t, e)}
	for _, c := range calls {
		if c.before != nil {
			c.before()
		}
		v.run(t, main, c)
	}

	// Key Vault delivery: the record carries secretUri instead of the value,
	// secretName is taken, and revoke takes the {secretUri} form.
	kv := start(t, envOptions{keyVault: true, settings: []string{"UPSTREAM_RETRY_BUDGET=3s"}})
	var secretURI string
	for _, c := range []apiCall{
		{name: "Key Vault: create with every field", op: "CreateToken", path: "/create-token", docValid: true, status: 201,
			body: map[string]any{"workspaceResourceId": ws(0), "comment": "etl", "lifetimeSeconds": 86400, "secretName": "etl-token", "requestId": "openapi-kv-1"},
			check: func(t *testing.T, b map[string]any) {
				secretURI, _ = b["secretUri"].(string)
				if _, ok := b["tokenValue"]; ok || !strings.Contains(secretURI, "/secrets/etl-token/") {
					t.Errorf("Key Vault delivery: tokenValue present or secretUri %q", secretURI)
				}
			}},
		{name: "Key Vault: create replayed", op: "CreateToken", path: "/create-token", docValid: true, status: 200,
			body: map[string]any{"workspaceResourceId": ws(0), "comment": "etl", "lifetimeSeconds": 86400, "secretName": "etl-token", "requestId": "openapi-kv-1"},
			check: func(t *testing.T, b map[string]any) {
				if b["secretUri"] != secretURI {
					t.Errorf("replay: secretUri %v; want %s", b["secretUri"], secretURI)
				}
			}},
		{name: "Key Vault: create bad secretName", op: "CreateToken", path: "/create-token", body: map[string]any{"workspaceResourceId": ws(0), "secretName": "bad_name"}, status: 400, code: "InvalidRequest"},
		{name: "Key Vault: create into a vault that refuses", op: "CreateToken", path: "/create-token", docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "secretName": "forbidden"}, status: 502, code: "UpstreamError",
			before: func() { kv.stack.Vault.Forbid("forbidden", true) }},
		{name: "Key Vault: revoke by secret", op: "RevokeToken", path: "/revoke-token", docValid: true, status: 200,
			body: func() any { return map[string]any{"secretUri": secretURI} }, check: wantRevokeStatus("revoked")},
		{name: "Key Vault: revoke by secret again", op: "RevokeToken", path: "/revoke-token", docValid: true, status: 200,
			body: func() any { return map[string]any{"secretUri": secretURI} }, check: wantRevokeStatus("notFound")},
		{name: "Key Vault: revoke a secret of another vault", op: "RevokeToken", path: "/revoke-token", docValid: true, status: 400, code: "InvalidRequest",
			body: map[string]any{"secretUri": "https://other.vault.azure.net/secrets/" + stack.SecretName(0) + "/abc"}},
	} {
		if c.before != nil {
			c.before()
		}
		v.run(t, endpoint{host: kv.host.URL()}, c)
	}

	// 401 is the host's: a second host in front of the same stand-ins,
	// this one checking the function key (in the header or the query).
	keyed := startKeyedHost(t, e)
	for _, c := range []apiCall{
		{name: "create without a key", op: "CreateToken", path: "/create-token", noKey: true, body: map[string]any{"workspaceResourceId": ws(0)}, status: 401},
		{name: "revoke without a key", op: "RevokeToken", path: "/revoke-token", noKey: true, body: map[string]any{"workspaceResourceId": ws(0), "tokenId": "abc"}, status: 401},
		{name: "list without a key", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), noKey: true, status: 401},
		{name: "list with a wrong key", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), noKey: true, header: []string{"x-functions-key", "wrong"}, docValid: true, status: 401},
		{name: "list with the key in the header", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), docValid: true, status: 200},
		{name: "list with the key in the query", op: "ListTokens", path: "/list-tokens?code=" + testFunctionKey + "&workspaceResourceId=" + ws(0), noKey: true, docValid: true, status: 200},
		{name: "inventory without a key", op: "ListTokenInventory", path: "/tokens", noKey: true, status: 401},
		{name: "inventory with the key in the query", op: "ListTokenInventory", path: "/tokens?code=" + testFunctionKey, noKey: true, docValid: true, status: 200},
	} {
		v.run(t, endpoint{host: keyed.URL()}, c)
	}

	// 403 NotAuthorized: App Service Authentication in front and AUTHZ_POLICY
	// set, callers presenting Entra tokens the policy does not grant.
	pol := start(t, envOptions{easyAuth: true, settings: []string{"AUTHZ_POLICY=" + testPolicy()}})
	intruder := bearer(fakeeasyauth.Caller{AppID: intruderApp})
	creator := bearer(fakeeasyauth.Caller{AppID: logicAppID, Roles: []string{"Tokens.Create"}})
	for _, c := range []apiCall{
		{name: "create not granted", op: "CreateToken", path: "/create-token", header: intruder, docValid: true, body: map[string]any{"workspaceResourceId": ws(0)}, status: 403, code: "NotAuthorized"},
		{name: "create above the rule's lifetime", op: "CreateToken", path: "/create-token", header: creator, docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 7200}, status: 403, code: "NotAuthorized"},
		{name: "create with the authentication scope no rule names", op: "CreateToken", path: "/create-token", header: creator, docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "scopes": []string{"authentication"}}, status: 403, code: "NotAuthorized"},
		{name: "revoke not granted", op: "RevokeToken", path: "/revoke-token", header: intruder, docValid: true, body: map[string]any{"workspaceResourceId": ws(0), "tokenId": "abc"}, status: 403, code: "NotAuthorized"},
		{name: "list not granted", op: "ListTokens", path: "/list-tokens?workspaceResourceId=" + ws(0), header: intruder, docValid: true, status: 403, code: "NotAuthorized"},
		{name: "inventory not granted anywhere", op: "ListTokenInventory", path: "/tokens", header: creator, docValid: true, status: 403, code: "NotAuthorized"},
		{name: "inventory of a workspace not granted", op: "ListTokenInventory", path: "/tokens?workspaceResourceId=" + ws(0), header: intruder, docValid: true, status: 403, code: "NotAuthorized"},
	} {
		v.run(t, endpoint{host: pol.host.URL()}, c)
	}

	// The inventory's own upstream is the ledger's table: Azurite refusing
	// a wrong account key is 502, Azurite gone is 503.
	led := start(t, envOptions{ledger: true, settings: []string{"UPSTREAM_RETRY_BUDGET=3s"}})
	wrongKey := led.instance("AzureWebJobsStorage=" + strings.Replace(led.stack.Tables.ConnectionString(), faketables.AccountKey, base64.StdEncoding.EncodeToString([]byte("not the account key of devstoreaccount1")), 1))
	v.run(t, endpoint{host: wrongKey.URL()}, apiCall{name: "inventory with a key the table refuses", op: "ListTokenInventory", path: "/tokens", docValid: true, status: 502, code: "UpstreamError"})
	v.run(t, endpoint{host: led.host.URL()}, apiCall{name: "inventory from Azurite", op: "ListTokenInventory", path: "/tokens", docValid: true, status: 200})
	if err := led.stack.Tables.Close(); err != nil {
		t.Logf("closing Azurite: %v", err)
	}
	v.run(t, endpoint{host: led.host.URL()}, apiCall{name: "inventory without its table", op: "ListTokenInventory", path: "/tokens", docValid: true, status: 503, code: "UpstreamUnavailable"})

	// Every documented status was seen, except those no test can provoke.
	notProvokable := map[int]string{500: "InternalError needs a bug or a panic in the handler"}
	for opID, want := range wantOperations {
		for _, status := range want.statuses {
			if !v.seen[opID][status] {
				if why, ok := notProvokable[status]; ok {
					t.Logf("%s %d not exercised: %s", opID, status, why)
					continue
				}
				t.Errorf("%s %d is documented but no call provoked it", opID, status)
			}
		}
	}
}

// checkInventoryPage: rows newest first, each with the contract's fields
// and never a value. It returns the rows' token ids.
func checkInventoryPage(t *testing.T, b map[string]any) []string {
	t.Helper()
	toks, _ := b["tokens"].([]any)
	var ids []string
	prev := ""
	for _, tok := range toks {
		m, _ := tok.(map[string]any)
		created, _ := m["createdAt"].(string)
		if prev != "" && created > prev {
			t.Errorf("inventory not newest first: %s after %s", created, prev)
		}
		prev = created
		id, _ := m["tokenId"].(string)
		ids = append(ids, id)
		if _, ok := m["tokenValue"]; ok || m["status"] == nil || m["requestId"] == nil || m["tokenId"] == nil {
			t.Errorf("inventory row: %v", m)
		}
	}
	if raw, _ := json.Marshal(b); strings.Contains(string(raw), "dapi") {
		t.Errorf("an inventory answer holds something shaped like a token value")
	}
	return ids
}

func wantRevokeStatus(want string) func(*testing.T, map[string]any) {
	return func(t *testing.T, b map[string]any) {
		if b["status"] != want {
			t.Errorf("revoke status %v; want %s", b["status"], want)
		}
	}
}

// endpoint is where calls go: the host's front door, and the binary itself
// for methods the host does not forward.
type endpoint struct{ host, direct string }

// conformance validates calls against the document and records which
// documented statuses they provoked.
type conformance struct {
	spec   *apispec.Spec
	routes map[string]*routers.Route // by operationId
	seen   map[string]map[int]bool
}

func newConformance(t *testing.T, spec *apispec.Spec) *conformance {
	t.Helper()
	v := &conformance{spec: spec, routes: map[string]*routers.Route{}, seen: map[string]map[int]bool{}}
	for path, item := range spec.V3.Paths.Map() {
		for method, op := range item.Operations() {
			v.routes[op.OperationID] = &routers.Route{Spec: spec.V3, Path: path, PathItem: item, Method: method, Operation: op}
			v.seen[op.OperationID] = map[int]bool{}
		}
	}
	return v
}

// functionKeyPresent stands in for the Functions host's key check in
// request validation: the scheme's header or query parameter is present.
func functionKeyPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	s := in.SecurityScheme
	switch {
	case s.Type != "apiKey":
		return fmt.Errorf("scheme %s is %s, not apiKey", in.SecuritySchemeName, s.Type)
	case s.In == "header" && r.Header.Get(s.Name) != "":
		return nil
	case s.In == "query" && r.URL.Query().Get(s.Name) != "":
		return nil
	}
	return fmt.Errorf("no %s %s", s.In, s.Name)
}

func (v *conformance) run(t *testing.T, at endpoint, c apiCall) {
	t.Helper()
	route := v.routes[c.op]
	if route == nil {
		t.Fatalf("%s: no operation %s in the document", c.name, c.op)
	}
	method := c.method
	if method == "" {
		method = route.Method
	}
	body := c.body
	if f, ok := body.(func() any); ok {
		body = f()
	}
	var payload []byte
	switch b := body.(type) {
	case nil:
	case string:
		payload = []byte(b)
	default:
		payload, _ = json.Marshal(b)
	}
	base := at.host
	if c.direct {
		base = at.direct
	}
	if c.query != nil {
		c.path += c.query()
	}
	newRequest := func() *http.Request {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(t.Context(), method, base+"/api"+c.path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if !c.noKey {
			req.Header.Set("x-functions-key", testFunctionKey)
		}
		for i := 0; i+1 < len(c.header); i += 2 {
			req.Header.Set(c.header[i], c.header[i+1])
		}
		return req
	}

	reqIn := &openapi3filter.RequestValidationInput{
		Request: newRequest(), Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: functionKeyPresent},
	}
	if method == route.Method { // a wrong method has no operation to validate against
		err := openapi3filter.ValidateRequest(t.Context(), reqIn)
		if c.docValid && err != nil {
			t.Errorf("%s: the document refuses a request the binary must take as valid input: %v", c.name, err)
		} else if !c.docValid && err == nil {
			t.Errorf("%s: the document accepts a request the binary refuses (%d): the request schema says less than the code enforces", c.name, c.status)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	resp, err := http.DefaultClient.Do(newRequest().WithContext(ctx))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != c.status {
		t.Errorf("%s: %s %s answered %d %s; want %d", c.name, method, c.path, resp.StatusCode, clipBody(respBody), c.status)
		return
	}
	v.seen[c.op][resp.StatusCode] = true

	respIn := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: newRequest(), Route: route},
		Status:                 resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	respIn.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(t.Context(), respIn); err != nil {
		t.Errorf("%s: the %d answer does not match the document: %v\n%s", c.name, resp.StatusCode, err, clipBody(respBody))
	}
	ref := route.Operation.Responses.Status(resp.StatusCode)
	if ref == nil {
		return // reported by ValidateResponse
	}
	documented := ref.Value
	// Swagger 2.0 has no required response headers; the document's
	// descriptions promise them, so they must be there.
	for name := range documented.Headers {
		if resp.Header.Get(name) == "" {
			t.Errorf("%s: %d answer lacks the documented %s header", c.name, resp.StatusCode, name)
		}
	}
	if resp.StatusCode == http.StatusMethodNotAllowed && !strings.Contains(resp.Header.Get("Allow"), route.Method) {
		t.Errorf("%s: Allow %q does not name %s", c.name, resp.Header.Get("Allow"), route.Method)
	}
	if got := resp.Header.Get("Retry-After"); c.retryAfter != "" && got != c.retryAfter {
		t.Errorf("%s: Retry-After %q; want %s", c.name, got, c.retryAfter)
	}
	if len(respBody) == 0 {
		if documented.Content != nil {
			t.Errorf("%s: %d answer has no body; the document promises one", c.name, resp.StatusCode)
		}
		return
	}
	var got map[string]any
	if err := json.Unmarshal(respBody, &got); err != nil {
		t.Errorf("%s: body is not a JSON object: %v", c.name, err)
		return
	}
	if resp.StatusCode >= 400 {
		e, _ := got["error"].(map[string]any)
		code, _ := e["code"].(string)
		if code != c.code {
			t.Errorf("%s: error code %q; want %q", c.name, code, c.code)
		}
		if documented.Description == nil || !strings.Contains(*documented.Description, code) {
			t.Errorf("%s: the document's %d description does not name the code %s", c.name, resp.StatusCode, code)
		}
		v.checkDetailTargets(t, c.name, route, e)
	}
	if c.check != nil {
		c.check(t, got)
	}
}

// checkDetailTargets: each problem names a documented field or parameter,
// the body, or a field the document does not know (an unknown field).
func (v *conformance) checkDetailTargets(t *testing.T, name string, route *routers.Route, e map[string]any) {
	t.Helper()
	known := map[string]bool{"body": true}
	for _, p := range route.Operation.Parameters {
		known[p.Value.Name] = true
	}
	if rb := route.Operation.RequestBody; rb != nil {
		if mt := rb.Value.Content.Get("application/json"); mt != nil {
			for prop := range mt.Schema.Value.Properties {
				known[prop] = true
			}
		}
	}
	details, _ := e["details"].([]any)
	for _, d := range details {
		m, _ := d.(map[string]any)
		target, _ := m["target"].(string)
		msg, _ := m["message"].(string)
		// An element of an array field is named field[i] (scopes[2]).
		if base, rest, ok := strings.Cut(target, "["); ok && strings.HasSuffix(rest, "]") {
			if _, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil {
				target = base
			}
		}
		if !known[target] && !strings.HasSuffix(msg, "is not a known field") {
			t.Errorf("%s: detail target %q is neither documented nor an unknown field (%q)", name, target, msg)
		}
	}
}

func clipBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// startKeyedHost starts a second host simulator, which requires the
// function key, in front of the same stand-ins.
func startKeyedHost(t *testing.T, e *env) *hostsim.Host {
	t.Helper()
	out := &kit.Buffer{}
	h, err := hostsim.Start(t.Context(), hostsim.Options{
		AppRoot: repoRoot(), Executable: handlerBinary, Env: append(e.stack.Env(), "LOG_LEVEL=debug"),
		FunctionKey: testFunctionKey, Stdout: out, Stderr: out,
		Logf: func(format string, args ...any) { t.Logf("keyed host: "+format, args...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("keyed host: %v", err)
		}
		if strings.Contains(out.String(), "dapi") {
			t.Error("a token value appears in the keyed host's handler output")
		}
	})
	return h
}
