package fakedatabricks_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/devstack/fakearm"
	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// Example wires the stand-ins the way a devstack would: one CA, the
// managed identity endpoint, ARM pointing at a workspace, and the
// workspace itself, then issues a PAT with both Entra tokens.
func Example() {
	authority, _ := testca.New()
	msi, _ := fakeentra.StartMSI(fakeentra.MSIOptions{})
	defer msi.Close()
	ws, _ := fakedatabricks.StartWorkspace(authority, fakedatabricks.Options{
		ResourceID: "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/demo",
		AuthClock:  msi.Now, // follow the MSI clock's Advance
	})
	defer ws.Close()
	armSrv, _ := fakearm.Start(authority, fakearm.Options{})
	defer armSrv.Close()
	_ = armSrv.AddWorkspace(ws.ResourceID(), ws.Host(), fakearm.StateSucceeded)

	// The handler process would get: IDENTITY_ENDPOINT/IDENTITY_HEADER from
	// msi.Env(), AZURE_RESOURCE_MANAGER_ENDPOINT=armSrv.Endpoint(),
	// SSL_CERT_FILE=<file written by authority.WriteFile>, and
	// DATABRICKS_ALLOWED_HOSTS=ws.Host().
	cred := msi.Credential("")
	get := func(scope string) string {
		tok, _ := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{scope}})
		return tok.Token
	}
	req, _ := http.NewRequest(http.MethodPost, ws.URL()+"/api/2.0/token/create", strings.NewReader(`{"comment":"demo","lifetime_seconds":3600}`))
	req.Header.Set("Authorization", "Bearer "+get(fakeentra.DatabricksResource+"/.default"))
	req.Header.Set(fakedatabricks.HeaderManagementToken, get("https://management.core.windows.net//.default"))
	req.Header.Set(fakedatabricks.HeaderResourceID, ws.ResourceID())
	resp, err := authority.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, len(ws.LiveTokens()), ws.LiveTokens()[0].Comment, ws.Requests()[0].ManagementAudience)
	fmt.Println(msi.Calls())
	// Output:
	// 200 1 demo https://management.core.windows.net/
	// map[2ff814a6-3304-4ab8-85cb-cd0e6f879c1d:1 https://management.core.windows.net/:1]
}
