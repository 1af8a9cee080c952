@description('Name.')
@minLength(1)
param name string

@description('Size.')
@allowed([
  'small'
  'large'
])
param size string = 'small'

output name string = '${name}-${size}'
