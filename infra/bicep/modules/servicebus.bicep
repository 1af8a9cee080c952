// Service Bus: a Standard namespace (duplicate detection needs Standard) with
// SAS (local) authentication disabled, and the service's three queues.

@description('Service Bus namespace name: 6-50 letters, digits and hyphens, globally unique.')
@minLength(6)
@maxLength(50)
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Queue of create/revoke commands (the token-requests function\'s trigger).')
@minLength(1)
@maxLength(260)
param requestsQueueName string = 'token-requests'

@description('Queue Event Grid delivers workspace events to (the workspace-events function\'s trigger).')
@minLength(1)
@maxLength(260)
param workspaceEventsQueueName string = 'workspace-events'

@description('Queue the service publishes results to (RESULTS_QUEUE).')
@minLength(1)
@maxLength(260)
param resultsQueueName string = 'token-results'

@description('How long a receiver holds a message lock (ISO 8601, at most PT5M). The Functions host renews it while an invocation runs.')
@allowed([
  'PT30S'
  'PT1M'
  'PT2M'
  'PT5M'
])
param lockDuration string = 'PT1M'

@description('Deliveries before a message is dead-lettered (the app reads the same number as QUEUE_MAX_DELIVERY_COUNT).')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int = 10

@description('Window in which Service Bus drops a message whose MessageId it has already seen (ISO 8601): token-requests and token-results.')
@allowed([
  'PT10M'
  'PT1H'
  'P1D'
  'P7D'
])
param duplicateDetectionWindow string = 'PT1H'

@description('The same window for workspace-events. Event Grid redelivers an event with the same MessageId until its time to live ends (eventTimeToLiveInMinutes, at most 1440 minutes), so this must be at least that long: P1D.')
@allowed([
  'P1D'
  'P7D'
])
param workspaceEventsDuplicateDetectionWindow string = 'P1D'

@description('How long an unconsumed message lives before it expires to the dead-letter queue (ISO 8601).')
@allowed([
  'P1D'
  'P7D'
  'P14D'
])
param messageTimeToLive string = 'P14D'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// Every queue detects duplicates: commands retried by automation, Event Grid
// redeliveries (stable MessageId, for up to a day) and republished results
// (deterministic id). Sessions stay off: Event Grid cannot deliver to
// session-enabled queues.
var queueSpecs = [
  {
    name: requestsQueueName
    duplicateDetectionWindow: duplicateDetectionWindow
  }
  {
    name: workspaceEventsQueueName
    duplicateDetectionWindow: workspaceEventsDuplicateDetectionWindow
  }
  {
    name: resultsQueueName
    duplicateDetectionWindow: duplicateDetectionWindow
  }
]

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for q in queueSpecs: {
  parent: namespace
  name: q.name
  properties: {
    lockDuration: lockDuration
    maxDeliveryCount: maxDeliveryCount
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: q.duplicateDetectionWindow
    requiresSession: false
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: messageTimeToLive
    enablePartitioning: false
  }
}]

@description('Name of the namespace.')
output name string = namespace.name

// serviceBusEndpoint is https://<name>.<suffix>:443/; the host is the cloud's own.
@description('Fully qualified namespace host, e.g. mybus.servicebus.windows.net.')
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]

@description('Name of the token-requests queue.')
output requestsQueueName string = queues[0].name

@description('Name of the workspace-events queue.')
output workspaceEventsQueueName string = queues[1].name

@description('Name of the results queue.')
output resultsQueueName string = queues[2].name
