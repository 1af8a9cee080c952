package identity

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

const redirectBody = "REDIRECT-BODY-e0d4: follow me"

// The managed identity endpoint (App Service's, plain http on loopback as
// in Azure) answers with a redirect: the token request, identity header
// included, must not go there.
func TestRedirectsAreNotFollowed(t *testing.T) {
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			other := kittest.StartElsewhere(t, "http", `{"access_token":"attacker-chosen","expires_on":"4102444800","resource":"https://management.azure.com/","token_type":"Bearer"}`)
			msi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				other.Redirect(w, r, status, redirectBody)
			}))
			defer msi.Close()
			t.Setenv("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")
			t.Setenv("IDENTITY_ENDPOINT", msi.URL+"/msi/token")
			t.Setenv("IDENTITY_HEADER", "identity-header-secret")
			for _, k := range []string{"MSI_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_AUTHORITY_HOST"} {
				t.Setenv(k, "") // restored after the test
				os.Unsetenv(k)
			}

			cred, err := New(cloud.AzurePublic, nil)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
			if err == nil {
				t.Fatalf("GetToken succeeded (token %d bytes); want a refusal", len(tok.Token))
			}
			if n := other.Calls(); n != 0 {
				t.Errorf("the redirect target received %d token requests", n)
			}
			if s := err.Error(); strings.Contains(s, redirectBody) || strings.Contains(s, "identity-header-secret") {
				t.Errorf("the error echoes the redirect body or the identity header: %s", s)
			}
			// azidentity flattens the cause into its message, so this is
			// Entra's UpstreamError, with the host in the logged cause.
			if te := upstream.Common("Azure Resource Manager", err); te == nil || te.Code != tokens.CodeUpstreamError {
				t.Errorf("translated to %+v; want an UpstreamError", te)
			}
			if !strings.Contains(err.Error(), strings.TrimPrefix(msi.URL, "http://")+" answered HTTP "+fmt.Sprint(status)) {
				t.Errorf("the cause does not name the endpoint and the status: %v", err)
			}
		})
	}
}
