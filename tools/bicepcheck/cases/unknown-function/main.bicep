@description('Name.')
param name string = 'A'

output n string = toLowerr(name)
