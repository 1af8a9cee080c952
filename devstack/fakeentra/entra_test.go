package fakeentra_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

const (
	databricksScope = fakeentra.DatabricksResource + "/.default"
	managementScope = "https://management.core.windows.net//.default"
)

func setEnv(t *testing.T, m *fakeentra.MSI) {
	for k, v := range m.Env() {
		t.Setenv(k, v)
	}
}

// TestAzidentityAppService drives the real azidentity ManagedIdentityCredential
// (App Service source) against the stand-in.
func TestAzidentityAppService(t *testing.T) {
	id := fakeentra.NewIdentity()
	m := kittest.StartMSI(t, fakeentra.MSIOptions{UserAssigned: []fakeentra.Identity{id}})
	setEnv(t, m)

	for _, tc := range []struct {
		name string
		id   azidentity.ManagedIDKind
	}{
		{"client id", azidentity.ClientID(id.ClientID)},
		{"object id", azidentity.ObjectID(id.ObjectID)},
		{"resource id", azidentity.ResourceID(id.ResourceID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := m.Calls()
			cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
				ID: tc.id, ClientOptions: azcore.ClientOptions{Retry: kittest.FastRetry},
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, sc := range []struct{ scope, aud string }{
				{databricksScope, fakeentra.DatabricksResource},
				{managementScope, fakeentra.ManagementResource},
				// azidentity trims "/.default": this asks for the resource
				// without a trailing slash.
				{"https://management.azure.com/.default", "https://management.azure.com"},
			} {
				tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{sc.scope}})
				if err != nil {
					t.Fatal(err)
				}
				c, err := fakeentra.Validate(tok.Token, time.Now(), sc.aud)
				if err != nil {
					t.Fatalf("validate %s: %v", sc.aud, err)
				}
				if c.Audience != sc.aud || c.AppID != id.ClientID || c.ObjectID != id.ObjectID || c.TenantID != fakeentra.DefaultTenantID {
					t.Errorf("claims = %+v", c)
				}
				if d := time.Until(tok.ExpiresOn); d < 59*time.Minute || d > 61*time.Minute {
					t.Errorf("ExpiresOn in %v, want ~1h", d)
				}
				if !c.Expiry().Equal(tok.ExpiresOn) {
					t.Errorf("ExpiresOn %v != exp %v", tok.ExpiresOn, c.Expiry())
				}
			}
			after := m.Calls()
			// MSAL caches per identity kind and id plus resource: each
			// subtest fetches each resource once.
			if after[fakeentra.DatabricksResource]-before[fakeentra.DatabricksResource] != 1 ||
				after[fakeentra.ManagementResource]-before[fakeentra.ManagementResource] != 1 ||
				after["https://management.azure.com"]-before["https://management.azure.com"] != 1 {
				t.Errorf("calls before %v after %v", before, after)
			}
		})
	}
	issued := m.Issued()
	if len(issued) != 9 {
		t.Fatalf("issued %d tokens, want 9", len(issued))
	}
	seen := map[string]bool{}
	for _, tok := range issued {
		if seen[tok] {
			t.Fatal("duplicate token issued")
		}
		seen[tok] = true
	}
}

func TestAzidentitySystemAssignedAndFaults(t *testing.T) {
	// MSAL caches system-assigned tokens process-wide by resource, so this
	// test asks for a resource no other test (or -count run) uses.
	sys := fakeentra.NewIdentity()
	sys.ResourceID = ""
	resource := "api://devstack-" + sys.ClientID
	m := kittest.StartMSI(t, fakeentra.MSIOptions{SystemAssigned: sys, TenantID: "tenant-x", Lifetime: 3 * time.Hour})
	setEnv(t, m)
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Retry: kittest.FastRetry},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.FailNext(2, http.StatusInternalServerError)
	tok, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		t.Fatalf("after 2 transient failures: %v", err)
	}
	c, err := fakeentra.Validate(tok.Token, time.Now(), resource)
	if err != nil || c.TenantID != "tenant-x" || c.ObjectID != sys.ObjectID || c.MIResourceID != "" {
		t.Fatalf("claims %+v, err %v", c, err)
	}
	if got := m.Calls()[resource]; got != 3 {
		t.Errorf("calls = %d, want 3 (2 faults + 1)", got)
	}

	// A persistent failure surfaces as an authentication error.
	m.FailNext(10, http.StatusTooManyRequests)
	_, err = cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{resource + "/other/.default"}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("err = %v, want AuthenticationFailedError with 429", err)
	}
}

func TestAzidentityWrongHeader(t *testing.T) {
	m := kittest.StartMSI(t, fakeentra.MSIOptions{})
	t.Setenv("IDENTITY_ENDPOINT", m.Endpoint())
	t.Setenv("IDENTITY_HEADER", "not-the-secret")
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A resource nobody else asks for, so MSAL's process-wide cache cannot answer.
	_, err = cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"api://wrong-header-" + fakeentra.NewIdentity().ClientID + "/.default"}})
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want 401", err)
	}
	if len(m.Issued()) != 0 {
		t.Error("issued a token to a caller with the wrong header")
	}
}

