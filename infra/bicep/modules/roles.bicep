// The one map of Azure built-in role definition ids this deployment assigns.
// Source: Microsoft Learn, "Azure built-in roles"
// (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
// Built-in role ids are the same in every subscription and cloud.

@export()
@description('Built-in role definition ids (GUIDs) by role name.')
var builtInRoles = {
  // On the Databricks workspaces or resource groups you list: Contributor for
  // first contact with the management-token header; Reader for the ARM
  // lookup of workspaceUrl when the identity is already a workspace user.
  Contributor: 'b24988ac-6180-42a0-ab88-20f7382dd24c'
  Reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
  // Integration: the Service Bus triggers receive (and the handler
  // reschedules onto their queues), the results publisher sends; Data Owner
  // on the trigger queues only with serviceBusTriggerAccess=Manage.
  ServiceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  ServiceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  ServiceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  // Security: Key Vault delivery writes, reads and deletes secrets.
  KeyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  // Storage: identity-based AzureWebJobsStorage and Flex deployment storage.
  StorageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  StorageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  StorageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Monitor: Entra ID (AAD) authentication to Application Insights.
  MonitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
