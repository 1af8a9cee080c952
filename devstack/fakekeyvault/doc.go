// Package fakekeyvault stands in for the Azure Key Vault secrets data plane,
// enough for azsecrets v1.5.1 (api-version 2026-04-01): SetSecret (PUT
// /secrets/{name}), GetSecret (GET /secrets/{name}/{version}; an empty
// version, "/secrets/{name}/", is the latest), ListSecretProperties (GET
// /secrets, paged with nextLink/$skiptoken/maxresults),
// ListSecretPropertiesVersions (GET /secrets/{name}/versions),
// UpdateSecretProperties (PATCH /secrets/{name}/{version}), and soft delete:
// DeleteSecret, GetDeletedSecret, ListDeletedSecretProperties,
// RecoverDeletedSecret and PurgeDeletedSecret. Times are unix seconds; ids
// are https://127.0.0.1:PORT/secrets/{name}/{version} with 32-hex versions;
// lists never carry values. Names must match ^[0-9a-zA-Z-]{1,127}$ (else
// 400 BadParameter). Reading a disabled version is 403 Forbidden
// (innererror SecretDisabled) "Operation get is not allowed on a disabled
// secret."; setting a soft-deleted name is 409 Conflict
// (ObjectIsDeletedButRecoverable). exp and nbf are stored, not enforced (Key
// Vault treats them as informational for secrets).
//
// # Challenge authentication and what the client must set
//
// A request without Authorization gets 401 and
//
//	WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"
//
// azsecrets' challenge policy (sdk/security/keyvault/internal v1.2.0,
// challenge_policy.go) sends the first request of a client without a token
// and without its body, parses that header by splitting on spaces and "=",
// takes the tenant from the 4th "/"-separated part of authorization (passed
// as TokenRequestOptions.TenantID; managed identity ignores it,
// ClientSecretCredential requires it to be its own tenant or in
// AdditionallyAllowedTenants) and the scope from scope= or else resource=
// plus "/.default" (here https://vault.azure.net/.default; managed identity
// then asks for resource https://vault.azure.net). Then it resends with the
// token and the body.
//
// Unless the client sets azsecrets.ClientOptions.DisableChallengeResourceVerification
// to true, the policy requires the vault URL's host (including any port) to
// end with "." + the challenge resource's host, i.e. to be a subdomain of
// vault.azure.net; for https://127.0.0.1:PORT it fails with
// `challenge resource "https://vault.azure.net" doesn't match the requested
// domain`, before fetching a token. So a client of this stand-in must set
// DisableChallengeResourceVerification: true (and a Transport trusting the
// test CA: azcore's bearer policy refuses http). A 401 on a request that
// carried a token expires the cached token and runs the challenge once more.
//
// Tokens must be valid stand-in tokens (fakeentra.Validate) with audience
// https://vault.azure.net (either slash form) and, when they carry a tid,
// the vault's tenant; otherwise 401 with the challenge (AKV10022 audience,
// AKV10013 expired, AKV10032 issuer).
//
// Faults: InjectFault/FailNext (403 ForbiddenByRbac, 429 Throttled, 503,
// delays, drops) are consumed only by requests that carry a token; Forbid
// makes one secret name 403 for every operation.
//
// Deliberately not emulated: keys, certificates, managed secrets (kid),
// backup/restore, access policies and real RBAC, the 25 KiB limit beyond a
// simple size check, purge protection, and the scheduled purge itself.
package fakekeyvault
