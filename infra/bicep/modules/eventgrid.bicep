// Event Grid: the system topic of this subscription or of this resource
// group, and an event subscription that forwards "Databricks workspace
// written" events to the workspace-events queue, delivered with the system
// topic's own managed identity (which gets Data Sender on that one queue).
//
// A source has one system topic only, and Event Grid keeps it in its
// source's resource group, so a resource-group topic always watches the
// resource group it is deployed in; there is no parameter for another one.

import { builtInRoles } from './roles.bicep'

@description('Name of the system topic.')
@minLength(3)
@maxLength(128)
param name string

@description('Tags for every resource.')
param tags object

@description('What the topic watches: the whole subscription, or the resource group it is deployed in.')
@allowed([
  'subscription'
  'resourceGroup'
])
param topicScope string

@description('Name of the Service Bus namespace.')
param serviceBusNamespaceName string

@description('Queue the events are delivered to (workspace-events).')
param queueName string

@description('Event schema on the queue.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventDeliverySchema string = 'EventGridSchema'

var source = topicScope == 'subscription' ? subscription().id : resourceGroup().id
var topicType = topicScope == 'subscription' ? 'Microsoft.Resources.Subscriptions' : 'Microsoft.Resources.ResourceGroups'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName

  resource queue 'queues' existing = {
    name: queueName
  }
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: source
    topicType: topicType
  }
}

resource topicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: namespace::queue
  name: guid(namespace::queue.id, topic.id, builtInRoles.ServiceBusDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.ServiceBusDataSender)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource workspaceWrites 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'databricks-workspace-writes'
  dependsOn: [
    topicSender
  ]
  properties: {
    eventDeliverySchema: eventDeliverySchema
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: [
            'Microsoft.Databricks/workspaces/write'
          ]
        }
      ]
    }
    // Retries keep the event's MessageId until the time to live ends; the
    // workspace-events queue's duplicate detection window (servicebus.bicep,
    // P1D) covers all of it.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deliveryWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'ServiceBusQueue'
        properties: {
          resourceId: namespace::queue.id
        }
      }
    }
  }
}

@description('Name of the system topic.')
output name string = topic.name

@description('Principal id of the system topic\'s managed identity.')
output principalId string = topic.identity.principalId
