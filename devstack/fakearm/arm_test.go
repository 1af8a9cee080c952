package fakearm_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azarm "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/databricks/armdatabricks"

	"github.com/contoso/databricks-token-broker/devstack/fakearm"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

const (
	sub  = "11111111-2222-3333-4444-555555555555"
	wsID = "/subscriptions/" + sub + "/resourceGroups/rg-Data/providers/Microsoft.Databricks/workspaces/ws-One"
)

func start(t *testing.T, opts fakearm.Options) *fakearm.Server {
	t.Helper()
	s := kittest.Start(t, fakearm.Start, opts)
	if err := s.AddWorkspace(wsID, "adb-1234567890123456.7.azuredatabricks.net", ""); err != nil {
		t.Fatal(err)
	}
	return s
}

func client(t *testing.T, s *fakearm.Server, cred azcore.TokenCredential, audience string) *armdatabricks.WorkspacesClient {
	t.Helper()
	c, err := armdatabricks.NewWorkspacesClient(sub, cred, &azarm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: "https://login.microsoftonline.com/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: s.Endpoint(), Audience: audience},
			},
		},
		Transport: kittest.CA().Client(),
		Retry:     kittest.FastRetry,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestArmdatabricksWithManagedIdentity uses the real azidentity managed
// identity credential (App Service source) and armdatabricks.
func TestArmdatabricksWithManagedIdentity(t *testing.T) {
	// A fresh user-assigned identity: MSAL caches managed identity tokens
	// process-wide by identity and resource.
	id := fakeentra.NewIdentity()
	msi, err := fakeentra.StartMSI(fakeentra.MSIOptions{UserAssigned: []fakeentra.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	defer msi.Close()
	for k, v := range msi.Env() {
		t.Setenv(k, v)
	}
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(id.ClientID)})
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, fakearm.Options{TenantID: msi.TenantID(), APIVersions: []string{fakearm.APIVersion, "2024-05-01"}})
	c := client(t, s, cred, "https://management.core.windows.net/")

	// Different casing than registered: the canonical id comes back.
	got, err := c.Get(t.Context(), "RG-DATA", "WS-ONE", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := got.Workspace
	if *w.ID != wsID || *w.Name != "ws-One" || *w.Type != fakearm.ResourceType || *w.Location != "eastus2" || *w.SKU.Name != "premium" {
		t.Errorf("workspace = id %s name %s type %s loc %s", *w.ID, *w.Name, *w.Type, *w.Location)
	}
	p := w.Properties
	if *p.ProvisioningState != armdatabricks.ProvisioningStateSucceeded || *p.WorkspaceURL != "adb-1234567890123456.7.azuredatabricks.net" ||
		*p.WorkspaceID != "1234567890123456" || !strings.HasPrefix(*p.ManagedResourceGroupID, "/subscriptions/"+sub+"/resourceGroups/databricks-rg-ws-One-") ||
		p.CreatedDateTime == nil {
		t.Errorf("properties = %+v", p)
	}

	if err := s.SetProvisioningState(strings.ToUpper(wsID), fakearm.StateUpdating); err != nil {
		t.Fatal(err)
	}
	got, err = c.Get(t.Context(), "rg-data", "ws-one", nil)
	if err != nil || *got.Properties.ProvisioningState != armdatabricks.ProvisioningStateUpdating {
		t.Fatalf("after SetProvisioningState: %v", err)
	}

	_, err = c.Get(t.Context(), "rg-data", "missing", nil)
	kittest.WantResponseError(t, err, 404, "ResourceNotFound")
	if !strings.Contains(err.Error(), "The Resource 'Microsoft.Databricks/workspaces/missing' under resource group 'rg-data' was not found") {
		t.Errorf("message: %v", err)
	}
	_, err = c.Get(t.Context(), "rg-other", "ws-one", nil)
	kittest.WantResponseError(t, err, 404, "ResourceGroupNotFound")

	// Throttling with Retry-After: 0 is retried by the SDK.
	s.FailNext(2, http.StatusTooManyRequests)
	if _, err := c.Get(t.Context(), "rg-data", "ws-one", nil); err != nil {
		t.Fatalf("after 2 throttles: %v", err)
	}
	s.FailNext(4, http.StatusServiceUnavailable) // 1 try + 3 retries
	_, err = c.Get(t.Context(), "rg-data", "ws-one", nil)
	kittest.WantResponseError(t, err, 503, "ServiceUnavailable")

	if got := s.Calls()["get"]; got != 11 {
		t.Errorf("get calls = %d, want 11", got)
	}
	for i, aud := range s.Audiences() {
		if aud != fakeentra.ManagementResource {
			t.Errorf("request %d audience %q", i, aud)
		}
	}
	if got := msi.Calls()[fakeentra.ManagementResource]; got != 1 {
		t.Errorf("MSI calls = %d (token should be cached)", got)
	}
	for _, r := range s.Requests() {
		if r.APIVersion != fakearm.APIVersion {
			t.Errorf("api-version %q, armdatabricks v1.1.0 sends %q", r.APIVersion, fakearm.APIVersion)
		}
	}
}

// staticCred returns one fixed token.
type staticCred string

