// The Databricks token broker: a Go custom handler on Azure Functions Flex
// Consumption that issues Azure Databricks PATs with its own managed identity.
// One module per resource family; no secrets as parameters or app settings.
//
//   az group create -n <rg> -l <region>
//   az deployment group create -g <rg> -f infra/bicep/main.bicep -p environmentName=<env>
//
// or `azd up` (azure.yaml), which passes environmentName and location from
// main.parameters.json.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- naming

@description('Environment name (azd: AZURE_ENV_NAME). Goes into the azd-env-name tag and, hashed with the subscription and resource group, into every resource name.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@minLength(1)
@maxLength(64)
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('Function App name override (2-60 letters, digits, hyphens; it becomes <name>.azurewebsites.net). Empty: func-dbxtok-<hash>.')
@maxLength(60)
param functionAppName string = ''

// ------------------------------------------------------- service settings

@description('DATABRICKS_ALLOWED_SUBSCRIPTIONS: comma list of subscription ids whose workspaces may be served. Empty: any.')
@maxLength(4096)
param databricksAllowedSubscriptions string = ''

@description('DATABRICKS_ALLOWED_HOSTS: comma list of workspace host patterns (host, *.suffix, host:port). Empty: the cloud\'s Databricks suffix, e.g. *.azuredatabricks.net.')
@maxLength(4096)
param databricksAllowedHosts string = ''

@description('TOKEN_DEFAULT_LIFETIME: lifetime of a token when the request names none (Go duration).')
@minLength(2)
@maxLength(16)
param tokenDefaultLifetime string = '720h'

@description('TOKEN_MAX_LIFETIME: longest lifetime a request may ask for (Go duration, at most 17520h).')
@minLength(2)
@maxLength(16)
param tokenMaxLifetime string = '2160h'

@description('TOKEN_ROTATE_BEFORE: rotate a managed token this long before it expires (Go duration).')
@minLength(2)
@maxLength(16)
param tokenRotateBefore string = '168h'

@description('Deliver token values through the Key Vault (KEY_VAULT_URI set). false: inline delivery, the value travels in the HTTP response.')
param keyVaultDelivery bool = true

@description('RESULTS_INCLUDE_TOKEN_VALUE: put token values into token-results messages (only for inline delivery; anyone who can receive from the queue then sees them).')
param resultsIncludeTokenValue bool = false

@description('UPSTREAM_RETRY_BUDGET: time one invocation may spend retrying Entra, ARM, Key Vault or Databricks (Go duration).')
@minLength(2)
@maxLength(16)
param upstreamRetryBudget string = '30s'

@description('WORKSPACE_NOT_READY_BACKOFF: wait before retrying a workspace that is still being provisioned (Go duration).')
@minLength(2)
@maxLength(16)
param workspaceNotReadyBackoff string = '30s'

@description('LOG_LEVEL of the handler.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = 'info'

@description('ROTATE_SCHEDULE: NCRONTAB (second minute hour day month weekday) of the rotate-tokens timer, UTC.')
@minLength(11)
@maxLength(64)
param rotateSchedule string = '0 0 */6 * * *'

@description('Rights of the function\'s identity on the two trigger queues. Listen (least privilege): Azure Service Bus Data Receiver and Data Sender; the Flex scale controller cannot read the queue length with them and scales less precisely. Manage: Azure Service Bus Data Owner on those two queues, for target-based scaling on the queue length; it also lets the identity change or delete them. See infra/README.md.')
@allowed([
  'Listen'
  'Manage'
])
param serviceBusTriggerAccess string = 'Listen'

@description('Max delivery count of every queue: after this many failed deliveries a message is dead-lettered (QUEUE_MAX_DELIVERY_COUNT).')
@minValue(1)
@maxValue(2000)
param queueMaxDeliveryCount int = 10

@description('LEDGER_TABLE: the table, in the app\'s storage account, that records every token the service issued (one row per workspace and request id).')
@minLength(3)
@maxLength(63)
param ledgerTable string = 'tokenledger'

@description('LEDGER_RETENTION: how long records of revoked and expired tokens are kept (Go duration).')
@minLength(2)
@maxLength(16)
param ledgerRetention string = '2160h'

// ------------------------------------------ caller authentication (issue #8)

@description('Client (application) id of the Microsoft Entra app registration that fronts the Function App (App Service Authentication, "Easy Auth"). Set: every request needs an Entra access token for api://<id> or <id> (401 otherwise; no client secret is needed to validate tokens), and the handler receives the caller in X-MS-CLIENT-PRINCIPAL*. Empty: App Service Authentication stays off. See infra/README.md.')
@maxLength(36)
param authClientId string = ''

@description('OpenID issuer of that app registration\'s tenant. Empty: <login endpoint of this cloud><this tenant>/v2.0, e.g. https://login.microsoftonline.com/<tenant id>/v2.0.')
@maxLength(256)
param authOpenIdIssuer string = ''

@description('AUTHZ_POLICY: who may create, revoke and list tokens in which workspaces: inline JSON, or @<path> of a policy file shipped in the app package (relative to the app root). Empty: no policy, every caller that passes the front door may do everything. Set it only together with authClientId: the policy trusts X-MS-CLIENT-PRINCIPAL*, which only App Service Authentication makes trustworthy.')
param authzPolicy string = ''

@description('EVENT_TOKEN_SCOPES: the Databricks API scopes of the tokens issued for workspace events, comma-separated (e.g. sql:read,unity-catalog:read). Empty: unscoped tokens, which may call every API the function identity may. Queue rules of AUTHZ_POLICY with requireScopes refuse unscoped event tokens.')
param eventTokenScopes string = ''

// ------------------------------------------------------------- hosting

@description('Flex Consumption instance memory (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption: most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Point the Functions host at storage queues too, with queue and account-wide table roles. This app does not need them (HTTP, Service Bus and timer triggers use blobs only; the ledger has its own table and role).')
param useStorageQueuesAndTables bool = false

@description('Key Vault purge protection. Once on it cannot be turned off, and the vault name stays taken until the retention ends.')
param keyVaultPurgeProtection bool = true

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 90

// ------------------------------------------------- Databricks and events

@description('Databricks workspace resource ids (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Databricks/workspaces/<name>) on which the identity gets databricksWorkspaceRole.')
@maxLength(100)
param databricksWorkspaceResourceIds array = []

@description('Resource group ids (/subscriptions/<id>/resourceGroups/<name>) on which the identity gets databricksWorkspaceRole, for every workspace in them.')
@maxLength(20)
param databricksResourceGroupIds array = []

@description('Role on those workspaces or resource groups. Contributor: the identity joins a workspace on first contact (Databricks makes it a workspace admin). Reader: least privilege, for an identity you have added to each workspace as a service principal with CAN USE on tokens (README); the service still reads workspaceUrl from ARM.')
@allowed([
  'Contributor'
  'Reader'
])
param databricksWorkspaceRole string = 'Contributor'

@description('Event Grid path: none; subscription (this deployment creates the system topic of this subscription, in this resource group); or resourceGroup (it creates the system topic of this resource group). Events of Databricks workspace writes go to the workspace-events queue. A source has one system topic only: if one exists (another environment, Defender, a portal subscription), the deployment fails with "Only one system topic is allowed per source"; keep none and add an event subscription to that topic instead (infra/README.md).')
@allowed([
  'none'
  'subscription'
  'resourceGroup'
])
param eventGridScope string = 'none'

@description('Event schema Event Grid delivers to the workspace-events queue.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

// ------------------------------------------------- alerts and workbook

@description('Deploy the alert rules and the operations workbook (infra/README.md, "Alerts and the workbook").')
param deployAlerts bool = true

@description('Email addresses every alert notifies (an action group is created when this or alertWebhookUri is set).')
@maxLength(20)
param alertEmailAddresses array = []

@description('Webhook every alert notifies, with the common alert schema. A URL that embeds a key is a credential: prefer an action group of your own in alertActionGroupIds.')
@maxLength(2048)
param alertWebhookUri string = ''

@description('Resource ids of existing action groups every alert notifies.')
@maxLength(10)
param alertActionGroupIds array = []

@description('Failed requests (token.failed) in 15 minutes above which the failures alert fires.')
@minValue(0)
@maxValue(10000)
param alertFailureThreshold int = 5

@description('Refusals of one caller (NotAuthorized, Unauthenticated) in 15 minutes above which the refusals alert fires.')
@minValue(0)
@maxValue(10000)
param alertRefusalThreshold int = 10

@description('Window in which at least one rotation run must finish before the rotation-missing alert fires; longer than the ROTATE_SCHEDULE interval (ISO 8601).')
@allowed([
  'PT6H'
  'PT12H'
  'P1D'
  'P2D'
])
param alertRotationHeartbeatWindow string = 'PT12H'

// --------------------------------------------------------------- names

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
}
var names = {
  identity: 'id-dbxtok-${resourceToken}'
  storage: 'stdbx${resourceToken}'
  deploymentContainer: 'app-package-${resourceToken}'
  logAnalytics: 'log-dbxtok-${resourceToken}'
  applicationInsights: 'appi-dbxtok-${resourceToken}'
  serviceBus: 'sb-dbxtok-${resourceToken}'
  keyVault: 'kv-dbxtok-${resourceToken}'
  plan: 'plan-dbxtok-${resourceToken}'
  functionApp: empty(functionAppName) ? 'func-dbxtok-${resourceToken}' : functionAppName
  systemTopic: 'evgt-dbxtok-${resourceToken}'
}

// The queue names the function.json triggers use, and the results queue.
var queues = {
  requests: 'token-requests'
  workspaceEvents: 'workspace-events'
  results: 'token-results'
}

// environment().name to the service's AZURE_CLOUD value.
var cloudNames = {
  AzureCloud: 'AzurePublic'
  AzureUSGovernment: 'AzureUSGovernment'
  AzureChinaCloud: 'AzureChina'
}
var azureCloud = cloudNames[?environment().name] ?? 'AzurePublic'

// ------------------------------------------------------------- modules

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    deploymentContainerName: names.deploymentContainer
    ledgerTableName: ledgerTable
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    name: names.serviceBus
    location: location
    tags: tags
    requestsQueueName: queues.requests
    workspaceEventsQueueName: queues.workspaceEvents
    resultsQueueName: queues.results
    maxDeliveryCount: queueMaxDeliveryCount
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    enablePurgeProtection: keyVaultPurgeProtection
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    ledgerTableName: storage.outputs.ledgerTableName
    useStorageQueuesAndTables: useStorageQueuesAndTables
    serviceBusNamespaceName: serviceBus.outputs.name
    receiveQueueNames: [
      serviceBus.outputs.requestsQueueName
      serviceBus.outputs.workspaceEventsQueueName
    ]
    triggerQueueAccess: serviceBusTriggerAccess
    resultsQueueName: serviceBus.outputs.resultsQueueName
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  // The host should start with its storage, Service Bus and telemetry roles in place.
  dependsOn: [
    rbac
  ]
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    useStorageQueuesAndTables: useStorageQueuesAndTables
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    azureCloud: azureCloud
    databricksAllowedHosts: databricksAllowedHosts
    databricksAllowedSubscriptions: databricksAllowedSubscriptions
    tokenDefaultLifetime: tokenDefaultLifetime
    tokenMaxLifetime: tokenMaxLifetime
    tokenRotateBefore: tokenRotateBefore
    keyVaultUri: keyVaultDelivery ? keyVault.outputs.uri : ''
    resultsQueueName: serviceBus.outputs.resultsQueueName
    requestsQueueName: serviceBus.outputs.requestsQueueName
    workspaceEventsQueueName: serviceBus.outputs.workspaceEventsQueueName
    queueMaxDeliveryCount: queueMaxDeliveryCount
    resultsIncludeTokenValue: resultsIncludeTokenValue
    upstreamRetryBudget: upstreamRetryBudget
    workspaceNotReadyBackoff: workspaceNotReadyBackoff
    logLevel: logLevel
    rotateSchedule: rotateSchedule
    authClientId: authClientId
    authOpenIdIssuer: empty(authOpenIdIssuer) ? '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0' : authOpenIdIssuer
    authzPolicy: authzPolicy
    ledgerTableName: storage.outputs.ledgerTableName
    ledgerRetention: ledgerRetention
    eventTokenScopes: eventTokenScopes
  }
}

