module m './mod.bicep' = {
  name: 'm'
  params: {
    name: 'x'
  }
}