func (s staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	s := start(t, fakearm.Options{})
	now := time.Now()
	tok := func(aud string, exp time.Time) staticCred {
		return staticCred(fakeentra.NewToken(fakeentra.Claims{Audience: aud, ExpiresAt: exp.Unix(), ObjectID: "o"}))
	}
	for _, tc := range []struct {
		name string
		cred staticCred
		code string
	}{
		{"databricks audience", tok(fakeentra.DatabricksResource, now.Add(time.Hour)), "InvalidAuthenticationTokenAudience"},
		{"expired", tok(fakeentra.ARMResource, now.Add(-time.Minute)), "ExpiredAuthenticationToken"},
		{"garbage", staticCred("fake_token"), "InvalidAuthenticationToken"},
	} {
		_, err := client(t, s, tc.cred, "https://management.azure.com").Get(t.Context(), "rg-data", "ws-one", nil)
		kittest.WantResponseError(t, err, 401, tc.code)
	}
	// Both management audiences, with or without the trailing slash, are accepted.
	for _, aud := range []string{"https://management.azure.com", "https://management.azure.com/", "https://management.core.windows.net"} {
		if _, err := client(t, s, tok(aud, now.Add(time.Hour)), aud).Get(t.Context(), "rg-data", "ws-one", nil); err != nil {
			t.Errorf("aud %s: %v", aud, err)
		}
	}
	s.DenyRead("o", true)
	_, err := client(t, s, tok(fakeentra.ARMResource, now.Add(time.Hour)), fakeentra.ARMResource).Get(t.Context(), "rg-data", "ws-one", nil)
	kittest.WantResponseError(t, err, 403, "AuthorizationFailed")
}

func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	s := start(t, fakearm.Options{APIVersions: []string{fakearm.APIVersion}})
	good := fakeentra.NewToken(fakeentra.Claims{Audience: fakeentra.ARMResource, ExpiresAt: time.Now().Add(time.Hour).Unix(), ObjectID: "o"})
	get := func(path, token string) (int, http.Header, map[string]map[string]any) {
		resp, b := kittest.Do(t, http.MethodGet, s.Endpoint()+path, token)
		var m map[string]map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, resp.Header, m
	}
	path := "/subscriptions/" + sub + "/resourcegroups/rg-data/providers/microsoft.databricks/workspaces/ws-one"
	st, h, m := get(path+"?api-version="+fakearm.APIVersion, "")
	if st != 401 || m["error"]["code"] != "AuthenticationFailed" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer authorization_uri=") {
		t.Errorf("no token: %d %v %q", st, m, h.Get("WWW-Authenticate"))
	}
	if st, _, m := get(path, good); st != 400 || m["error"]["code"] != "MissingApiVersionParameter" {
		t.Errorf("no api-version: %d %v", st, m)
	}
	if st, _, m := get(path+"?api-version=2018-04-01", good); st != 400 || m["error"]["code"] != "NoRegisteredProviderFound" {
		t.Errorf("unsupported api-version: %d %v", st, m)
	}
	if st, _, m := get("/subscriptions/nope/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/x?api-version="+fakearm.APIVersion, good); st != 404 || m["error"]["code"] != "SubscriptionNotFound" {
		t.Errorf("unknown subscription: %d %v", st, m)
	}
	s.AddResourceGroup(sub, "rg-empty")
	if st, _, m := get("/subscriptions/"+sub+"/resourceGroups/RG-EMPTY/providers/Microsoft.Databricks/workspaces/x?api-version="+fakearm.APIVersion, good); st != 404 || m["error"]["code"] != "ResourceNotFound" {
		t.Errorf("empty group: %d %v", st, m)
	}
	if st, _, m := get("/subscriptions/"+sub+"/resourceGroups/rg-data/providers/Microsoft.Databricks/workspaces?api-version="+fakearm.APIVersion, good); st != 200 || len(m) != 1 {
		t.Errorf("list: %d %v", st, m)
	}
	if !s.RemoveWorkspace(strings.ToLower(wsID)) || s.RemoveWorkspace(wsID) {
		t.Fatal("RemoveWorkspace")
	}
	if st, _, m := get(path+"?api-version="+fakearm.APIVersion, good); st != 404 || m["error"]["code"] != "ResourceNotFound" {
		t.Errorf("removed: %d %v", st, m)
	}
	s.InjectFault(fakearm.Fault{Status: 429, RetryAfter: "17"})
	if st, h, m := get(path+"?api-version="+fakearm.APIVersion, good); st != 429 || h.Get("Retry-After") != "17" || m["error"]["code"] != "TooManyRequests" {
		t.Errorf("fault: %d %v", st, m)
	}
	s.InjectFault(fakearm.Fault{Delay: 20 * time.Millisecond})
	start := time.Now()
	if st, _, _ := get(path+"?api-version="+fakearm.APIVersion, good); st != 404 || time.Since(start) < 20*time.Millisecond {
		t.Errorf("delay fault: %d after %v", st, time.Since(start))
	}
	if c := s.Calls(); c["get"] != 8 || c["list"] != 1 {
		t.Errorf("calls = %v", c)
	}
	if err := s.AddWorkspace("/subscriptions/x/resourceGroups/y", "", ""); err == nil {
		t.Error("bad resource id accepted")
	}
	if err := s.AddWorkspace(wsID, "https://adb-1.azuredatabricks.net", ""); err == nil {
		t.Error("URL with scheme accepted")
	}
}
