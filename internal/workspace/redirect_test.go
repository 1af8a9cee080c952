package workspace

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

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
				var calls atomic.Int64
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls.Add(1)
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprintf(w, `{"id":%q,"properties":{"provisioningState":"Succeeded","workspaceUrl":"attacker.example"}}`, id.String())
				})
				other := httptest.NewUnstartedServer(h)
				if scheme == "https" {
					other.StartTLS()
				} else {
					other.Start()
				}
				defer other.Close()
				arm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Location", other.URL+r.URL.RequestURI())
					w.WriteHeader(status)
					fmt.Fprint(w, redirectBody)
				}))
				defer arm.Close()

				r := New(&azfake.TokenCredential{}, Options{ARMEndpoint: arm.URL, ManagementAudience: "https://management.core.windows.net/",
					Hosts: hosts, ClientOptions: policy.ClientOptions{Transport: arm.Client()}})
				ws, err := r.Resolve(t.Context(), id)
				var te *tokens.Error
				if !errors.As(err, &te) || te.Code != tokens.CodeUpstreamError {
					t.Fatalf("Resolve = %+v, %v; want an UpstreamError", ws, err)
				}
				armHost := strings.TrimPrefix(arm.URL, "https://")
				otherURL, _ := url.Parse(other.URL)
				if !strings.Contains(te.Message, armHost) || !strings.Contains(te.Message, fmt.Sprint(status)) || !strings.Contains(te.Message, otherURL.Host) {
					t.Errorf("message %q does not name the host %s, the status and where it pointed", te.Message, armHost)
				}
				if strings.Contains(err.Error(), redirectBody) || strings.Contains(err.Error(), "fake_token") {
					t.Errorf("the error echoes the redirect body or a token: %v", err)
				}
				if n := calls.Load(); n != 0 {
					t.Errorf("the redirect target received %d requests (with the ARM token)", n)
				}
			})
		}
	}
}
