// Package identity provides the service's one Microsoft Entra credential:
// azidentity's DefaultAzureCredential (managed identity in Azure, a service
// principal by secret, certificate or federated token, the Azure CLI
// locally; AZURE_TOKEN_CREDENTIALS narrows the chain), wrapped in a cache
// that all clients share.
//
// The cache matters twice over: Databricks rejects Entra tokens with 30
// seconds or less to live, so tokens are renewed well before that; and the
// Databricks management header needs the same ARM-audience token as the
// workspace lookup, so one token per audience serves every call.
package identity

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// New returns the default credential for the given cloud, wrapped in a Cache.
// It does not contact Entra: tokens are fetched on first use, so start-up
// never waits on the network. transport is the shared HTTP client (nil: a
// default one); either way it never follows redirects, so a token request
// — with a client secret, assertion or the identity endpoint's header —
// goes only to the endpoint configured, and a token only comes from there.
func New(c cloud.Configuration, transport policy.Transporter) (*Cache, error) {
	// azidentity reads AZURE_AUTHORITY_HOST only when the cloud names no
	// authority; the setting is documented as azidentity's own, so it wins.
	if host := os.Getenv("AZURE_AUTHORITY_HOST"); host != "" {
		c.ActiveDirectoryAuthorityHost = host
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
		ClientOptions: azcore.ClientOptions{Cloud: c, Transport: upstream.NoRedirects(transport)},
		// MSAL validates an authority host it does not know by asking
		// login.microsoftonline.com, which an Entra stand-in on this
		// machine is not; only for a loopback AZURE_AUTHORITY_HOST is that
		// skipped. Real authorities are always validated.
		DisableInstanceDiscovery: loopbackAuthority(os.Getenv("AZURE_AUTHORITY_HOST")),
	})
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	cache := NewCache(cred, time.Now)
	cache.advice = Advice(os.Getenv)
	return cache, nil
}

// CredentialError is a failure to get a token from the credential, with
// advice for whoever reads the resulting error: which identity the settings
// select and what to check. It unwraps to azidentity's error.
type CredentialError struct {
	Err    error
	advice string
}

func (e *CredentialError) Error() string { return e.Err.Error() }
func (e *CredentialError) Unwrap() error { return e.Err }

// Advice is what to check, in a sentence or two without any secret.
func (e *CredentialError) Advice() string { return e.advice }

// Advice says, for the identity these settings select (read with getenv),
// where the token should have come from and what to do when none came:
// the function's managed identity in Azure, a service principal or workload
// identity from AZURE_* settings, else (locally) the Azure CLI's sign-in,
// following DefaultAzureCredential's order and AZURE_TOKEN_CREDENTIALS.
func Advice(getenv func(string) string) string {
	given := strings.TrimSpace(getenv("AZURE_TOKEN_CREDENTIALS"))
	narrowed := strings.ToLower(given)
	inAzure := getenv("WEBSITE_SITE_NAME") != "" || getenv("IDENTITY_ENDPOINT") != "" || getenv("MSI_ENDPOINT") != ""
	servicePrincipal := getenv("AZURE_CLIENT_SECRET") != "" || getenv("AZURE_CLIENT_CERTIFICATE_PATH") != ""
	workload := getenv("AZURE_FEDERATED_TOKEN_FILE") != ""
	const cli = "sign in with the Azure CLI: `az login` (and `az account set --subscription <id>` for the tenant of the workspaces); `azd auth login` works too"
	switch {
	case narrowed == "managedidentitycredential" || (inAzure && (narrowed == "" || narrowed == "prod") && !servicePrincipal && !workload):
		return "the identity is the function's managed identity (AZURE_TOKEN_CREDENTIALS=" + orDefault(given) + "): check that AZURE_CLIENT_ID is the client id of a user-assigned identity attached to the Function App (the Bicep sets both), or unset it for a system-assigned one"
	case narrowed == "azureclicredential" || narrowed == "azuredeveloperclicredential" || narrowed == "dev":
		return "the identity is your own Azure CLI (or Azure Developer CLI) sign-in, as AZURE_TOKEN_CREDENTIALS=" + given + " selects: " + cli
	case servicePrincipal && (narrowed == "" || narrowed == "prod" || narrowed == "environmentcredential"):
		return "the identity is the service principal AZURE_CLIENT_ID in the tenant AZURE_TENANT_ID (EnvironmentCredential): check both ids and its AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH"
	case workload && (narrowed == "" || narrowed == "prod" || narrowed == "workloadidentitycredential"):
		return "the identity is the workload identity AZURE_CLIENT_ID in AZURE_TENANT_ID (WorkloadIdentityCredential): check AZURE_FEDERATED_TOKEN_FILE and the federated credential"
	case narrowed == "" && !inAzure:
		return "no credential in DefaultAzureCredential's chain gave a token: a service principal from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), workload identity, managed identity, the Azure CLI, the Azure Developer CLI. Locally, " + cli + ", and set AZURE_TOKEN_CREDENTIALS=AzureCLICredential to try only that"
	}
	return "check the credential AZURE_TOKEN_CREDENTIALS=" + orDefault(given) + " selects (azidentity's DefaultAzureCredential conventions); locally, " + cli
}

