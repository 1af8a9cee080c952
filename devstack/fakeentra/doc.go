// Package fakeentra stands in for Microsoft Entra ID as the product meets it:
// the App Service / Azure Functions managed identity endpoint (StartMSI),
// optionally an authority for the client credentials grant
// (StartAuthority), and the access tokens both issue (NewToken, ParseToken,
// Validate), which the ARM, Databricks and Key Vault stand-ins check.
//
// # Managed identity endpoint (what azidentity v1.15.0 sends)
//
// azidentity.ManagedIdentityCredential delegates to MSAL Go v1.10.1
// (apps/managedidentity). MSAL picks the App Service source when both
// IDENTITY_ENDPOINT and IDENTITY_HEADER are set (and
// IDENTITY_SERVER_THUMBPRINT is not, which would mean Service Fabric). The
// source is chosen when the credential is constructed, but the endpoint and
// header values are re-read from the environment on every request. The request is
//
//	GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<resource>[&client_id=…|&object_id=…|&mi_res_id=…]
//	X-IDENTITY-HEADER: $IDENTITY_HEADER
//
// where resource is the single scope with "/.default" trimmed:
// "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default" asks for
// 2ff814a6-3304-4ab8-85cb-cd0e6f879c1d, "https://management.core.windows.net//.default"
// for https://management.core.windows.net/ and "https://management.azure.com/.default"
// for https://management.azure.com (no trailing slash). azidentity.ClientID,
// ObjectID and ResourceID map to client_id, object_id and mi_res_id;
// principal_id is accepted here too. The answer is
//
//	{"access_token":"…","expires_on":"<unix seconds as a string>","resource":"…","token_type":"Bearer","client_id":"…"}
//
// (MSAL also accepts expires_on as a number or as a date, and expires_in).
// Errors use App Service's shape {"statusCode":…,"message":"…","correlationId":"…"}:
// a missing X-IDENTITY-HEADER is 400, a wrong one 401, an unknown identity
// 400. azidentity does not retry inside MSAL for App Service; the azcore
// pipeline retries 408/429/500/502/503/504 (default 3 retries from 800 ms),
// so tests should shrink ClientOptions.Retry.
//
// Caveat for tests: MSAL keeps managed identity tokens in a process-wide
// cache keyed by the credential's identity ("system assigned", or the
// user-assigned client/object/resource id it was built with) and the
// resource, not by endpoint. A second credential in the same test binary,
// even against another MSI stand-in, gets the first one's cached token
// without calling its endpoint (and for the system-assigned identity the ids
// the stand-in is configured with cannot help, since the request names
// none). Give each test its own user-assigned identity (NewIdentity, passed
// as azidentity.ClientID), or use (*MSI).Credential, which calls the
// endpoint every time and needs no environment variables (so tests can run
// in parallel; t.Setenv forbids t.Parallel).
//
// # Authority (client credentials)
//
// StartAuthority serves GET /{tenant}/v2.0/.well-known/openid-configuration
// and POST /{tenant}/oauth2/v2.0/token (grant_type=client_credentials with
// client_secret). MSAL validates an authority host it does not know by
// calling https://login.microsoftonline.com/common/discovery/instance, which
// is unreachable offline, so azidentity.ClientSecretCredential must be built
// with DisableInstanceDiscovery: true, AZURE_AUTHORITY_HOST (or
// ClientOptions.Cloud.ActiveDirectoryAuthorityHost) set to (*Authority).URL,
// and a Transport trusting the test CA (azidentity refuses a non-https
// authority host). MSAL checks that the metadata's issuer has the
// authority's scheme and host, which this stand-in satisfies.
//
// # Tokens
//
// Tokens are JWT-shaped (base64url header.payload.signature) with v1.0 claims
// aud (the requested resource, verbatim), iss, iat, nbf, exp, appid, oid,
// sub, tid, idtyp, xms_mirid and a random jti. They are HMAC-signed with a
// key made when the process starts, so Validate accepts only tokens minted
// in this process by NewToken (which the stand-ins use); a fake such as
// azfake's "fake_token" is refused. SameAudience treats
// https://management.core.windows.net/ and https://management.core.windows.net
// as the same audience; ManagementAudiences are the two audiences ARM accepts.
//
// Deliberately not emulated: IMDS, Azure Arc, Service Fabric, Cloud Shell and
// the 2017-09-01 App Service protocol; real signatures (RS256, JWKS),
// refresh tokens, certificates, federated credentials, CAE claims
// challenges, and per-resource role assignments. Any resource is issued
// unless MSIOptions.Resources restricts them.
package fakeentra
