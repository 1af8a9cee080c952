package workspace

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const redirectBody = "REDIRECT-BODY-7c21: follow me"

func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	id, err := tokens.ParseWorkspaceID("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws-one")
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := allowlist.ParseHosts("attacker.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, scheme := range []string{"https", "http"} {
			t.Run(fmt.Sprintf("%d to %s", status, scheme), func(t *testing.T) {
				t.Parallel()
				// Where the redirect points: it answers as ARM would, with a
				// workspace on a host of its choosing.
				other := kittest.StartElsewhere(t, scheme, fmt.Sprintf(`{"id":%q,"properties":{"provisioningState":"Succeeded","workspaceUrl":"attacker.example"}}`, id.String()))
				arm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					other.Redirect(w, r, status, redirectBody)
				}))
				defer arm.Close()

				r := New(&azfake.TokenCredential{}, Options{ARMEndpoint: arm.URL, ManagementAudience: "https://management.core.windows.net/",
					Hosts: hosts, ClientOptions: policy.ClientOptions{Transport: arm.Client()}})
				ws, err := r.Resolve(t.Context(), id)
				if err == nil {
					t.Fatalf("Resolve = %+v; want an UpstreamError", ws)
				}
				kittest.WantRedirectRefused(t, "Resolve", err, arm.URL, status, other, redirectBody, "fake_token")
			})
		}
	}
}
