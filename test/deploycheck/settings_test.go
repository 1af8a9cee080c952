package deploycheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/contoso/databricks-token-broker/internal/config"
)

// functionAppBicep is the module whose app settings resource configures the
// Function App.
var functionAppBicep = filepath.Join("infra", "bicep", "modules", "functionapp.bicep")

// notInAzure lists settings the binary reads that the Function App must NOT
// set. Everything else config.Names() returns must be set by the Bicep.
var notInAzure = map[string]string{
	// A shared access key: a secret, and app settings hold none. The
	// deployed app publishes with its managed identity (SERVICEBUS_NAMESPACE).
	"SERVICEBUS_CONNECTION_STRING": "secret",
	// The storage connection string form: a secret (and the account
	// refuses shared keys). The app uses AzureWebJobsStorage__tableServiceUri.
	"AzureWebJobsStorage": "secret",
	// Plain http to loopback stand-ins: local development only.
	"ALLOW_INSECURE_LOOPBACK": "local only",
	// An ARM endpoint override for local emulators and private clouds; in
	// Azure the endpoint follows AZURE_CLOUD.
	"AZURE_RESOURCE_MANAGER_ENDPOINT": "local only",
	// The Functions host chooses the port and sets it for the child process.
	"FUNCTIONS_CUSTOMHANDLER_PORT": "set by the host",
	// The host calls 127.0.0.1; listening anywhere else would expose the
	// handler beside the host's own authentication.
	"LISTEN_ADDRESS": "must stay loopback",
}

// runtimeSettings are settings for the Functions runtime and the Azure SDK
// rather than for our binary: allowed in the Bicep without being in
// config.Names().
var runtimeSettings = []string{
	"FUNCTIONS_WORKER_RUNTIME",
	"FUNCTIONS_EXTENSION_VERSION",
	"ROTATE_SCHEDULE", // function.json %ROTATE_SCHEDULE% (checked below)
	// azidentity reads these itself (contract section 4); AZURE_CLIENT_SECRET
	// is deliberately absent: no secrets in settings.
	"AZURE_CLIENT_ID",
	"AZURE_TENANT_ID",
	"AZURE_TOKEN_CREDENTIALS",
	"AZURE_AUTHORITY_HOST",
}

// pendingSettings are settings of the binary that the Bicep already sets
// while the code reading them is being wired in: accepted in the app
// settings before config.Names() lists them. Once config.Names() has one it
// is checked like every other setting (it must then be set), and it may be
// removed from here.
var pendingSettings = []string{}

var runtimePrefixes = []string{
	"AzureWebJobsStorage__",  // identity-based host storage
	"ServiceBusConnection__", // identity-based trigger connection (function.json connection)
	"APPLICATIONINSIGHTS_",   // telemetry, Entra ID authenticated
}

