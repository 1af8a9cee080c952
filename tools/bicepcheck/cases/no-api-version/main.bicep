resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities' = {
  name: 'id-x'
  location: resourceGroup().location
}
