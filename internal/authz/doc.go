// Package authz decides who may mint, list, inventory and revoke which tokens.
//
// # Caller identity (PrincipalFromHeaders)
//
// With App Service Authentication ("Easy Auth") in front of the Function
// App, the platform validates the caller's Microsoft Entra access token and
// forwards the caller to the app as request headers, after removing any
// client-sent copies of them:
//
//	X-MS-CLIENT-PRINCIPAL       base64 of {"auth_typ":"aad","claims":[{"typ":…,"val":…},…],"name_typ":…,"role_typ":…}
//	X-MS-CLIENT-PRINCIPAL-ID    the caller's object id (the objectidentifier claim)
//	X-MS-CLIENT-PRINCIPAL-NAME  a display name (UPN, e-mail), when the token has one
//	X-MS-CLIENT-PRINCIPAL-IDP   the identity provider: "aad" for Microsoft Entra
//
// The claims go through App Service's default claim mapping (the .NET
// JwtSecurityTokenHandler map), so some types are URIs rather than the
// token's short names: oid arrives as
// http://schemas.microsoft.com/identity/claims/objectidentifier and tid as
// http://schemas.microsoft.com/identity/claims/tenantid, while appid, azp
// and roles keep their names (one "roles" claim per app role; some hosts
// use http://schemas.microsoft.com/ws/2008/06/identity/claims/role, which
// role_typ then names). PrincipalFromHeaders accepts both forms.
//
// Only the Entra provider is accepted; anything inconsistent (a principal
// header without the ID and IDP headers, or those without the principal,
// bad base64, not JSON, no object id, an ID header that disagrees with the
// object id claim, a header sent twice) is an error, which the handler
// reports as 401 Unauthenticated. No header at all is (nil, nil): the
// request was not authenticated by the platform.
//
// These headers are only trustworthy when App Service Authentication is on:
// without it nothing removes client-sent copies. Deploy AUTHZ_POLICY only
// together with the Entra provider (infra/bicep: authClientId), see
// PlatformAuthEnabled.
//
// # Policy (ParsePolicy, LoadPolicy, Decide)
//
// AUTHZ_POLICY holds the policy as inline JSON, or "@path" naming a file
// shipped with the app (relative paths are relative to the working
// directory, which is the Function App's root). Format, version 1:
//
//	{
//	  "version": 1,
//	  "rules": [
//	    {
//	      "description": "ETL Logic App: 24-hour tokens in the data workspaces",
//	      "principals": [{"objectId": "<guid>"}, {"appId": "<guid>"}, {"appRole": "Tokens.Create"}, "queue"],
//	      "actions": ["create", "list", "revoke"],
//	      "workspaces": ["/subscriptions/<guid>/resourceGroups/rg-data-*/providers/Microsoft.Databricks/workspaces/*"],
//	      "maxLifetime": "24h"
//	    }
//	  ]
//	}
//
// A rule grants its actions to each of its principals on each workspace its
// patterns match. Principals: {"objectId": …} (the caller's Entra object id,
// e.g. a managed identity's principal id), {"appId": …} (the client
// application id, appid/azp), {"appRole": …} (an app role of the app
// registration, case-sensitive as in .NET's IsInRole), or the string
// "queue" (commands from the token-requests queue, which carry no caller
// identity). Actions: create, revoke, list, inventory (GET /api/tokens: the
// ledger's rows, of the workspaces the rule's patterns match). Workspaces: ARM scopes in which
// any segment that names something may be "*" or contain "*" (subscription
// ids: a GUID or "*"), compared without regard to case:
//
//	/subscriptions/<sub>                                    every workspace in the subscription
//	/subscriptions/<sub>/resourceGroups/<rg>                every workspace in the resource group
//	/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Databricks/workspaces/<name>
//
// maxLifetime (a Go duration string such as "24h", or a number of seconds;
// only on rules that grant create) caps the lifetime a create may ask for.
// When several rules allow a request the most generous wins: a rule without
// maxLifetime means no limit beyond TOKEN_MAX_LIFETIME. Nothing matches by
// default: a request no rule allows is denied.
//
// ParsePolicy validates strictly and reports every problem, one error each,
// naming the rule index and field (rules[2].actions[0]: …), joined with
// errors.Join. Decisions carry no policy content, so messages built from them
// reveal nothing of the policy beyond the caller's own outcome.
package authz
