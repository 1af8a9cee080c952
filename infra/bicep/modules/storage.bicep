// Storage for the Functions runtime (AzureWebJobsStorage), the Flex
// Consumption deployment package and the ledger of issued tokens (a table).
// Shared keys are disabled: the host, the deployment and the ledger all
// authenticate with the user-assigned identity.

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Blob container that holds the Flex Consumption deployment package.')
@minLength(3)
@maxLength(63)
param deploymentContainerName string

@description('Table holding the ledger of issued tokens (LEDGER_TABLE): 3-63 letters and digits, starting with a letter.')
@minLength(3)
@maxLength(63)
param ledgerTableName string

@description('Storage redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param skuName string = 'Standard_LRS'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobs 'blobServices' = {
    name: 'default'

    resource deployment 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  // One row per (workspace, request id) the service issued a token for:
  // the lock between instances and the inventory (internal/ledger).
  resource tables 'tableServices' = {
    name: 'default'

    resource ledger 'tables' = {
      name: ledgerTableName
    }
  }
}

@description('Name of the storage account.')
output name string = account.name

@description('Blob endpoint, with a trailing slash.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('Queue endpoint, with a trailing slash.')
output queueEndpoint string = account.properties.primaryEndpoints.queue

@description('Table endpoint, with a trailing slash.')
output tableEndpoint string = account.properties.primaryEndpoints.table

@description('Name of the ledger table.')
output ledgerTableName string = account::tables::ledger.name

@description('Name of the deployment package container.')
output deploymentContainerName string = account::blobs::deployment.name
