// Valid Bicep using the constructs the real templates use, and more: the
// checker must accept all of it (no false positives).
targetScope = 'resourceGroup'

import { shared, Pair } from './modules/types.bicep'
import * as types from './modules/types.bicep'

@description('Names of the queues.')
@minLength(1)
@maxLength(10)
param queueNames array = [
  'a'
  'b'
]

@description('Environment.')
@allowed([
  'dev'
  'prod'
])
param env string = 'dev'

@description('Optional override.')
param override string?

@sys.description('Settings passed through.')
param extra object = {}

type Size = 'small' | 'large'

@description('A size.')
param size Size = 'small'

@description('A pair.')
param pair Pair = {
  key: 'k'
  value: 'v'
}

func prefixed(p string, n string) string => '${p}-${n}'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, env))
var cloudNames = {
  AzureCloud: 'AzurePublic'
  AzureChinaCloud: 'AzureChina'
}
var cloud = cloudNames[?environment().name] ?? 'AzurePublic'
var upper = map(queueNames, q => toUpper(q))
var joined = reduce(queueNames, '', (acc, q) => '${acc}${q}')
var nonEmpty = filter(queueNames, (q, i) => !empty(q) && i >= 0)
var byName = toObject(queueNames, q => q, q => length(q))
var pairs = [for (q, i) in queueNames: {
  name: q
  index: i
}]
var merged = union(extra, {
  'kebab-key': override ?? shared
  nested: {
    first: first(queueNames)
  }
})

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: prefixed('sb', token)
  location: resourceGroup().location
  sku: {
    name: 'Standard'
  }

  resource results 'queues' = {
    name: 'results'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for q in queueNames: if (!empty(q)) {
  parent: namespace
  name: q
  properties: {
    requiresDuplicateDetection: contains(q, 'a')
  }
}]

resource ids 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: 'id-${token}'
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: namespace::results
  name: guid(namespace::results.id, ids.id, 'role')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39')
    principalId: ids.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

module child './modules/child.bicep' = [for (q, i) in queueNames: {
  name: 'child-${i}'
  scope: resourceGroup()
  params: {
    name: q
    size: size
  }
}]

module optional './modules/child.bicep' = if (env == 'prod') {
  name: 'optional'
  dependsOn: [
    queues
  ]
  params: {
    name: pair.key
  }
}

#disable-next-line no-unused-vars
var unused = az.resourceGroup().name

output cloud string = cloud
output upper array = upper
output joined string = joined
output nonEmpty array = nonEmpty
output byName object = byName
output pairs array = pairs
output merged object = merged
output namespaceHost string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
output childNames array = [for i in range(0, length(queueNames)): child[i].outputs.name]
output optionalName string = optional.?outputs.?name ?? ''
output typed string = types.shared

// Constructs of modules/alerts.bicep: a query file loaded at compile time,
// a lambda building dimensions, an object serialized to a JSON string.
var alertQuery = loadTextContent('../../../../infra/monitoring/alerts/failures.kql')
var alertDimensions = map([
  'workspace'
  'code'
], d => {
  name: d
  operator: 'Include'
  values: [
    '*'
  ]
})
var workbookJson = string({
  version: 'Notebook/1.0'
  items: [
    {
      type: 3
      content: {
        query: alertQuery
        dimensions: alertDimensions
      }
    }
  ]
})

output workbookLength int = length(workbookJson)
