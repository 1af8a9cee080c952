package config

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// Not parallel: t.Setenv.

func TestLoadDefaults(t *testing.T) {
	for _, n := range Names() {
		t.Setenv(n, "")
	}
	c, err := Load()
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
	if c.Cloud.ManagementScope() != "https://management.core.windows.net//.default" {
		t.Errorf("management scope = %s", c.Cloud.ManagementScope())
	}
}

func TestEventTokenScopes(t *testing.T) {
	for _, n := range Names() {
		t.Setenv(n, "")
	}
	t.Setenv("EVENT_TOKEN_SCOPES", " sql:read, unity-catalog:read ")
	c, err := Load()
	if err != nil || strings.Join(c.EventTokenScopes, "|") != "sql:read|unity-catalog:read" {
		t.Errorf("got %v, %v", c.EventTokenScopes, err)
	}
	t.Setenv("EVENT_TOKEN_SCOPES", "sql:write,jobs,jobs")
	_, err = Load()
	if err == nil || strings.Count(err.Error(), "EVENT_TOKEN_SCOPES: ") != 2 {
		t.Errorf("one line per problem, naming the setting: %v", err)
	}
}

func TestLoadSovereignCloud(t *testing.T) {
	for _, n := range Names() {
		t.Setenv(n, "")
	}
	t.Setenv("AZURE_CLOUD", "azureusgovernment")
	t.Setenv("SERVICEBUS_NAMESPACE", "mybus")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.ARMEndpoint != "https://management.usgovcloudapi.net" || !c.AllowedHosts.Allows("adb-1.1.databricks.azure.us") ||
		c.ServiceBusNamespace != "mybus.servicebus.usgovcloudapi.net" {
		t.Errorf("got %+v", c)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	for _, n := range Names() {
		t.Setenv(n, "")
	}
	bad := map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT":     "http",
		"LISTEN_ADDRESS":                   "everywhere",
		"AZURE_CLOUD":                      "Mars",
		"AZURE_RESOURCE_MANAGER_ENDPOINT":  "http://arm.example.com",
		"DATABRICKS_ALLOWED_HOSTS":         "*.net",
		"DATABRICKS_ALLOWED_SUBSCRIPTIONS": "nope",
		"TOKEN_DEFAULT_LIFETIME":           "forever",
		"TOKEN_MAX_LIFETIME":               "20000h",
		"TOKEN_ROTATE_BEFORE":              "-1h",
		"KEY_VAULT_URI":                    "ftp://kv",
		"RESULTS_QUEUE":                    "bad queue!",
		"RESULTS_INCLUDE_TOKEN_VALUE":      "maybe",
		"UPSTREAM_RETRY_BUDGET":            "1h",
		"ALLOW_INSECURE_LOOPBACK":          "yes please",
		"LOG_LEVEL":                        "loud",
		"QUEUE_MAX_DELIVERY_COUNT":         "0",
		"EVENT_TOKEN_SCOPES":               "sql,SQL:read",
	}
	for k, v := range bad {
		t.Setenv(k, v)
	}
	_, err := Load()
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
		for _, n := range Names() {
			t.Setenv(n, "")
		}
		t.Setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", tt.endpoint)
		t.Setenv("ALLOW_INSECURE_LOOPBACK", tt.allow)
		_, err := Load()
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
		for _, n := range Names() {
			t.Setenv(n, "")
		}
		t.Setenv("SERVICEBUS_NAMESPACE", tt.ns)
		t.Setenv("SERVICEBUS_CONNECTION_STRING", tt.conn)
		t.Setenv("ALLOW_INSECURE_LOOPBACK", tt.allow)
		_, err := Load()
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
