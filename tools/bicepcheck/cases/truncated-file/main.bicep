@description('Name.')
param name string = 'st${uniqueString(resourceGroup().id)}'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: resourceGroup().location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
