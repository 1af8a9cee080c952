package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Not parallel: t.Setenv.

func TestLoadDefaults(t *testing.T) {
	clearSettings(t)
	c, err := Load(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address() != "127.0.0.1:8080" || c.DefaultLifetime != 720*time.Hour || c.MaxLifetime != 2160*time.Hour ||
		c.RotateBefore != 168*time.Hour || c.RetryBudget != 30*time.Second || c.ResultsQueue != "token-results" ||
		c.Cloud.Name != "AzurePublic" || c.ARMEndpoint != "https://management.azure.com" || c.PublishesResults() || c.MaxDeliveryCount != 10 {
		t.Errorf("defaults = %+v", c)
	}
	if !c.AllowedHosts.Allows("adb-1.1.azuredatabricks.net") || c.AllowedHosts.Allows("adb-1.1.databricks.azure.us") {
		t.Errorf("default host allow-list = %s", c.AllowedHosts)
	}
	if !c.Ledger.InMemory() || c.Ledger.Table != "tokenledger" || c.Ledger.Retention != 2160*time.Hour {
		t.Errorf("ledger defaults = %+v", c.Ledger)
	}
	if c.Cloud.ManagementScope() != "https://management.core.windows.net//.default" {
		t.Errorf("management scope = %s", c.Cloud.ManagementScope())
	}
}

func TestEventTokenScopes(t *testing.T) {
	clearSettings(t)
	t.Setenv("EVENT_TOKEN_SCOPES", " sql:read, unity-catalog:read ")
	c, err := Load(os.Getenv)
	if err != nil || strings.Join(c.EventTokenScopes, "|") != "sql:read|unity-catalog:read" {
		t.Errorf("got %v, %v", c.EventTokenScopes, err)
	}
	t.Setenv("EVENT_TOKEN_SCOPES", "sql:write,jobs,jobs")
	_, err = Load(os.Getenv)
	if err == nil || strings.Count(err.Error(), "EVENT_TOKEN_SCOPES: ") != 2 {
		t.Errorf("one line per problem, naming the setting: %v", err)
	}
}

func TestLoadSovereignCloud(t *testing.T) {
	clearSettings(t)
	t.Setenv("AZURE_CLOUD", "azureusgovernment")
	t.Setenv("SERVICEBUS_NAMESPACE", "mybus")
	c, err := Load(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.ARMEndpoint != "https://management.usgovcloudapi.net" || !c.AllowedHosts.Allows("adb-1.1.databricks.azure.us") ||
		c.ServiceBusNamespace != "mybus.servicebus.usgovcloudapi.net" {
		t.Errorf("got %+v", c)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	clearSettings(t)
	bad := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT":         "http",
		"LISTEN_ADDRESS":                       "everywhere",
		"AZURE_CLOUD":                          "Mars",
		"AZURE_RESOURCE_MANAGER_ENDPOINT":      "http://arm.example.com",
		"DATABRICKS_ALLOWED_HOSTS":             "*.net",
		"DATABRICKS_ALLOWED_SUBSCRIPTIONS":     "nope",
		"TOKEN_DEFAULT_LIFETIME":               "forever",
		"TOKEN_MAX_LIFETIME":                   "20000h",
		"TOKEN_ROTATE_BEFORE":                  "-1h",
		"KEY_VAULT_URI":                        "ftp://kv",
		"RESULTS_QUEUE":                        "bad queue!",
		"RESULTS_INCLUDE_TOKEN_VALUE":          "maybe",
		"UPSTREAM_RETRY_BUDGET":                "1h",
		"ALLOW_INSECURE_LOOPBACK":              "yes please",
		"LOG_LEVEL":                            "loud",
		"QUEUE_MAX_DELIVERY_COUNT":             "0",
		"LEDGER_TABLE":                         "token-ledger",
		"LEDGER_RETENTION":                     "a while",
		"AzureWebJobsStorage__tableServiceUri": "http://table.example.com",
		"EVENT_TOKEN_SCOPES":                   "sql,SQL:read",
	}
	for k, v := range bad {
		t.Setenv(k, v)
	}
	_, err := Load(os.Getenv)
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	for k := range bad {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, k+": ")
		}
		if !found {
			t.Errorf("no line names %s:\n%s", k, err)
		}
	}
}

