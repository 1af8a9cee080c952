module identity './modules/identty.bicep' = {
  name: 'identity'
  params: {}
}