// bicepAppSettings reads the names the Function App's app settings resource
// sets, with the Bicep grammar (tools/bicepcheck --app-settings).
func bicepAppSettings(t *testing.T) []string {
	t.Helper()
	stdout, stderr, code := runChecker(t, "--app-settings", functionAppBicep)
	if code != 0 {
		t.Fatalf("bicepcheck --app-settings %s: exit %d\n%s%s", functionAppBicep, code, stdout, stderr)
	}
	var out struct {
		Settings []struct {
			Name string `json:"name"`
			Line int    `json:"line"`
		} `json:"settings"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("bicepcheck --app-settings output: %v\n%s", err, stdout)
	}
	var names []string
	for _, s := range out.Settings {
		if slices.Contains(names, s.Name) {
			t.Errorf("%s:%d: app setting %s is set twice", functionAppBicep, s.Line, s.Name)
		}
		names = append(names, s.Name)
	}
	if len(names) == 0 {
		t.Fatalf("no app settings found in %s (Microsoft.Web/sites/config 'appsettings')", functionAppBicep)
	}
	return names
}

// TestAppSettingsCoverConfig proves the deployed app is configured for
// everything the binary reads (config.Names() minus the notInAzure
// exceptions), that none of the exceptions is set, and that every other app
// setting is a known runtime setting, so a setting renamed on one side only
// fails here rather than in Azure.
func TestAppSettingsCoverConfig(t *testing.T) {
	set := bicepAppSettings(t)
	names := config.Names()
	if len(names) == 0 {
		t.Fatal("config.Names() is empty")
	}
	for _, n := range names {
		_, excepted := notInAzure[n]
		switch {
		case excepted && slices.Contains(set, n):
			t.Errorf("%s sets %s, which must not be set in Azure (%s)", functionAppBicep, n, notInAzure[n])
		case !excepted && !slices.Contains(set, n):
			t.Errorf("%s does not set %s, which the binary reads (config.Names()); add it to serviceSettings", functionAppBicep, n)
		}
	}
	for n := range notInAzure {
		if !slices.Contains(names, n) {
			t.Errorf("exception %s is no longer in config.Names(); remove it from notInAzure", n)
		}
	}
	for _, s := range set {
		if slices.Contains(names, s) || slices.Contains(runtimeSettings, s) || slices.Contains(pendingSettings, s) ||
			slices.ContainsFunc(runtimePrefixes, func(p string) bool { return strings.HasPrefix(s, p) }) {
			continue
		}
		t.Errorf("%s sets %s, which neither the binary (config.Names()) nor the runtime reads", functionAppBicep, s)
	}
}

// TestFunctionJSONSettingsAreSet proves every %SETTING% a function.json
// refers to, and every connection's identity-based settings, are set by the
// Bicep; an unresolved %X% stops the function from loading.
func TestFunctionJSONSettingsAreSet(t *testing.T) {
	set := bicepAppSettings(t)
	ref := regexp.MustCompile(`%([A-Za-z0-9_]+)%`)
	for folder, bindings := range functionFolders(t) {
		raw, err := os.ReadFile(filepath.Join(root(t), folder, "function.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(raw), -1) {
			if !slices.Contains(set, m[1]) {
				t.Errorf("%s/function.json uses %%%s%%, which %s does not set", folder, m[1], functionAppBicep)
			}
		}
		for _, b := range bindings {
			if b.Connection == "" {
				continue
			}
			if slices.Contains(set, b.Connection) {
				t.Errorf("%s: connection %s is set as a connection string; use %s__fullyQualifiedNamespace", folder, b.Connection, b.Connection)
			}
			for _, suffix := range []string{"__fullyQualifiedNamespace", "__credential", "__clientId"} {
				if !slices.Contains(set, b.Connection+suffix) {
					t.Errorf("%s: connection %s needs app setting %s%s in %s", folder, b.Connection, b.Connection, suffix, functionAppBicep)
				}
			}
		}
	}
}

// TestAzdFiles proves azure.yaml deploys the function service from the
// Bicep folder, and main.parameters.json passes only parameters main.bicep
// declares.
func TestAzdFiles(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "azure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yaml := string(raw)
	for _, want := range []string{"path: infra/bicep", "module: main", "  api:", "host: function", "language: custom", "go run ./cmd/package"} {
		if !strings.Contains(yaml, want) {
			t.Errorf("azure.yaml lacks %q", want)
		}
	}
	// azd uploads a .zip artifact as it is, but re-zips a folder, and
	// before azd 1.26 (or on Windows) the re-zip drops the handler's
	// executable bit. So dist must be the zip the prepackage hook builds.
	dist := regexp.MustCompile(`(?m)^\s+dist:\s*(\S+)\s*$`).FindStringSubmatch(yaml)
	if dist == nil {
		t.Fatal("azure.yaml: the api service has no dist")
	}
	if !strings.HasSuffix(dist[1], ".zip") {
		t.Errorf("azure.yaml: dist %s is a folder, which azd re-zips (losing the executable bit before azd 1.26); point it at the zip cmd/package writes", dist[1])
	}
	hooks := regexp.MustCompile(`go run \./cmd/package -o (\S+)`).FindAllStringSubmatch(yaml, -1)
	if len(hooks) != 2 {
		t.Errorf("azure.yaml: %d prepackage hooks run cmd/package, want 2 (posix and windows)", len(hooks))
	}
	for _, h := range hooks {
		if h[1] != dist[1] {
			t.Errorf("azure.yaml: a prepackage hook writes %s but dist is %s", h[1], dist[1])
		}
	}
	bicep, err := os.ReadFile(filepath.Join(root(t), "infra", "bicep", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^param\s+(\w+)`).FindAllStringSubmatch(string(bicep), -1) {
		declared[m[1]] = true
	}
	raw, err = os.ReadFile(filepath.Join(root(t), "infra", "bicep", "main.parameters.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Parameters map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatalf("main.parameters.json: %v", err)
	}
	for name := range p.Parameters {
		if !declared[name] {
			t.Errorf("main.parameters.json passes %s, which main.bicep does not declare", name)
		}
	}
	if _, ok := p.Parameters["environmentName"]; !ok {
		t.Error("main.parameters.json does not pass environmentName (azd's AZURE_ENV_NAME)")
	}
}

// TestBicepQueuesMatchFunctions proves the queues main.bicep creates (and
// passes as TOKEN_REQUESTS_QUEUE and WORKSPACE_EVENTS_QUEUE) are the ones
// the function.json triggers read, and that the results queue is the
// binary's default RESULTS_QUEUE.
func TestBicepQueuesMatchFunctions(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "infra", "bicep", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)\nvar queues = \{(.*?)\n\}`).FindStringSubmatch(string(raw))
	if block == nil {
		t.Fatal("main.bicep has no `var queues = {...}` block")
	}
	queues := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+):\s*'([^']*)'`).FindAllStringSubmatch(block[1], -1) {
		queues[m[1]] = m[2]
	}
	want := map[string]string{"requests": "token-requests", "workspaceEvents": "workspace-events", "results": "token-results"}
	for key, name := range want {
		if queues[key] != name {
			t.Errorf("main.bicep queues.%s = %q, want %q", key, queues[key], name)
		}
	}
	folders := functionFolders(t)
	for _, c := range contractFunctions {
		if c.queue == "" {
			continue
		}
		for _, b := range folders[c.folder] {
			if b.Type == "serviceBusTrigger" && b.QueueName != queues["requests"] && b.QueueName != queues["workspaceEvents"] {
				t.Errorf("%s/function.json reads queue %q, which main.bicep does not create", c.folder, b.QueueName)
			}
		}
	}
}