func TestInsecureLoopbackRule(t *testing.T) {
	tests := []struct {
		endpoint, allow string
		ok              bool
	}{
		{"https://management.azure.com", "false", true},
		{"http://127.0.0.1:9000", "false", false},
		{"http://127.0.0.1:9000", "true", true},
		{"http://[::1]:9000", "true", true},
		{"http://localhost:9000", "true", true},
		{"http://10.0.0.1:9000", "true", false},
		{"http://arm.example.com", "true", false},
	}
	for _, tt := range tests {
		clearSettings(t)
		t.Setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", tt.endpoint)
		t.Setenv("ALLOW_INSECURE_LOOPBACK", tt.allow)
		_, err := Load(os.Getenv)
		if (err == nil) != tt.ok {
			t.Errorf("%s with ALLOW_INSECURE_LOOPBACK=%s: err = %v", tt.endpoint, tt.allow, err)
		}
	}
}

func TestServiceBusSettings(t *testing.T) {
	cases := []struct {
		ns, conn, allow string
		ok              bool
	}{
		{"mybus.servicebus.windows.net", "", "false", true},
		{"mybus", "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=s", "false", false},
		{"", "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true", "true", true},
		{"", "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true", "false", false},
		{"", "Endpoint=sb://bus.example.com;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true", "true", false},
		{"", "garbage", "false", false},
	}
	for _, tt := range cases {
		clearSettings(t)
		t.Setenv("SERVICEBUS_NAMESPACE", tt.ns)
		t.Setenv("SERVICEBUS_CONNECTION_STRING", tt.conn)
		t.Setenv("ALLOW_INSECURE_LOOPBACK", tt.allow)
		_, err := Load(os.Getenv)
		if (err == nil) != tt.ok {
			t.Errorf("ns=%q conn=%q: err = %v", tt.ns, tt.conn, err)
		}
		if err != nil && strings.Contains(err.Error(), "SharedAccessKey=s") {
			t.Errorf("the error echoes the connection string's key: %v", err)
		}
	}
}

// The example settings file is where a newcomer learns the settings: it
// must list every one the binary reads.
func TestLocalSettingsExampleListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../local.settings.json.example")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Values map[string]string }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		if n == "FUNCTIONS_CUSTOMHANDLER_PORT" {
			continue // set by the host
		}
		if _, ok := f.Values[n]; !ok {
			t.Errorf("local.settings.json.example lacks %s", n)
		}
	}
}

// The README's settings table is the reference users read: every setting
// the binary reads must be in it.
func TestREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		if !strings.Contains(string(b), "| `"+n+"`") {
			t.Errorf("README.md's settings table lacks %s", n)
		}
	}
}