func orDefault(v string) string {
	if v == "" {
		return "(unset)"
	}
	return v
}

func loopbackAuthority(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Host != "" && allowlist.IsLoopback(u.Hostname())
}

// RefreshBefore is how long before expiry a cached token is renewed.
// Databricks refuses tokens with 30 s or less left; five minutes also
// covers clock skew and the longest upstream call.
const RefreshBefore = 5 * time.Minute

// Cache is an azcore.TokenCredential that keeps one token per scope set and
// renews it RefreshBefore its expiry (or at the issuer's refresh_in hint).
// Concurrent callers for the same scopes share one Entra request.
type Cache struct {
	cred   azcore.TokenCredential
	now    func() time.Time
	advice string // for CredentialError; empty: errors are returned as they are

	mu      sync.Mutex
	entries map[string]*entry
}

type entry struct {
	// turn is held while fetching; a channel, so that a waiter whose
	// budget ends stops waiting (one slow fetch must not hold every other
	// caller past its own deadline).
	turn chan struct{}
	tok  azcore.AccessToken
}

// NewCache wraps cred.
func NewCache(cred azcore.TokenCredential, now func() time.Time) *Cache {
	return &Cache{cred: cred, now: now, entries: map[string]*entry{}}
}

// GetToken implements azcore.TokenCredential.
func (c *Cache) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if opts.Claims != "" {
		// A claims challenge (continuous access evaluation) asks for a
		// token with claims the upstream chose, for the one retry it
		// answers; caching it under those claims would serve no one and
		// grow without bound.
		return c.cred.GetToken(ctx, opts)
	}
	key := strings.Join(opts.Scopes, " ") + "|" + opts.TenantID
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &entry{turn: make(chan struct{}, 1)}
		c.entries[key] = e
	}
	c.mu.Unlock()

	select {
	case e.turn <- struct{}{}:
	case <-ctx.Done():
		return azcore.AccessToken{}, ctx.Err()
	}
	defer func() { <-e.turn }()
	if c.fresh(e.tok) {
		return e.tok, nil
	}
	start := time.Now()
	tok, err := c.cred.GetToken(ctx, opts)
	upstream.Record(ctx, upstream.ServiceEntra, time.Since(start), entraStatus(err))
	if err != nil {
		// azidentity errors describe the failed flow without token values.
		if c.advice != "" {
			err = &CredentialError{Err: err, advice: c.advice}
		}
		return azcore.AccessToken{}, err
	}
	e.tok = tok
	return tok, nil
}

// entraStatus is the HTTP status of a failed token request, if Entra answered.
func entraStatus(err error) int {
	if authErr, ok := errors.AsType[*azidentity.AuthenticationFailedError](err); ok && authErr.RawResponse != nil {
		return authErr.RawResponse.StatusCode
	}
	return 0
}

func (c *Cache) fresh(t azcore.AccessToken) bool {
	if t.Token == "" {
		return false
	}
	now := c.now()
	if !t.RefreshOn.IsZero() && !now.Before(t.RefreshOn) {
		return false
	}
	return now.Add(RefreshBefore).Before(t.ExpiresOn)
}
