package fakekeyvault_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/fakekeyvault"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

func startVault(t *testing.T, opts fakekeyvault.Options) *fakekeyvault.Vault {
	t.Helper()
	return kittest.Start(t, fakekeyvault.Start, opts)
}

func newClient(t *testing.T, v *fakekeyvault.Vault, cred azcore.TokenCredential, disableVerification bool) *azsecrets.Client {
	t.Helper()
	c, err := azsecrets.NewClient(v.URL(), cred, &azsecrets.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: kittest.CA().Client(),
			Retry:     kittest.FastRetry,
		},
		DisableChallengeResourceVerification: disableVerification,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAzsecretsWithManagedIdentity runs the real azsecrets client, with the
// real azidentity managed identity credential, through the challenge flow.
func TestAzsecretsWithManagedIdentity(t *testing.T) {
	// A fresh user-assigned identity: MSAL caches managed identity tokens
	// process-wide by identity and resource.
	id := fakeentra.NewIdentity()
	msi := kittest.StartMSI(t, fakeentra.MSIOptions{TenantID: "kv-tenant", UserAssigned: []fakeentra.Identity{id}})
	for k, val := range msi.Env() {
		t.Setenv(k, val)
	}
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(id.ClientID)})
	if err != nil {
		t.Fatal(err)
	}
	v := startVault(t, fakekeyvault.Options{TenantID: msi.TenantID(), PageSize: 2})
	c := newClient(t, v, cred, true)
	ctx := t.Context()

	exp := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second).UTC()
	set, err := c.SetSecret(ctx, "databricks-ws-one", azsecrets.SetSecretParameters{
		Value:            to.Ptr("dapi0123"),
		ContentType:      to.Ptr("application/vnd.databricks.pat"),
		Tags:             map[string]*string{"tokenId": to.Ptr("abc"), "managedBy": to.Ptr("broker")},
		SecretAttributes: &azsecrets.SecretAttributes{Expires: &exp},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if set.ID.Name() != "databricks-ws-one" || len(set.ID.Version()) != 32 || !strings.HasPrefix(string(*set.ID), v.URL()+"/secrets/databricks-ws-one/") {
		t.Fatalf("id = %s", *set.ID)
	}
	if *set.Value != "dapi0123" || !set.Attributes.Expires.Equal(exp) || !*set.Attributes.Enabled || *set.Attributes.RecoveryLevel != fakekeyvault.RecoveryLevel || set.Attributes.Created == nil {
		t.Fatalf("set = %+v attrs %+v", set.Secret, *set.Attributes)
	}
	first := set.ID.Version()
	set2, err := c.SetSecret(ctx, "databricks-ws-one", azsecrets.SetSecretParameters{Value: to.Ptr("dapi4567")}, nil)
	if err != nil {
		t.Fatal(err)
	}

	latest, err := c.GetSecret(ctx, "databricks-ws-one", "", nil)
	if err != nil || *latest.Value != "dapi4567" || latest.ID.Version() != set2.ID.Version() {
		t.Fatalf("latest = %v, %v", latest, err)
	}
	old, err := c.GetSecret(ctx, "databricks-ws-one", first, nil)
	if err != nil || *old.Value != "dapi0123" || *old.Tags["tokenId"] != "abc" || *old.ContentType != "application/vnd.databricks.pat" {
		t.Fatalf("old = %+v, %v", old, err)
	}

	for i := range 4 {
		if _, err := c.SetSecret(ctx, fmt.Sprintf("other-%d", i), azsecrets.SetSecretParameters{Value: to.Ptr("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	pages := 0
	for pager := c.NewListSecretPropertiesPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, p := range page.Value {
			names = append(names, p.ID.Name())
			if p.ID.Version() != "" {
				t.Errorf("list item id has a version: %s", *p.ID)
			}
		}
	}
	if pages != 3 || strings.Join(names, ",") != "databricks-ws-one,other-0,other-1,other-2,other-3" {
		t.Errorf("%d pages: %v", pages, names)
	}
	var versions []string
	for pager := c.NewListSecretPropertiesVersionsPager("databricks-ws-one", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Value {
			versions = append(versions, p.ID.Version())
		}
	}
	if len(versions) != 2 || versions[0] != first {
		t.Errorf("versions = %v", versions)
	}

	// Disable the old version: reading it is Forbidden, listing still works.
	upd, err := c.UpdateSecretProperties(ctx, "databricks-ws-one", first, azsecrets.UpdateSecretPropertiesParameters{
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: to.Ptr(false)},
		Tags:             map[string]*string{"revoked": to.Ptr("true")},
	}, nil)
	if err != nil || *upd.Attributes.Enabled || upd.Value != nil || *upd.Tags["revoked"] != "true" {
		t.Fatalf("update = %+v, %v", upd, err)
	}
	_, err = c.GetSecret(ctx, "databricks-ws-one", first, nil)
	kittest.WantResponseError(t, err, 403, "Forbidden")
	if !strings.Contains(err.Error(), "Operation get is not allowed on a disabled secret.") {
		t.Errorf("message: %v", err)
	}

	calls := v.Calls()
	if calls["challenge"] != 1 || calls["set"] != 6 || calls["get"] != 3 || calls["list"] != 3 || calls["versions"] != 1 || calls["update"] != 1 {
		t.Errorf("calls = %v", calls)
	}
	if got := msi.Calls()[fakeentra.VaultResource]; got != 1 {
		t.Errorf("MSI calls for the vault = %d", got)
	}
	for _, r := range v.Requests() {
		if r.Authenticated && r.Audience != fakeentra.VaultResource {
			t.Errorf("audience %q", r.Audience)
		}
	}
	secrets := v.Secrets()
	if len(secrets) != 6 || secrets[0].Value != "dapi0123" || secrets[0].Enabled {
		t.Errorf("Secrets() = %+v", secrets[:1])
	}
}

func TestChallengeResourceVerification(t *testing.T) {
	t.Parallel()
	v := startVault(t, fakekeyvault.Options{})
	msi := kittest.StartMSI(t, fakeentra.MSIOptions{})
	_, err := newClient(t, v, msi.Credential(""), false).GetSecret(t.Context(), "x", "", nil)
	if err == nil || !strings.Contains(err.Error(), `challenge resource "https://vault.azure.net" doesn't match the requested domain`) {
		t.Fatalf("err = %v, want the challenge resource verification error", err)
	}
	if len(msi.Issued()) != 0 {
		t.Error("a token was fetched although verification failed")
	}
}

func TestFaultsAndForbidden(t *testing.T) {
	t.Parallel()
	v := startVault(t, fakekeyvault.Options{})
	msi := kittest.StartMSI(t, fakeentra.MSIOptions{})
	c := newClient(t, v, msi.Credential(""), true)
	ctx := t.Context()
	if _, err := v.PutSecret("seeded", "s3cret", "", nil); err != nil {
		t.Fatal(err)
	}
	// Establish the challenge first, so faults hit real operations.
	if _, err := c.GetSecret(ctx, "seeded", "", nil); err != nil {
		t.Fatal(err)
	}
	v.FailNext(1, http.StatusForbidden)
	_, err := c.GetSecret(ctx, "seeded", "", nil)
	kittest.WantResponseError(t, err, 403, "Forbidden")
	if !strings.Contains(err.Error(), "ForbiddenByRbac") || !strings.Contains(err.Error(), "getSecret/action") {
		t.Errorf("rbac message: %v", err)
	}
	v.FailNext(2, http.StatusTooManyRequests)
	if _, err := c.GetSecret(ctx, "seeded", "", nil); err != nil {
		t.Fatalf("after 2 throttles: %v", err)
	}
	v.FailNext(4, http.StatusServiceUnavailable)
	_, err = c.GetSecret(ctx, "seeded", "", nil)
	kittest.WantResponseError(t, err, 503, "ServiceUnavailable")

	v.Forbid("seeded", true)
	_, err = c.SetSecret(ctx, "seeded", azsecrets.SetSecretParameters{Value: to.Ptr("v2")}, nil)
	kittest.WantResponseError(t, err, 403, "Forbidden")
	v.Forbid("seeded", false)

	_, err = c.GetSecret(ctx, "missing", "", nil)
	kittest.WantResponseError(t, err, 404, "SecretNotFound")
	_, err = c.SetSecret(ctx, "bad_name", azsecrets.SetSecretParameters{Value: to.Ptr("v")}, nil)
	kittest.WantResponseError(t, err, 400, "BadParameter")
	_, err = c.SetSecret(ctx, "no-value", azsecrets.SetSecretParameters{}, nil)
	kittest.WantResponseError(t, err, 400, "BadParameter")

	// Soft delete: the name is blocked until purged or recovered.
	if _, err := c.DeleteSecret(ctx, "seeded", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetSecret(ctx, "seeded", "", nil)
	kittest.WantResponseError(t, err, 404, "SecretNotFound")
	_, err = c.SetSecret(ctx, "seeded", azsecrets.SetSecretParameters{Value: to.Ptr("v3")}, nil)
	kittest.WantResponseError(t, err, 409, "Conflict")
	if _, err := c.RecoverDeletedSecret(ctx, "seeded", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetSecret(ctx, "seeded", "", nil); err != nil || *got.Value != "s3cret" {
		t.Fatalf("after recover: %v", err)
	}
	if _, err := c.DeleteSecret(ctx, "seeded", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PurgeDeletedSecret(ctx, "seeded", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetSecret(ctx, "seeded", azsecrets.SetSecretParameters{Value: to.Ptr("v4")}, nil); err != nil {
		t.Fatalf("set after purge: %v", err)
	}
}

func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	v := startVault(t, fakekeyvault.Options{TenantID: "t-1"})
	do := func(method, path, token string) (*http.Response, string) {
		resp, b := kittest.Do(t, method, v.URL()+path, token)
		return resp, string(b)
	}
	resp, body := do(http.MethodGet, "/secrets/x?api-version="+fakekeyvault.APIVersion, "")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer authorization="https://login.microsoftonline.com/t-1", resource="https://vault.azure.net"` || !strings.Contains(body, `"code":"Unauthorized"`) {
		t.Errorf("challenge: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	mint := func(aud, tid string, ttl time.Duration) string {
		return fakeentra.NewToken(fakeentra.Claims{Audience: aud, TenantID: tid, ExpiresAt: time.Now().Add(ttl).Unix()})
	}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"wrong audience", mint(fakeentra.ARMResource, "t-1", time.Hour), "AKV10022"},
		{"expired", mint(fakeentra.VaultResource, "t-1", -time.Second), "AKV10013"},
		{"wrong tenant", mint(fakeentra.VaultResource, "t-2", time.Hour), "AKV10032"},
	} {
		resp, body := do(http.MethodGet, "/secrets/x?api-version="+fakekeyvault.APIVersion, tc.token)
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	good := mint("https://vault.azure.net/", "t-1", time.Hour)
	if resp, body := do(http.MethodGet, "/secrets/x", good); resp.StatusCode != 400 || !strings.Contains(body, "BadParameter") {
		t.Errorf("no api-version: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodGet, "/secrets/"+strings.Repeat("a", 128)+"?api-version=1", good); resp.StatusCode != 400 || !strings.Contains(body, "invalid name") {
		t.Errorf("long name: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodGet, "/secrets?api-version=1&maxresults=26", good); resp.StatusCode != 400 {
		t.Errorf("maxresults: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(http.MethodGet, "/secrets?api-version=1", good); resp.StatusCode != 200 || strings.TrimSpace(body) != `{"nextLink":null,"value":[]}` {
		t.Errorf("empty list: %d %s", resp.StatusCode, body)
	}
	if c := v.Calls(); c["challenge"] != 1 || c["get"] != 5 || c["list"] != 2 {
		t.Errorf("calls = %v", c)
	}
}
