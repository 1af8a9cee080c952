// The function's user-assigned managed identity: the only principal that
// calls ARM, Databricks, Key Vault, Service Bus and storage.

@description('Name of the user-assigned managed identity.')
@minLength(3)
@maxLength(128)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Name of the identity.')
output name string = identity.name

@description('Client (application) id: AZURE_CLIENT_ID and the __clientId settings.')
output clientId string = identity.properties.clientId

@description('Object (principal) id: the principal of every role assignment.')
output principalId string = identity.properties.principalId
