package config

import (
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// DatabricksResource is the Entra application id of Azure Databricks, the
// audience of the bearer token on every workspace call. It is the same in
// every cloud.
const DatabricksResource = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"

// Cloud is what differs between Azure clouds for this service.
type Cloud struct {
	Name string
	// SDK is azcore's cloud configuration (Entra authority, ARM endpoint and
	// audience), handed to every Azure SDK client.
	SDK cloud.Configuration
	// ManagementAudience is the classic Azure management resource. One token
	// for it serves both the ARM workspace lookup and Databricks'
	// X-Databricks-Azure-SP-Management-Token header, so each identity needs
	// just two Entra tokens: this one and the Databricks one.
	ManagementAudience string
	// ResourceManager is the cloud's ARM endpoint. (azcore's cloud
	// configurations only gain it when the arm package is linked in, so
	// the table keeps its own.)
	ResourceManager  string
	DatabricksSuffix string
	ServiceBusSuffix string
	KeyVaultSuffix   string
}

var clouds = []Cloud{
	{Name: "AzurePublic", SDK: cloud.AzurePublic, ManagementAudience: "https://management.core.windows.net/", ResourceManager: "https://management.azure.com",
		DatabricksSuffix: "azuredatabricks.net", ServiceBusSuffix: "servicebus.windows.net", KeyVaultSuffix: "vault.azure.net"},
	{Name: "AzureUSGovernment", SDK: cloud.AzureGovernment, ManagementAudience: "https://management.core.usgovcloudapi.net/", ResourceManager: "https://management.usgovcloudapi.net",
		DatabricksSuffix: "databricks.azure.us", ServiceBusSuffix: "servicebus.usgovcloudapi.net", KeyVaultSuffix: "vault.usgovcloudapi.net"},
	{Name: "AzureChina", SDK: cloud.AzureChina, ManagementAudience: "https://management.core.chinacloudapi.cn/", ResourceManager: "https://management.chinacloudapi.cn",
		DatabricksSuffix: "databricks.azure.cn", ServiceBusSuffix: "servicebus.chinacloudapi.cn", KeyVaultSuffix: "vault.azure.cn"},
}

func lookupCloud(name string) (Cloud, bool) {
	for _, c := range clouds {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Cloud{}, false
}

// ManagementScope is the Entra scope for the management audience. The
// double slash is deliberate: Entra takes everything before the last slash
// as the resource, giving exactly "https://management.core.windows.net/".
func (c Cloud) ManagementScope() string { return c.ManagementAudience + "/.default" }

// DatabricksScope is the Entra scope for Azure Databricks.
func (c Cloud) DatabricksScope() string { return DatabricksResource + "/.default" }
