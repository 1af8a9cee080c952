@description('A parameter with a misspelled keyword.')
parm name string = 'x'

output n string = name
