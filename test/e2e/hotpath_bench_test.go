package e2e

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/devstack/stack"
	"github.com/contoso/databricks-token-broker/handler"
	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/config"
	"github.com/contoso/databricks-token-broker/internal/databricks"
	"github.com/contoso/databricks-token-broker/internal/identity"
	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/workspace"
)

// BenchmarkCreateTokenHotPath runs POST /api/create-token in process, with
// the real service, ARM resolver and Databricks client against the
// stand-ins over TLS: the path `go test -bench -cpuprofile` profiles
// (docs/PERFORMANCE.md says what the profile showed).
func BenchmarkCreateTokenHotPath(b *testing.B) {
	st, err := stack.Start(b.Context(), stack.Options{Dir: b.TempDir(), MaxLiveTokens: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	hosts, _ := allowlist.ParseHosts(st.AllowedHosts())
	subs, _ := allowlist.ParseSubscriptions(stack.Subscription)
	cloud, _ := config.Load(os.Getenv)
	cred := identity.NewCache(st.MSI.Credential(""), time.Now)
	co := policy.ClientOptions{Transport: &http.Client{Transport: st.CA.Transport()}}
	resolver := workspace.New(cred, workspace.Options{ARMEndpoint: st.ARM.Endpoint(), ManagementAudience: cloud.Cloud.ManagementAudience,
		Hosts: hosts, Subscriptions: subs, ClientOptions: co})
	dbx := databricks.New(cred, databricks.Options{DatabricksScope: cloud.Cloud.DatabricksScope(), ManagementScope: cloud.Cloud.ManagementScope(), ClientOptions: co})
	// The ledger is required since the ledger merge; in memory, as a
	// single instance without storage runs it.
	svc := tokens.NewService(tokens.Deps{Resolver: resolver, API: dbx, Ledger: ledger.ForService(ledger.NewMemory(ledger.Options{}), 0), Now: time.Now})
	h := handler.New(slog.New(slog.DiscardHandler), svc, nil, handler.Options{
		Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: 24 * time.Hour}, RetryBudget: 30 * time.Second})
	body := []byte(`{"workspaceResourceId":"` + stack.WorkspaceResourceID(0) + `","lifetimeSeconds":3600,"comment":"bench"}`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/create-token", bytes.NewReader(body)))
		if rec.Code != http.StatusCreated {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
