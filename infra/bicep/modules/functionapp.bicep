// The Function App on the Flex Consumption plan (Linux): the Go custom
// handler (functionAppConfig.runtime 'custom'), run by the user-assigned
// identity for storage, deployment storage, Service Bus and Application
// Insights. App settings hold no secret: every connection is identity-based.

@description('Function App name: 2-60 letters, digits and hyphens, globally unique (it is the *.azurewebsites.net host).')
@minLength(2)
@maxLength(60)
param name string

@description('Flex Consumption plan name.')
@minLength(1)
@maxLength(60)
param planName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags for every resource.')
param tags object

@description('azd service name: the Function App gets the azd-service-name tag so that `azd deploy` finds it.')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Blob endpoint of the runtime storage account, with a trailing slash.')
param storageBlobEndpoint string

@description('Queue endpoint of the runtime storage account, with a trailing slash.')
param storageQueueEndpoint string

@description('Table endpoint of the runtime storage account, with a trailing slash.')
param storageTableEndpoint string

@description('Also point the host at storage queues (only features this app does not use need them, such as blob triggers or Durable Functions). Tables are always configured: the ledger lives there.')
param useStorageQueuesAndTables bool = false

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component (Entra ID authentication only).')
param applicationInsightsName string

@description('Fully qualified Service Bus namespace, e.g. mybus.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string

@description('Instance memory size (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('AZURE_CLOUD: AzurePublic, AzureUSGovernment or AzureChina.')
@allowed([
  'AzurePublic'
  'AzureUSGovernment'
  'AzureChina'
])
param azureCloud string

@description('DATABRICKS_ALLOWED_HOSTS: comma list of workspace host patterns; empty means the cloud\'s Databricks suffix.')
@maxLength(4096)
param databricksAllowedHosts string

@description('DATABRICKS_ALLOWED_SUBSCRIPTIONS: comma list of subscription ids; empty means any.')
@maxLength(4096)
param databricksAllowedSubscriptions string

@description('TOKEN_DEFAULT_LIFETIME (Go duration).')
@minLength(2)
@maxLength(16)
param tokenDefaultLifetime string

@description('TOKEN_MAX_LIFETIME (Go duration).')
@minLength(2)
@maxLength(16)
param tokenMaxLifetime string

@description('TOKEN_ROTATE_BEFORE (Go duration).')
@minLength(2)
@maxLength(16)
param tokenRotateBefore string

@description('KEY_VAULT_URI: Key Vault delivery; empty means inline delivery.')
@maxLength(256)
param keyVaultUri string

@description('RESULTS_QUEUE: the queue results are published to.')
@minLength(1)
@maxLength(260)
param resultsQueueName string

@description('TOKEN_REQUESTS_QUEUE: the queue the token-requests function reads (its function.json queueName).')
@minLength(1)
@maxLength(260)
param requestsQueueName string

@description('WORKSPACE_EVENTS_QUEUE: the queue the workspace-events function reads (its function.json queueName).')
@minLength(1)
@maxLength(260)
param workspaceEventsQueueName string

@description('QUEUE_MAX_DELIVERY_COUNT: the trigger queues\' max delivery count; the last delivery publishes its failure before the message is dead-lettered.')
@minValue(1)
@maxValue(2000)
param queueMaxDeliveryCount int

@description('RESULTS_INCLUDE_TOKEN_VALUE: put token values into result messages (inline delivery only).')
param resultsIncludeTokenValue bool

@description('UPSTREAM_RETRY_BUDGET (Go duration).')
@minLength(2)
@maxLength(16)
param upstreamRetryBudget string

@description('WORKSPACE_NOT_READY_BACKOFF: how long to wait before retrying a workspace that is still being provisioned (Go duration).')
@minLength(2)
@maxLength(16)
param workspaceNotReadyBackoff string

@description('LOG_LEVEL.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string

@description('ROTATE_SCHEDULE: NCRONTAB (six fields) of the rotate-tokens timer.')
@minLength(11)
@maxLength(64)
param rotateSchedule string

@description('Client id of the Entra app registration for App Service Authentication. Empty: authentication off.')
@maxLength(36)
param authClientId string = ''

@description('OpenID issuer of the app registration\'s tenant, e.g. https://login.microsoftonline.com/<tenant id>/v2.0.')
@maxLength(256)
param authOpenIdIssuer string = ''

@description('AUTHZ_POLICY: inline JSON or @<path> in the package; empty means no policy.')
param authzPolicy string = ''

@description('LEDGER_TABLE: the ledger\'s table in the runtime storage account.')
@minLength(3)
@maxLength(63)
param ledgerTableName string

@description('LEDGER_RETENTION: how long records of revoked and expired tokens are kept (Go duration).')
@minLength(2)
@maxLength(16)
param ledgerRetention string

@description('EVENT_TOKEN_SCOPES: comma list of the Databricks API scopes of tokens issued for workspace events; empty means unscoped.')
param eventTokenScopes string = ''

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

// Runtime settings: identity-based AzureWebJobsStorage and trigger
// connection, Entra-authenticated Application Insights. Flex Consumption
// takes the worker runtime from functionAppConfig.runtime, so
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not set.
// The table endpoint is the ledger's (the binary reads it under the host's
// name, with the same identity as everything else).
var runtimeSettings = {
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  ROTATE_SCHEDULE: rotateSchedule
}

var storageQueueSettings = useStorageQueuesAndTables ? {
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
} : {}

// The service's own settings (contract sections 4 and 6). Not set here, on
// purpose: SERVICEBUS_CONNECTION_STRING and AzureWebJobsStorage as a
// connection string (secrets), ALLOW_INSECURE_LOOPBACK and
// AZURE_RESOURCE_MANAGER_ENDPOINT (local stand-ins only),
// FUNCTIONS_CUSTOMHANDLER_PORT (the host sets it) and LISTEN_ADDRESS.
var serviceSettings = {
  AZURE_CLIENT_ID: identityClientId
  AZURE_TOKEN_CREDENTIALS: 'ManagedIdentityCredential'
  AZURE_CLOUD: azureCloud
  DATABRICKS_ALLOWED_HOSTS: databricksAllowedHosts
  DATABRICKS_ALLOWED_SUBSCRIPTIONS: databricksAllowedSubscriptions
  TOKEN_DEFAULT_LIFETIME: tokenDefaultLifetime
  TOKEN_MAX_LIFETIME: tokenMaxLifetime
  TOKEN_ROTATE_BEFORE: tokenRotateBefore
  KEY_VAULT_URI: keyVaultUri
  SERVICEBUS_NAMESPACE: serviceBusFullyQualifiedNamespace
  RESULTS_QUEUE: resultsQueueName
  TOKEN_REQUESTS_QUEUE: requestsQueueName
  WORKSPACE_EVENTS_QUEUE: workspaceEventsQueueName
  QUEUE_MAX_DELIVERY_COUNT: string(queueMaxDeliveryCount)
  RESULTS_INCLUDE_TOKEN_VALUE: resultsIncludeTokenValue ? 'true' : 'false'
  UPSTREAM_RETRY_BUDGET: upstreamRetryBudget
  WORKSPACE_NOT_READY_BACKOFF: workspaceNotReadyBackoff
  LOG_LEVEL: logLevel
  AUTHZ_POLICY: authzPolicy
  LEDGER_TABLE: ledgerTableName
  LEDGER_RETENTION: ledgerRetention
  EVENT_TOKEN_SCOPES: eventTokenScopes
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(runtimeSettings, storageQueueSettings, serviceSettings)
}

// App Service Authentication with the Microsoft Entra provider, only when
// an app registration is given. Tokens are validated (issuer, signature,
// audience api://<client id> or <client id>) before any request reaches the
// host; without one the caller gets 401. Validating bearer tokens needs no
// client secret, so none is configured, and the token store stays off. The
// handler reads the caller from X-MS-CLIENT-PRINCIPAL* (internal/authz).
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(authClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: authOpenIdIssuer
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

@description('Name of the Function App.')
output name string = site.name

@description('Default host name, e.g. myapp.azurewebsites.net.')
output defaultHostName string = site.properties.defaultHostName