module alerts 'modules/alerts.bicep' = if (deployAlerts) {
  name: 'alerts'
  params: {
    location: location
    tags: tags
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    namePrefix: 'dbxtok-${resourceToken}'
    emailAddresses: alertEmailAddresses
    webhookUri: alertWebhookUri
    actionGroupIds: alertActionGroupIds
    failureThreshold: alertFailureThreshold
    refusalThreshold: alertRefusalThreshold
    rotationHeartbeatWindow: alertRotationHeartbeatWindow
  }
}

module eventGrid 'modules/eventgrid.bicep' = if (eventGridScope != 'none') {
  name: 'eventgrid'
  params: {
    name: names.systemTopic
    tags: tags
    topicScope: eventGridScope == 'subscription' ? 'subscription' : 'resourceGroup'
    serviceBusNamespaceName: serviceBus.outputs.name
    queueName: serviceBus.outputs.workspaceEventsQueueName
    eventDeliverySchema: eventDeliverySchema
  }
}

// A role on the listed workspaces and resource groups, deployed at each
// one's resource group (possibly in another subscription).
module workspaceAccess 'modules/databricks-access.bicep' = [for (id, i) in databricksWorkspaceResourceIds: {
  name: 'dbx-workspace-access-${i}-${resourceToken}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    principalId: identity.outputs.principalId
    workspaceName: last(split(id, '/'))
    role: databricksWorkspaceRole
  }
}]

module resourceGroupAccess 'modules/databricks-access.bicep' = [for (id, i) in databricksResourceGroupIds: {
  name: 'dbx-rg-access-${i}-${resourceToken}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    principalId: identity.outputs.principalId
    role: databricksWorkspaceRole
  }
}]

// ------------------------------------------------------------- outputs

@description('Region of the deployment.')
output AZURE_LOCATION string = location

@description('Tenant of the deployment.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Name of the Function App (az functionapp deployment source config-zip -n <name>, or func azure functionapp publish <name> --custom).')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Default host name of the Function App.')
output FUNCTION_APP_DEFAULT_HOSTNAME string = functionApp.outputs.defaultHostName

@description('Base URL of the HTTP functions.')
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}/api'

@description('Client id of the function\'s managed identity (AZURE_CLIENT_ID in the app).')
output IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Principal (object) id of the function\'s managed identity: add it to Databricks workspaces.')
output IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Fully qualified Service Bus namespace.')
output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace

@description('Key Vault URI.')
output KEY_VAULT_URI string = keyVault.outputs.uri

@description('Audience callers request tokens for when App Service Authentication is on (empty when off).')
output API_AUDIENCE string = empty(authClientId) ? '' : 'api://${authClientId}'
