@description('Name.')
param name string = 'a'

var name = 'b'

output n string = name
