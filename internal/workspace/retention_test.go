package workspace

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// fakeARM answers in memory: the workspaces of subscription "real" exist,
// everything else is 404, as ARM answers for a subscription it does not know.
type fakeARM struct{}

func (fakeARM) Do(req *http.Request) (*http.Response, error) {
	resp := &http.Response{Request: req, Header: http.Header{"Content-Type": {"application/json"}}}
	if strings.Contains(strings.ToLower(req.URL.Path), "/subscriptions/00000000-0000-4000-8000-00000000beef/") {
		resp.StatusCode = http.StatusOK
		id := strings.TrimSuffix(req.URL.Path, "/")
		name := id[strings.LastIndex(id, "/")+1:]
		resp.Body = io.NopCloser(strings.NewReader(fmt.Sprintf(`{"id":%q,"properties":{"provisioningState":"Succeeded","workspaceUrl":"adb-1.%s.azuredatabricks.net"}}`, id, name)))
		return resp, nil
	}
	resp.StatusCode = http.StatusNotFound
	resp.Body = io.NopCloser(strings.NewReader(`{"error":{"code":"SubscriptionNotFound","message":"The subscription could not be found."}}`))
	return resp, nil
}

// retained counts what the resolver keeps between calls.
func (r *Resolver) retained() (clients, cached, flights int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.clients), len(r.cache), len(r.flights)
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// Callers choose subscription ids; with DATABRICKS_ALLOWED_SUBSCRIPTIONS
// empty any is looked up. What a failed lookup leaves behind must not grow
// with them (issue 11: 20,000 made-up subscriptions kept ~97 MiB).
func TestMadeUpSubscriptionsAreNotRetained(t *testing.T) {
	t.Parallel()
	hosts, err := allowlist.ParseHosts("*.azuredatabricks.net")
	if err != nil {
		t.Fatal(err)
	}
	r := New(&azfake.TokenCredential{}, Options{ARMEndpoint: "https://management.azure.com", ManagementAudience: "https://management.core.windows.net/",
		Hosts: hosts, ClientOptions: policy.ClientOptions{Transport: fakeARM{}}})
	id := func(sub, name string) tokens.WorkspaceID {
		t.Helper()
		w, err := tokens.ParseWorkspaceID("/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	before := heapMiB()
	const n = 20000
	for i := range n {
		_, err := r.Resolve(t.Context(), id(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), "ws-one"))
		if te := tokens.AsError(err); te.Code != tokens.CodeWorkspaceNotFound {
			t.Fatalf("subscription %d: %v; want WorkspaceNotFound", i, err)
		}
	}
	after := heapMiB()
	clients, cached, flights := r.retained()
	t.Logf("%d made-up subscriptions: %d clients, %d cache entries, %d flights retained; heap %.1f -> %.1f MiB", n, clients, cached, flights, before, after)
	if clients != 0 || cached != 0 || flights != 0 {
		t.Errorf("after %d failed lookups the resolver keeps %d clients, %d cache entries, %d flights; want none", n, clients, cached, flights)
	}

	// A subscription that resolves keeps its one client, shared by its
	// workspaces, however the caller spells the id (ARM ignores case).
	for _, w := range []struct{ sub, name string }{
		{"00000000-0000-4000-8000-00000000beef", "ws-one"}, {"00000000-0000-4000-8000-00000000beef", "ws-two"},
		{"00000000-0000-4000-8000-00000000BEEF", "ws-three"}, {"00000000-0000-4000-8000-00000000bEeF", "ws-four"},
	} {
		if _, err := r.Resolve(t.Context(), id(w.sub, w.name)); err != nil {
			t.Fatal(err)
		}
	}
	if clients, cached, _ := r.retained(); clients != 1 || cached != 4 {
		t.Errorf("after resolving four workspaces of one subscription: %d clients, %d cache entries; want 1 and 4", clients, cached)
	}
}
