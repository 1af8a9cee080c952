// Package fakearm stands in for Azure Resource Manager, serving what the product
// reads: Microsoft.Databricks/workspaces.
//
// armdatabricks v1.1.0's WorkspacesClient.Get sends
//
//	GET {endpoint}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Databricks/workspaces/{name}?api-version=2023-02-01
//	Accept: application/json
//	Authorization: Bearer <token for cloud.ResourceManager.Audience + "/.default">
//
// and decodes id, name, type, location, sku.name, tags and properties
// (provisioningState, workspaceId, workspaceUrl, managedResourceGroupId,
// createdBy, createdDateTime …). Point it here with
//
//	cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
//		cloud.ResourceManager: {Endpoint: srv.Endpoint(), Audience: "https://management.core.windows.net/"}}}
//
// and a Transport trusting the test CA (azcore's bearer policy refuses
// http). Path segments and names match case-insensitively; the returned id
// is the registered, canonical one. Any yyyy-mm-dd[-preview] api-version is
// accepted unless Options.APIVersions lists the allowed ones.
//
// Authentication: a valid, unexpired stand-in token (fakeentra.Validate) whose
// audience is https://management.core.windows.net/ or
// https://management.azure.com/ (with or without the trailing slash). Else
// 401 with a WWW-Authenticate header and ARM's codes: AuthenticationFailed
// (no header), InvalidAuthenticationToken (unparseable or not minted here),
// ExpiredAuthenticationToken, InvalidAuthenticationTokenAudience,
// InvalidAuthenticationTokenTenant (Options.TenantID set and tid differs).
// Not-found answers are 404 SubscriptionNotFound, ResourceGroupNotFound or
// ResourceNotFound ("The Resource 'Microsoft.Databricks/workspaces/x' under
// resource group 'rg' was not found…"); DenyRead gives 403 AuthorizationFailed.
//
// Deliberately not emulated: writes (PUT/PATCH/DELETE and long-running
// operations), other resource types, resource group reads, RBAC beyond
// DenyRead, resource provider registration, auxiliary tenants, CAE
// challenges, and ARM's real throttling counters (use faults).
package fakearm
