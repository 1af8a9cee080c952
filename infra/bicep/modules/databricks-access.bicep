// A role for the function's identity on one Databricks workspace, or on a
// whole resource group of workspaces (workspaceName empty). Deployed at the
// workspace's resource group, which may be in another subscription.
//
// Contributor on the workspace lets an identity that is not yet a workspace
// user be added on first contact (the management-token header); Databricks
// then makes it a workspace admin. The least-privilege alternative is Reader
// (the service reads workspaceUrl from ARM) plus adding the identity to the
// workspace as a service principal with CAN USE on tokens (see README).

import { builtInRoles } from './roles.bicep'

@description('Principal (object) id of the user-assigned identity.')
param principalId string

@description('Workspace name; empty assigns the role on the whole resource group.')
@maxLength(64)
param workspaceName string = ''

@description('Role to assign: Contributor (first contact through ARM) or Reader (identity already a workspace user with CAN USE on tokens).')
@allowed([
  'Contributor'
  'Reader'
])
param role string = 'Contributor'

var roleId = builtInRoles[role]

resource workspace 'Microsoft.Databricks/workspaces@2024-05-01' existing = if (!empty(workspaceName)) {
  name: workspaceName
}

resource onWorkspace 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(workspaceName)) {
  scope: workspace
  name: guid(workspace.id, principalId, roleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource onResourceGroup 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (empty(workspaceName)) {
  name: guid(resourceGroup().id, principalId, roleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