func TestLedgerSettings(t *testing.T) {
	const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	azurite := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + key + ";TableEndpoint=http://127.0.0.1:41234/devstoreaccount1;"
	tests := []struct {
		name, conn, uri, allow string
		endpoint               string // empty: in memory
		problem                string // the setting a problem names; empty: none
	}{
		{"neither: in memory", "", "", "false", "", ""},
		{"identity-based", "", "https://stacct.table.core.windows.net/", "false", "https://stacct.table.core.windows.net", ""},
		{"connection string to Azure", "DefaultEndpointsProtocol=https;AccountName=stacct;AccountKey=" + key + ";EndpointSuffix=core.windows.net", "", "false", "https://stacct.table.core.windows.net", ""},
		{"Azurite", azurite, "", "true", "http://127.0.0.1:41234/devstoreaccount1", ""},
		{"Azurite without ALLOW_INSECURE_LOOPBACK", azurite, "", "false", "", "AzureWebJobsStorage"},
		{"UseDevelopmentStorage", "UseDevelopmentStorage=true", "", "true", "http://127.0.0.1:10002/devstoreaccount1", ""},
		{"UseDevelopmentStorage without ALLOW_INSECURE_LOOPBACK", "UseDevelopmentStorage=true", "", "false", "", "AzureWebJobsStorage"},
		{"loopback table URI", "", "http://127.0.0.1:41234/devstoreaccount1", "true", "http://127.0.0.1:41234/devstoreaccount1", ""},
		{"loopback table URI without the flag", "", "http://127.0.0.1:41234/devstoreaccount1", "false", "", "AzureWebJobsStorage__tableServiceUri"},
		{"plain http elsewhere", "", "http://stacct.table.core.windows.net", "true", "", "AzureWebJobsStorage__tableServiceUri"},
		{"a SAS in the URI", "", "https://stacct.table.core.windows.net/?sv=1&sig=abc", "false", "", "AzureWebJobsStorage__tableServiceUri"},
		{"both forms", azurite, "https://stacct.table.core.windows.net", "true", "", "AzureWebJobsStorage"},
		{"no key", "AccountName=stacct", "", "false", "", "AzureWebJobsStorage"},
		{"garbage", "not a connection string", "", "false", "", "AzureWebJobsStorage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearSettings(t)
			t.Setenv("AzureWebJobsStorage", tt.conn)
			t.Setenv("AzureWebJobsStorage__tableServiceUri", tt.uri)
			t.Setenv("ALLOW_INSECURE_LOOPBACK", tt.allow)
			c, err := Load(os.Getenv)
			if tt.problem != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.problem+": ") {
					t.Fatalf("err = %v, want a problem naming %s", err, tt.problem)
				}
				if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "sig=abc") {
					t.Errorf("the problem quotes a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Ledger.TableEndpoint != tt.endpoint || c.Ledger.UsesConnectionString() != (tt.conn != "") {
				t.Errorf("ledger = %s (endpoint %q), want endpoint %q", c.Ledger, c.Ledger.TableEndpoint, tt.endpoint)
			}
			if strings.Contains(c.Ledger.String(), key) || strings.Contains(fmt.Sprintf("%v %+v", c.Ledger, c.Ledger), key) {
				t.Errorf("the ledger's description shows the key")
			}
		})
	}
}

// envconfig upper-cases the names it reads; the host's mixed-case names
// must be read as spelt, and their upper-case twins ignored.
func TestLedgerSettingsAreReadBySpelling(t *testing.T) {
	clearSettings(t)
	t.Setenv("AZUREWEBJOBSSTORAGE__TABLESERVICEURI", "https://other.table.core.windows.net")
	c, err := Load(os.Getenv)
	if err != nil || !c.Ledger.InMemory() {
		t.Fatalf("upper-case twin read: %s, %v", c.Ledger, err)
	}
	t.Setenv("AzureWebJobsStorage__tableServiceUri", "https://stacct.table.core.windows.net")
	if c, err = Load(os.Getenv); err != nil || c.Ledger.TableEndpoint != "https://stacct.table.core.windows.net" {
		t.Fatalf("exact name not read: %s, %v", c.Ledger, err)
	}
}

func TestLedgerTableNames(t *testing.T) {
	for name, ok := range map[string]bool{"tokenledger": true, "TokenLedger2": true, "abc": true, "ab": false, "1ledger": false,
		"token-ledger": false, "tables": false, "Tables": false, strings.Repeat("a", 63): true, strings.Repeat("a", 64): false} {
		if got := validTableName(name); got != ok {
			t.Errorf("validTableName(%q) = %v, want %v", name, got, ok)
		}
	}
}

// clearSettings empties every setting the service reads, for the test's
// duration, so that only what the test sets counts.
func clearSettings(t *testing.T) {
	for _, n := range Names() {
		t.Setenv(n, "")
	}
}
