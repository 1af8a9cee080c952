// Alerts and the operations workbook (infra/README.md, "Alerts and the
// workbook"). Every query is a file under infra/monitoring, checked offline
// by tools/kqlcheck against the schema of the table it reads; this module
// only schedules them. They read the audit lines the handler writes to
// stdout, which the Functions host sends to Application Insights as traces
// (AppTraces in the Log Analytics workspace, category Host.Function.Console).

@description('Azure region of the alert rules and the workbook.')
param location string

@description('Tags for every resource.')
param tags object

@description('Name of the Log Analytics workspace behind Application Insights: the scope of the rules and the workbook.')
param logAnalyticsName string

@description('Prefix of the rule names.')
@minLength(1)
@maxLength(60)
param namePrefix string

@description('Email addresses notified by every alert.')
param emailAddresses array = []

@description('Webhook notified by every alert (common alert schema). A URL that embeds a key is a credential: prefer an action group of your own, in actionGroupIds.')
@maxLength(2048)
param webhookUri string = ''

@description('Resource ids of existing action groups notified by every alert.')
param actionGroupIds array = []

@description('token.failed requests in 15 minutes above which the failures alert fires.')
@minValue(0)
param failureThreshold int = 5

@description('Policy refusals of one caller in 15 minutes above which the refusals alert fires.')
@minValue(0)
param refusalThreshold int = 10

@description('Window of the token-expiring alert: at least one rotate-tokens interval (ISO 8601, e.g. P1D).')
param expiringWindow string = 'P1D'

@description('Window in which at least one rotation run must finish: longer than one rotate-tokens interval (ISO 8601, e.g. PT12H).')
param rotationHeartbeatWindow string = 'PT12H'

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