func TestEndpointErrors(t *testing.T) {
	t.Parallel()
	m := kittest.StartMSI(t, fakeentra.MSIOptions{Resources: []string{fakeentra.DatabricksResource}})
	get := func(q url.Values, header string, set bool) int {
		req, _ := http.NewRequest(http.MethodGet, m.Endpoint()+"?"+q.Encode(), nil)
		if set {
			req.Header.Set("X-IDENTITY-HEADER", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ok := url.Values{"api-version": {"2019-08-01"}, "resource": {fakeentra.DatabricksResource}}
	for _, tc := range []struct {
		name   string
		q      url.Values
		header string
		set    bool
		want   int
	}{
		{"ok", ok, m.Header(), true, 200},
		{"no header", ok, "", false, 400},
		{"wrong header", ok, "x", true, 401},
		{"old api version", url.Values{"api-version": {"2017-09-01"}, "resource": {fakeentra.DatabricksResource}}, m.Header(), true, 400},
		{"no resource", url.Values{"api-version": {"2019-08-01"}}, m.Header(), true, 400},
		{"unknown resource", url.Values{"api-version": {"2019-08-01"}, "resource": {"https://example.com"}}, m.Header(), true, 400},
		{"unknown client id", url.Values{"api-version": {"2019-08-01"}, "resource": {fakeentra.DatabricksResource}, "client_id": {"nope"}}, m.Header(), true, 400},
		{"system client id", url.Values{"api-version": {"2019-08-01"}, "resource": {fakeentra.DatabricksResource}, "client_id": {fakeentra.DefaultClientID}}, m.Header(), true, 200},
	} {
		if got := get(tc.q, tc.header, tc.set); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestCredentialConcurrent(t *testing.T) {
	t.Parallel()
	m := kittest.StartMSI(t, fakeentra.MSIOptions{})
	cred := m.Credential("")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{managementScope}})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := fakeentra.Validate(tok.Token, time.Now(), fakeentra.ManagementAudiences...); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := m.Calls()[fakeentra.ManagementResource]; got != 20 {
		t.Errorf("calls = %d", got)
	}
	if len(m.Issued()) != 20 {
		t.Errorf("issued = %d", len(m.Issued()))
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	base := fakeentra.Claims{Audience: "https://management.core.windows.net", IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(), ObjectID: "o"}
	valid := fakeentra.NewToken(base)
	if valid == fakeentra.NewToken(base) {
		t.Fatal("two tokens with the same claims are equal; jti must make them unique")
	}
	tampered := func() string {
		parts := strings.Split(valid, ".")
		c := base
		c.ObjectID = "someone-else"
		other := strings.Split(fakeentra.NewToken(c), ".")
		return parts[0] + "." + other[1] + "." + parts[2]
	}()
	for _, tc := range []struct {
		name string
		raw  string
		now  time.Time
		auds []string
		want error
	}{
		{"ok no trailing slash vs slash", valid, now, []string{fakeentra.ManagementResource}, nil},
		{"ok management for ARM", valid, now, fakeentra.ManagementAudiences, nil},
		{"no audience check", valid, now, nil, nil},
		{"wrong audience", valid, now, []string{fakeentra.DatabricksResource}, fakeentra.ErrAudience},
		{"expired", valid, now.Add(time.Hour), nil, fakeentra.ErrExpired},
		{"not yet valid", valid, now.Add(-time.Second), nil, fakeentra.ErrNotYetValid},
		{"tampered", tampered, now, nil, fakeentra.ErrSignature},
		{"garbage", "fake_token", now, nil, fakeentra.ErrMalformed},
		{"bad base64", "a.b!.c", now, nil, fakeentra.ErrMalformed},
	} {
		_, err := fakeentra.Validate(tc.raw, tc.now, tc.auds...)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if c, err := fakeentra.ParseToken(valid); err != nil || c.ObjectID != "o" || c.ID == "" {
		t.Errorf("ParseToken = %+v, %v", c, err)
	}
	if tok, ok := fakeentra.BearerToken("bearer  abc "); !ok || tok != "abc" {
		t.Errorf("BearerToken = %q %v", tok, ok)
	}
	if _, ok := fakeentra.BearerToken("Basic abc"); ok {
		t.Error("Basic accepted as bearer")
	}
}

func TestAdvanceAndLifetime(t *testing.T) {
	t.Parallel()
	m := kittest.StartMSI(t, fakeentra.MSIOptions{Lifetime: 10 * time.Minute})
	m.Advance(-time.Hour)
	tok := m.Token(fakeentra.DatabricksResource)
	if _, err := fakeentra.Validate(tok, time.Now(), fakeentra.DatabricksResource); !errors.Is(err, fakeentra.ErrExpired) {
		t.Fatalf("err = %v, want expired", err)
	}
	if _, err := fakeentra.Validate(tok, m.Now(), fakeentra.DatabricksResource); err != nil {
		t.Fatalf("valid on the MSI clock: %v", err)
	}
}
