@description('Name.')
param name string

@description('Region: required, no default.')
param location string

@description('Optional: has a default.')
param sku string = 'Standard'

@description('Optional: nullable.')
param note string?

output s string = '${name}-${location}-${sku}-${note ?? ''}'
