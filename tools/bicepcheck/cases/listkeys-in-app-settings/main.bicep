resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: 'st'
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: 'func'
}

var storageKey = storage.listKeys().keys[0].value

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: storage.name
    STORAGE_KEY_HINT: storageKey
  }
}
