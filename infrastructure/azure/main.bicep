// hal-logging: Log Analytics workspace, table BenchmarkRuns_CL, Data Collection
// Endpoint and Rule, and the "Monitoring Metrics Publisher" role for a managed
// identity -- the same resources as setup-logging.sh, declaratively.
//
// The table columns, the stream declaration and the data flow are NOT written
// here: they are loaded from columns.json, which is the output of
//     hal-logging schema --part bicep -o infrastructure/azure/columns.json
// (a test fails when the committed file differs from the schema in code).
//
// Deploy into an existing resource group:
//     az deployment group create -g RG -f infrastructure/azure/main.bicep \
//        -p identityName=hal-logs-identity
// then set on the VM the values printed as outputs (AZURE_MONITOR_*, AZURE_CLIENT_ID).

targetScope = 'resourceGroup'

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Log Analytics workspace name (created, or reused if it exists).')
param workspaceName string = 'hal-logs'

@description('Data Collection Endpoint name.')
param dceName string = 'hal-logs-dce'

@description('Data Collection Rule name.')
param dcrName string = 'hal-logs-dcr'

@description('User-assigned managed identity to create and grant; leave empty to use principalId.')
param identityName string = 'hal-logs-identity'

@description('Object id of an existing identity (e.g. a VM system-assigned identity); used when identityName is empty.')
param principalId string = ''

@description('Interactive retention of BenchmarkRuns_CL in days (Analytics plan; Basic and Auxiliary fix it at 30).')
@minValue(4)
@maxValue(730)
param retentionInDays int = 30

@description('Table plan: Analytics (queryable, alerts), Basic (cheaper ingestion, one-table queries billed per GB scanned) or Auxiliary (cheapest, slow billed queries, no alerts; only for a new table; its dynamic column is stored as text, converted by the DCR).')
@allowed([
  'Analytics'
  'Basic'
  'Auxiliary'
])
param tablePlan string = 'Analytics'

@description('Total retention of BenchmarkRuns_CL in days (interactive + long-term): 4 to 730, or whole years 1095, 1460, 1826, 2191, 2556, 2922, 3288, 3653, 4018, 4383. 0 leaves it to the workspace.')
@minValue(0)
@maxValue(4383)
param totalRetentionInDays int = 0

@description('DCR transformation; "source" keeps rows as sent (filter before sending: cheaper).')
param transformKql string = 'source'

@description('Deploy the "hal-logging: benchmark runs" workbook (run picker, task table, errors, volume); not with the Auxiliary plan, whose queries read the dynamic column as text.')
param deployWorkbook bool = true

// Generated from hal_logging/schema.py; see the header.
var schema = loadJsonContent('columns.json')

// Monitoring Metrics Publisher (built-in role).
var metricsPublisherRoleId = subscriptionResourceId(
  'Microsoft.Authorization/roleDefinitions',
  '3913510d-42f4-4e42-8a64-420c390055eb'
)

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: workspaceName
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

var isAuxiliary = tablePlan == 'Auxiliary'
var totalRetention = totalRetentionInDays == 0 ? null : totalRetentionInDays

// Analytics or Basic. Basic fixes the interactive retention (30 days), so only
// Analytics sets retentionInDays.
resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = if (!isAuxiliary) {
  parent: workspace
  name: schema.tableName
  properties: {
    plan: tablePlan
    retentionInDays: tablePlan == 'Analytics' ? retentionInDays : null
    totalRetentionInDays: totalRetention
    schema: {
      name: schema.tableName
      columns: schema.tableColumns
    }
  }
}

// Auxiliary: only this preview api-version can set the plan, and the table has no
// dynamic column (Properties is text; the rule's transformation converts it).
resource auxiliaryTable 'Microsoft.OperationalInsights/workspaces/tables@2023-01-01-preview' = if (isAuxiliary) {
  parent: workspace
  name: schema.tableName
  properties: {
    plan: 'Auxiliary'
    totalRetentionInDays: totalRetention
    schema: {
      name: schema.tableName
      columns: schema.auxiliaryTableColumns
    }
  }
}

resource dce 'Microsoft.Insights/dataCollectionEndpoints@2022-06-01' = {
  name: dceName
  location: location
  properties: {
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource dcr 'Microsoft.Insights/dataCollectionRules@2022-06-01' = {
  name: dcrName
  location: location
  dependsOn: [
    table // the output stream must exist before the rule refers to it
    auxiliaryTable
  ]
  properties: {
    dataCollectionEndpointId: dce.id
    streamDeclarations: schema.streamDeclarations
    destinations: {
      logAnalytics: [
        {
          name: schema.destinationName
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      for flow in schema.dataFlows: union(flow, {
        transformKql: isAuxiliary ? '${transformKql}${schema.auxiliaryTransformSuffix}' : transformKql
      })
    ]
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (!empty(identityName)) {
  name: empty(identityName) ? 'unused' : identityName
  location: location
}

var publisherPrincipalId = empty(identityName) ? principalId : identity.properties.principalId

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(identityName) || !empty(principalId)) {
  name: guid(dcr.id, empty(identityName) ? principalId : identityName, metricsPublisherRoleId)
  scope: dcr
  properties: {
    roleDefinitionId: metricsPublisherRoleId
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The workbook's JSON is generated too (hal-logging schema --part workbook, a test
// compares it): its queries come from the same schema as the table.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = if (deployWorkbook && !isAuxiliary) {
  name: guid(resourceGroup().id, workspaceName, 'hal-logging-workbook')
  location: location
  kind: 'shared'
  properties: {
    displayName: 'hal-logging: benchmark runs'
    category: 'workbook'
    sourceId: workspace.id
    serializedData: replace(loadTextContent('workbook.json'), '\${WORKSPACE_RESOURCE_ID}', workspace.id)
  }
  dependsOn: [
    table
    auxiliaryTable
  ]
}

@description('export AZURE_MONITOR_DATA_COLLECTION_ENDPOINT=<this>')
output AZURE_MONITOR_DATA_COLLECTION_ENDPOINT string = dce.properties.logsIngestion.endpoint

@description('export AZURE_MONITOR_DATA_COLLECTION_RULE_ID=<this> (the immutable id)')
output AZURE_MONITOR_DATA_COLLECTION_RULE_ID string = dcr.properties.immutableId

@description('export AZURE_MONITOR_STREAM_NAME=<this>')
output AZURE_MONITOR_STREAM_NAME string = schema.streamName

@description('export AZURE_CLIENT_ID=<this> on VMs using the user-assigned identity')
output AZURE_CLIENT_ID string = empty(identityName) ? '' : identity.properties.clientId
