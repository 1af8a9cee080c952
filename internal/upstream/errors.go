package upstream

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// DefaultRetryAfter is what callers are told to wait when the upstream gave
// no Retry-After of its own.
const DefaultRetryAfter = 5 * time.Second

// serviceNames maps the display names the adapters pass to the audit
// lines' short service names.
var serviceNames = map[string]string{
	"Microsoft Entra ID":     ServiceEntra,
	"Azure Resource Manager": ServiceARM,
	"Azure Databricks":       ServiceDatabricks,
	"Azure Key Vault":        ServiceKeyVault,
	"Key Vault":              ServiceKeyVault,
	"Azure Service Bus":      ServiceServiceBus,
}

// Unavailable builds an UpstreamUnavailable error that says when to retry.
func Unavailable(service string, retryAfter time.Duration, err error) *tokens.Error {
	if retryAfter <= 0 {
		retryAfter = DefaultRetryAfter
	}
	return &tokens.Error{Code: tokens.CodeUpstreamUnavailable, RetryAfter: retryAfter, Err: err, Upstream: serviceNames[service],
		Message: service + " is throttling or unavailable and did not recover within the retry budget (UPSTREAM_RETRY_BUDGET)"}
}

// Common translates the failures every Azure call can have: a redirect, an
// Entra token that could not be had, the budget running out, a transport
// error, or a throttling/5xx answer that outlasted the retries. It returns nil for
// anything else, which the caller translates itself.
func Common(service string, err error) *tokens.Error {
	var authErr *azidentity.AuthenticationFailedError
	// azidentity marks "this credential cannot even try" errors (no managed
	// identity endpoint, no CLI login) as non-retriable.
	var unavailable interface{ NonRetriable() }
	var respErr *azcore.ResponseError
	var redirect *RedirectError
	// The credential's advice (identity.CredentialError): which identity the
	// settings select, and what to check.
	var advice interface{ Advice() string }
	switch {
	// First: a redirect met while fetching an Entra token is still a
	// redirect, and it is also NonRetriable, which the last case would
	// misread as "no credential".
	case errors.As(err, &redirect):
		return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
			Message: service + ": " + redirect.Error()}
	case errors.As(err, &authErr):
		// No answer at all (a timeout, a dropped connection, nothing
		// listening) is the endpoint being unavailable, not the identity
		// being refused: azidentity reports both as this error.
		if authErr.RawResponse == nil && !strings.Contains(err.Error(), redirectRefused) {
			return Unavailable("Microsoft Entra ID", 0, err)
		}
		if authErr.RawResponse != nil && isTransient(authErr.RawResponse.StatusCode) {
			return Unavailable("Microsoft Entra ID", RetryAfter(authErr.RawResponse), err)
		}
		if errors.As(err, &advice) {
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: ServiceEntra, PermissionDenied: true,
				Message: "the function got no Microsoft Entra token for its identity; " + advice.Advice()}
		}
		return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: ServiceEntra, PermissionDenied: true,
			Message: "Microsoft Entra ID refused to issue a token for the function's identity; check its managed identity or service principal settings (AZURE_CLIENT_ID, AZURE_TENANT_ID)"}
	case errors.Is(err, context.DeadlineExceeded):
		return Unavailable(service, 0, err)
	case errors.As(err, &respErr):
		if isTransient(respErr.StatusCode) {
			return Unavailable(service, RetryAfter(respErr.RawResponse), err)
		}
		return nil
	case errors.Is(err, context.Canceled):
		return Unavailable(service, 0, err)
	case errors.As(err, &unavailable):
		if errors.As(err, &advice) {
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: ServiceEntra,
				Message: "no Microsoft Entra credential is available to the function; " + advice.Advice()}
		}
		return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: ServiceEntra,
			Message: "no Microsoft Entra credential is available to the function (managed identity, service principal or Azure CLI)"}
	}
	return nil
}

func isTransient(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500
}
