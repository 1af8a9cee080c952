resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: 'func'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountName=st;EndpointSuffix=core.windows.net'
  }
}
