package fakeentra_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

func startAuthority(t *testing.T) (*fakeentra.Authority, *testca.CA) {
	t.Helper()
	c, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	a, err := fakeentra.StartAuthority(c, fakeentra.AuthorityOptions{
		TenantID: "tenant-cc",
		Apps:     []fakeentra.App{{ClientID: "sp-client", ObjectID: "sp-oid", Secret: "s3cret"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a, c
}

func TestClientSecretCredential(t *testing.T) {
	t.Parallel()
	a, c := startAuthority(t)
	opts := &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: a.URL()},
			Transport: c.Client(),
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		DisableInstanceDiscovery: true,
	}
	cred, err := azidentity.NewClientSecretCredential(a.TenantID(), "sp-client", "s3cret", opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct{ scope, aud string }{
		{databricksScope, fakeentra.DatabricksResource},
		{managementScope, fakeentra.ManagementResource},
		{managementScope, fakeentra.ManagementResource},
	} {
		tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{sc.scope}})
		if err != nil {
			t.Fatal(err)
		}
		cl, err := fakeentra.Validate(tok.Token, time.Now(), sc.aud)
		if err != nil || cl.AppID != "sp-client" || cl.ObjectID != "sp-oid" || cl.TenantID != "tenant-cc" {
			t.Fatalf("claims %+v, %v", cl, err)
		}
	}
	calls := a.Calls()
	if calls["metadata"] != 1 || calls[fakeentra.DatabricksResource] != 1 || calls[fakeentra.ManagementResource] != 1 {
		t.Errorf("calls = %v", calls)
	}

	bad, err := azidentity.NewClientSecretCredential(a.TenantID(), "sp-client", "wrong", opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{databricksScope}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: %v", err)
	}
	if len(a.Issued()) != 2 {
		t.Errorf("issued %d", len(a.Issued()))
	}
}

func TestClientSecretCredentialFromEnvironment(t *testing.T) {
	a, c := startAuthority(t)
	t.Setenv("AZURE_AUTHORITY_HOST", a.URL())
	cred, err := azidentity.NewClientSecretCredential(a.TenantID(), "sp-client", "s3cret", &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Transport: c.Client(), Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond}},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	a.FailNext(1, http.StatusServiceUnavailable)
	tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://vault.azure.net/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fakeentra.Validate(tok.Token, time.Now(), fakeentra.VaultResource); err != nil {
		t.Fatal(err)
	}
}
