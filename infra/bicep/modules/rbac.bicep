// Role assignments of the function's identity, each on the narrowest scope
// that works: the queues it receives from or sends to, the vault, the
// storage account, the ledger table, the Application Insights component.

import { builtInRoles } from './roles.bicep'

@description('Principal (object) id of the user-assigned identity.')
param principalId string

@description('Name of the runtime storage account.')
param storageAccountName string

@description('Name of the ledger table (LEDGER_TABLE) in the runtime storage account.')
param ledgerTableName string

@description('Also grant queue and table data access on the runtime storage account.')
param useStorageQueuesAndTables bool = false

@description('Name of the Service Bus namespace.')
param serviceBusNamespaceName string

@description('Queues the function\'s triggers receive from.')
@minLength(1)
param receiveQueueNames array

@description('Rights on the trigger queues. Listen: Data Receiver and Data Sender (the handler reschedules not-ready work onto the queue it came from). Manage: Data Owner, so that target-based scaling can read the queue length.')
@allowed([
  'Listen'
  'Manage'
])
param triggerQueueAccess string = 'Listen'

@description('Queue the service publishes results to.')
param resultsQueueName string

@description('Name of the Key Vault.')
param keyVaultName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource tables 'tableServices' existing = {
    name: 'default'

    resource ledger 'tables' existing = {
      name: ledgerTableName
    }
  }
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName

  resource results 'queues' existing = {
    name: resultsQueueName
  }
}

resource receiveQueues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = [for q in receiveQueueNames: {
  parent: namespace
  name: q
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The host's keys, timer leases and the Flex deployment package are blobs.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, builtInRoles.StorageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.StorageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The ledger: the service reads and writes its records with the identity,
// on that one table only.
resource ledgerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage::tables::ledger
  name: guid(storage::tables::ledger.id, principalId, builtInRoles.StorageTableDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.StorageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useStorageQueuesAndTables) {
  scope: storage
  name: guid(storage.id, principalId, builtInRoles.StorageQueueDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.StorageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useStorageQueuesAndTables) {
  scope: storage
  name: guid(storage.id, principalId, builtInRoles.StorageTableDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.StorageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The trigger queues. Listen: receive for the triggers, send because a
// command or event whose workspace is still provisioning is rescheduled onto
// its own queue. Manage: Data Owner instead (send, receive and manage), which
// lets the scale controller read the queue length for target-based scaling.
resource receivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (q, i) in receiveQueueNames: if (triggerQueueAccess == 'Listen') {
  scope: receiveQueues[i]
  name: guid(receiveQueues[i].id, principalId, builtInRoles.ServiceBusDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.ServiceBusDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource reschedulers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (q, i) in receiveQueueNames: if (triggerQueueAccess == 'Listen') {
  scope: receiveQueues[i]
  name: guid(receiveQueues[i].id, principalId, builtInRoles.ServiceBusDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.ServiceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource queueOwners 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (q, i) in receiveQueueNames: if (triggerQueueAccess == 'Manage') {
  scope: receiveQueues[i]
  name: guid(receiveQueues[i].id, principalId, builtInRoles.ServiceBusDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.ServiceBusDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource resultsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: namespace::results
  name: guid(namespace::results.id, principalId, builtInRoles.ServiceBusDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.ServiceBusDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, principalId, builtInRoles.KeyVaultSecretsOfficer)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.KeyVaultSecretsOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: applicationInsights
  name: guid(applicationInsights.id, principalId, builtInRoles.MonitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.MonitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
