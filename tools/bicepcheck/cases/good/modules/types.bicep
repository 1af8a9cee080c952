@export()
@description('A value shared through a compile-time import.')
var shared = 'shared'

@export()
type Pair = {
  @description('Key.')
  key: string
  value: string
}
