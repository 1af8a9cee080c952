package authz_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// How a handler uses the package: load the policy at start, read the
// caller per request, decide, and audit.
func Example() {
	policy, err := authz.LoadPolicy(`{"version":1,"rules":[{
		"principals":[{"appRole":"Tokens.Create"}],"actions":["create"],
		"workspaces":["/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-data-*"],
		"maxLifetime":"24h"}]}`, nil)
	if err != nil {
		panic(err) // config: "AUTHZ_POLICY: " + each line of err
	}

	// What App Service Authentication forwards for a Logic App's managed identity.
	principal := `{"auth_typ":"aad","claims":[` +
		`{"typ":"http://schemas.microsoft.com/identity/claims/objectidentifier","val":"3d1f0e2a-5b6c-4d7e-8f90-a1b2c3d4e5f6"},` +
		`{"typ":"appid","val":"9c8b7a6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"},{"typ":"roles","val":"Tokens.Create"}],` +
		`"name_typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name","role_typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}`
	h := http.Header{}
	h.Set("X-MS-CLIENT-PRINCIPAL", base64.StdEncoding.EncodeToString([]byte(principal)))
	h.Set("X-MS-CLIENT-PRINCIPAL-ID", "3d1f0e2a-5b6c-4d7e-8f90-a1b2c3d4e5f6")
	h.Set("X-MS-CLIENT-PRINCIPAL-IDP", "aad")

	pr, err := authz.PrincipalFromHeaders(h)
	if err != nil {
		panic(err) // 401 Unauthenticated
	}
	ws, _ := tokens.ParseWorkspaceID("/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-data-west/providers/Microsoft.Databricks/workspaces/lake")
	d := policy.Decide(pr, authz.ActionCreate, ws, tokens.Scopes{})
	fmt.Println(pr, "rule", d.Rule, "allowed", d.Allowed, "max", d.MaxLifetime)
	if lifetime := 48 * time.Hour; d.MaxLifetime > 0 && lifetime > d.MaxLifetime {
		fmt.Println(authz.LifetimeDeniedMessage(d.MaxLifetime, ws))
	}

	other, _ := tokens.ParseWorkspaceID("/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-web/providers/Microsoft.Databricks/workspaces/site")
	if d := policy.Decide(pr, authz.ActionCreate, other, tokens.Scopes{}); !d.Allowed {
		fmt.Println(authz.DeniedMessage(authz.ActionCreate, other))
	}
	// Output:
	// objectId=3d1f0e2a-5b6c-4d7e-8f90-a1b2c3d4e5f6 appId=9c8b7a6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d roles=["Tokens.Create"] rule 0 allowed true max 24h0m0s
	// lifetimeSeconds may be at most 86400 for this caller in workspace /subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-data-west/providers/Microsoft.Databricks/workspaces/lake
	// the caller is not authorized to create tokens in workspace /subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg-web/providers/Microsoft.Databricks/workspaces/site
}
