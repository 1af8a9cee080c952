@description('A token the template should never take.')
@secure()
param databricksToken string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}

output u string = '${vault.name}${length(databricksToken)}'