var notify = !empty(emailAddresses) || !empty(webhookUri)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (notify) {
  name: '${namePrefix}-ag'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'dbxtok'
    enabled: true
    emailReceivers: [for (address, i) in emailAddresses: {
      name: 'email-${i}'
      emailAddress: address
      useCommonAlertSchema: true
    }]
    webhookReceivers: empty(webhookUri) ? [] : [
      {
        name: 'webhook'
        serviceUri: webhookUri
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroups = notify ? concat([actionGroup.id], actionGroupIds) : actionGroupIds

var runbook = 'Runbook: infra/README.md, Alerts and the workbook.'

var rules = [
  {
    name: 'rotation-failed'
    displayName: 'Token broker: a token rotation failed'
    description: 'A managed Key Vault token inside its rotation window did not get a successor; it keeps working until expires_at. ${runbook} Open the results: code, upstream and error say why (permission_denied: see that alert). Fix the cause, then run rotate-tokens (or wait for the next run) and check for token.rotated.'
    severity: 1
    query: loadTextContent('../../monitoring/alerts/rotation-failed.kql')
    frequency: 'PT15M'
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'workspace'
      'code'
    ]
    autoMitigate: false
  }
  {
    name: 'token-expiring'
    displayName: 'Token broker: a token will expire without a successor'
    description: 'A managed token is inside TOKEN_ROTATE_BEFORE and its rotation keeps failing: its consumers break at expires_at (hours_left). ${runbook} Find the failure in the rotation-failed alert, fix it and run rotate-tokens; the alert resolves when token.rotated replaces the token. Last resort: issue a token by hand into the same secret (create-token with secretName).'
    severity: 1
    query: loadTextContent('../../monitoring/alerts/token-expiring.kql')
    frequency: 'PT1H'
    window: expiringWindow
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'workspace'
      'token_id'
    ]
    autoMitigate: true
  }
  {
    name: 'failures'
    displayName: 'Token broker: failed operations above the threshold'
    description: 'More than ${failureThreshold} requests failed in 15 minutes (token.failed, one per request id). ${runbook} Group the results by code and upstream: UpstreamUnavailable is throttling or an outage (see the workbook), UpstreamError a refusal, WorkspaceNotFound a caller error.'
    severity: 2
    query: loadTextContent('../../monitoring/alerts/failures.kql')
    frequency: 'PT15M'
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: failureThreshold
    dimensions: []
    autoMitigate: false
  }
  {
    name: 'policy-refusals'
    displayName: 'Token broker: a caller keeps being refused'
    description: 'One caller was refused more than ${refusalThreshold} times in 15 minutes (token.refused, NotAuthorized or Unauthenticated). ${runbook} A known caller lacks a rule in AUTHZ_POLICY or its app role; an unknown one is probing: check its app id in Microsoft Entra.'
    severity: 3
    query: loadTextContent('../../monitoring/alerts/policy-refusals.kql')
    frequency: 'PT15M'
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: refusalThreshold
    dimensions: [
      'caller'
    ]
    autoMitigate: false
  }
  {
    name: 'permission-denied'
    displayName: 'Token broker: the function identity lost a permission'
    description: 'An upstream refused the function identity (permission_denied). ${runbook} By upstream: databricks - give the identity Contributor on the workspace, or membership with CAN USE on tokens; arm - Reader or Contributor on the workspace; keyvault - Key Vault Secrets Officer on the vault; entra - the managed identity (AZURE_CLIENT_ID) itself.'
    severity: 1
    query: loadTextContent('../../monitoring/alerts/permission-denied.kql')
    frequency: 'PT15M'
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: [
      'upstream'
      'workspace'
    ]
    autoMitigate: false
  }
  {
    name: 'rotation-missing'
    displayName: 'Token broker: no rotation run finished'
    description: 'No rotate-tokens run finished in the window: tokens are not being renewed. ${runbook} Check that the Function App runs, that rotate-tokens is enabled and ROTATE_SCHEDULE is valid, and look for rotation.failed (the vault could not be listed).'
    severity: 2
    query: loadTextContent('../../monitoring/alerts/rotation-missing.kql')
    frequency: 'PT1H'
    window: rotationHeartbeatWindow
    operator: 'LessThan'
    threshold: 1
    dimensions: []
    autoMitigate: true
  }
]

resource rule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for r in rules: {
  name: '${namePrefix}-${r.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: r.displayName
    description: r.description
    severity: r.severity
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: r.frequency
    windowSize: r.window
    criteria: {
      allOf: [
        {
          query: r.query
          timeAggregation: 'Count'
          operator: r.operator
          threshold: r.threshold
          dimensions: map(r.dimensions, d => {
            name: d
            operator: 'Include'
            values: [
              '*'
            ]
          })
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: r.autoMitigate
    // AppTraces exists in a new workspace only once telemetry arrives; the
    // queries are checked offline instead (tools/kqlcheck).
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}]

// The workbook: one panel per query under infra/monitoring/workbook.
var panel = {
  version: 'KqlItem/1.0'
  size: 0
  queryType: 0
  resourceType: 'microsoft.operationalinsights/workspaces'
  crossComponentResources: [
    logAnalytics.id
  ]
}

// Panels that follow the time range picker.
var ranged = union(panel, {
  timeContextFromParameter: 'TimeRange'
})

var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      name: 'intro'
      content: {
        json: '## Databricks token broker\nWhat the service did: tokens issued, rotated and revoked, failures, refusals, tokens about to expire, and its calls to Entra ID, ARM, Databricks, Key Vault and Service Bus. Alerts: infra/README.md.'
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        parameters: [
          {
            id: 'time-range'
            version: 'KqlParameterItem/1.0'
            name: 'TimeRange'
            label: 'Time range'
            type: 4
            isRequired: true
            value: {
              durationMs: 604800000
            }
            typeSettings: {
              selectableValues: [
                {
                  durationMs: 86400000
                }
                {
                  durationMs: 604800000
                }
                {
                  durationMs: 2592000000
                }
              ]
            }
          }
        ]
      }
    }
    {
      type: 3
      name: 'events-summary'
      content: union(ranged, {
        title: 'Events (audit lines by event name)'
        query: loadTextContent('../../monitoring/workbook/events-summary.kql')
        visualization: 'table'
      })
    }
    {
      type: 3
      name: 'tokens-over-time'
      content: union(ranged, {
        title: 'Tokens issued, rotated and revoked'
        query: loadTextContent('../../monitoring/workbook/tokens-over-time.kql')
        visualization: 'timechart'
      })
    }
    {
      type: 3
      name: 'tokens-by-workspace'
      content: union(ranged, {
        title: 'Per workspace'
        query: loadTextContent('../../monitoring/workbook/tokens-by-workspace.kql')
        visualization: 'table'
      })
    }
    {
      type: 3
      name: 'expiring-soon'
      content: union(panel, {
        title: 'Tokens expiring in the next 7 and 30 days'
        query: loadTextContent('../../monitoring/workbook/expiring-soon.kql')
        visualization: 'table'
        // Tokens live up to TOKEN_MAX_LIFETIME (90 days by default): look
        // back that far, whatever the picker says.
        timeContext: {
          durationMs: 7776000000
        }
      })
    }
    {
      type: 3
      name: 'failures-by-code'
      content: union(ranged, {
        title: 'Failures by code'
        query: loadTextContent('../../monitoring/workbook/failures-by-code.kql')
        visualization: 'barchart'
      })
    }
    {
      type: 3
      name: 'refusals-by-caller'
      content: union(ranged, {
        title: 'Refusals by caller'
        query: loadTextContent('../../monitoring/workbook/refusals-by-caller.kql')
        visualization: 'table'
      })
    }
    {
      type: 3
      name: 'upstream-latency'
      content: union(ranged, {
        title: 'Upstream latency (ms per attempt)'
        query: loadTextContent('../../monitoring/workbook/upstream-latency.kql')
        visualization: 'timechart'
      })
    }
    {
      type: 3
      name: 'upstream-throttling'
      content: union(ranged, {
        title: 'Upstream throttling (429 and 503 answers)'
        query: loadTextContent('../../monitoring/workbook/upstream-throttling.kql')
        visualization: 'timechart'
      })
    }
    {
      type: 3
      name: 'invocations'
      content: union(ranged, {
        title: 'Invocations (the Functions host request telemetry)'
        query: loadTextContent('../../monitoring/workbook/invocations.kql')
        visualization: 'table'
      })
    }
  ]
  fallbackResourceIds: [
    logAnalytics.id
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, namePrefix, 'workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Databricks token broker (${namePrefix})'
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: logAnalytics.id
    serializedData: string(workbookContent)
  }
}

@description('Names of the alert rules.')
output ruleNames array = [for (r, i) in rules: rule[i].name]

@description('Resource id of the workbook.')
output workbookId string = workbook.id
