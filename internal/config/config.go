// Package config reads and validates the service's settings (contract
// sections 4 and 6). Every setting is an UPPER_SNAKE environment variable
// read through envconfig, except the Functions host's own mixed-case
// AzureWebJobsStorage names, read as they are spelt; Load reports every problem at once, one line each,
// naming the setting, so a bad deployment fails at start with all it needs
// to know.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/input"
	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// env is the raw environment, as envconfig reads it. Values stay strings
// here so that parsing can report every bad value, not just the first.
// The `default` tags are the contract's defaults; an empty value means the
// default too (App Service keeps empty app settings).
type env struct {
	Port                       string `envconfig:"FUNCTIONS_CUSTOMHANDLER_PORT" default:"8080"`
	ListenAddress              string `envconfig:"LISTEN_ADDRESS" default:"127.0.0.1"`
	Cloud                      string `envconfig:"AZURE_CLOUD" default:"AzurePublic"`
	ARMEndpoint                string `envconfig:"AZURE_RESOURCE_MANAGER_ENDPOINT"`
	AllowedHosts               string `envconfig:"DATABRICKS_ALLOWED_HOSTS"`
	AllowedSubscriptions       string `envconfig:"DATABRICKS_ALLOWED_SUBSCRIPTIONS"`
	DefaultLifetime            string `envconfig:"TOKEN_DEFAULT_LIFETIME" default:"720h"`
	MaxLifetime                string `envconfig:"TOKEN_MAX_LIFETIME" default:"2160h"`
	RotateBefore               string `envconfig:"TOKEN_ROTATE_BEFORE" default:"168h"`
	EventTokenScopes           string `envconfig:"EVENT_TOKEN_SCOPES"`
	KeyVaultURI                string `envconfig:"KEY_VAULT_URI"`
	ServiceBusNamespace        string `envconfig:"SERVICEBUS_NAMESPACE"`
	ServiceBusConnectionString string `envconfig:"SERVICEBUS_CONNECTION_STRING"`
	ResultsQueue               string `envconfig:"RESULTS_QUEUE" default:"token-results"`
	ResultsIncludeTokenValue   string `envconfig:"RESULTS_INCLUDE_TOKEN_VALUE" default:"false"`
	TokenRequestsQueue         string `envconfig:"TOKEN_REQUESTS_QUEUE" default:"token-requests"`
	WorkspaceEventsQueue       string `envconfig:"WORKSPACE_EVENTS_QUEUE" default:"workspace-events"`
	MaxDeliveryCount           string `envconfig:"QUEUE_MAX_DELIVERY_COUNT" default:"10"`
	NotReadyBackoff            string `envconfig:"WORKSPACE_NOT_READY_BACKOFF" default:"30s"`
	RetryBudget                string `envconfig:"UPSTREAM_RETRY_BUDGET" default:"30s"`
	AllowInsecureLoopback      string `envconfig:"ALLOW_INSECURE_LOOPBACK" default:"false"`
	LogLevel                   string `envconfig:"LOG_LEVEL" default:"info"`
	AuthzPolicy                string `envconfig:"AUTHZ_POLICY"`
	// The ledger's storage, under the names the Functions host reads
	// (contract section 6). envconfig upper-cases every name it looks up,
	// and these are mixed-case (case matters on Linux), so it skips them
	// and Load reads them by their exact names.
	Storage         string `envconfig:"AzureWebJobsStorage" ignored:"true"`
	StorageTableURI string `envconfig:"AzureWebJobsStorage__tableServiceUri" ignored:"true"`
	LedgerTable     string `envconfig:"LEDGER_TABLE" default:"tokenledger"`
	LedgerRetention string `envconfig:"LEDGER_RETENTION" default:"2160h"`
}

// Config is the validated configuration.
type Config struct {
	Port          string
	ListenAddress string
	Cloud         Cloud
	// ARMEndpoint is the Resource Manager endpoint (the cloud's, or
	// AZURE_RESOURCE_MANAGER_ENDPOINT), without a trailing slash.
	ARMEndpoint          string
	AllowedHosts         allowlist.Hosts
	AllowedSubscriptions allowlist.Subscriptions
	DefaultLifetime      time.Duration
	MaxLifetime          time.Duration
	RotateBefore         time.Duration
	// EventTokenScopes are the scopes of tokens issued for workspace
	// events (EVENT_TOKEN_SCOPES, comma list); nil: unscoped, as before.
	EventTokenScopes []string
	KeyVaultURI      string
	// ServiceBusNamespace is a fully qualified namespace host; empty when
	// results go through a connection string or are not published.
	ServiceBusNamespace string
	// ServiceBusConnectionString is a secret: never log it.
	ServiceBusConnectionString string
	ResultsQueue               string
	ResultsIncludeTokenValue   bool
	// TokenRequestsQueue and WorkspaceEventsQueue are the trigger queues
	// (as in function.json); a message for a workspace that is not ready
	// yet is rescheduled onto its own queue.
	TokenRequestsQueue   string
	WorkspaceEventsQueue string
	// MaxDeliveryCount is the trigger queues' max delivery count: the
	// delivery that reaches it publishes its failure before dead-lettering.
	MaxDeliveryCount int
	// NotReadyBackoff is the first wait before a queued operation on a
	// workspace that is still provisioning is tried again (doubling each
	// time, at most 15 minutes, ten attempts).
	NotReadyBackoff       time.Duration
	RetryBudget           time.Duration
	AllowInsecureLoopback bool
	LogLevel              slog.Level
	// Policy decides which caller may do what (AUTHZ_POLICY); nil means no
	// policy: a function key is the only control.
	Policy *authz.Policy
	// PlatformAuth is App Service Authentication being on for the app
	// (WEBSITE_AUTH_ENABLED, set by the platform): the caller headers are
	// then the platform's, not the caller's.
	PlatformAuth bool
	// Ledger is where the record of issued tokens is kept.
	Ledger Ledger
}

// Ledger says where the ledger lives (contract section 6): the app's own
// storage account, as the Functions host reaches it, or, with neither
// storage setting, this instance's memory.
type Ledger struct {
	// TableEndpoint is the table service URL, safe to log; empty means
	// the ledger is in memory.
	TableEndpoint string
	// Connection is the parsed AzureWebJobsStorage connection string; its
	// zero value (TableEndpoint empty) means the identity-based form
	// (AzureWebJobsStorage__tableServiceUri with the service's credential).
	// It holds a key or signature: its String shows only the endpoint, and
	// it is never to be logged otherwise.
	Connection ledger.ConnectionString
	// Table is LEDGER_TABLE.
	Table string
	// Retention is LEDGER_RETENTION.
	Retention time.Duration
}

// InMemory reports whether no storage is configured: one instance only.
func (l Ledger) InMemory() bool { return l.TableEndpoint == "" }

// UsesConnectionString reports whether the ledger authenticates with the
// AzureWebJobsStorage connection string rather than the identity.
func (l Ledger) UsesConnectionString() bool { return l.Connection.TableEndpoint != "" }

// String describes the ledger for the start-up log, without secrets.
func (l Ledger) String() string {
	switch {
	case l.InMemory():
		return "in memory (this instance only: set AzureWebJobsStorage or AzureWebJobsStorage__tableServiceUri to share it)"
	case l.UsesConnectionString():
		return "table " + l.Table + " at " + l.TableEndpoint + " (AzureWebJobsStorage connection string)"
	}
	return "table " + l.Table + " at " + l.TableEndpoint + " (the function's identity)"
}

// TrustsCallerHeaders reports whether the X-MS-CLIENT-PRINCIPAL headers can
// be believed: App Service Authentication is on, or a policy is configured
// (which the settings allow only behind a loopback listener and, in Azure,
// with App Service Authentication on). Otherwise any caller could set them.
func (c Config) TrustsCallerHeaders() bool { return c.PlatformAuth || c.Policy != nil }

// Address is the host:port to listen on.
func (c Config) Address() string { return net.JoinHostPort(c.ListenAddress, c.Port) }

// PublishesResults reports whether a results destination is configured.
func (c Config) PublishesResults() bool {
	return c.ServiceBusNamespace != "" || c.ServiceBusConnectionString != ""
}

// Names lists every environment variable the service reads itself (the
// azidentity variables are read by azidentity).
func Names() []string {
	t := reflect.TypeFor[env]()
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Tag.Get("envconfig")
	}
	return names
}

// maxPATLifetime is Databricks' own cap on new tokens (730 days).
const maxPATLifetime = 730 * 24 * time.Hour

// Load reads the environment and validates it. The error lists every
// problem, one per line, each starting with the setting's name.
//
// envconfig reads the UPPER_SNAKE settings from the process environment
// itself (it takes no lookup function); getenv reads the rest: the
// Functions host's mixed-case storage names and App Service's WEBSITE_*
// variables. main passes os.Getenv.
func Load(getenv func(string) string) (Config, error) {
	var e env
	if err := envconfig.Process("", &e); err != nil {
		return Config{}, err
	}
	e.Storage, e.StorageTableURI = getenv("AzureWebJobsStorage"), getenv("AzureWebJobsStorage__tableServiceUri")
	applyDefaults(&e)
	return parse(e, getenv)
}

func applyDefaults(e *env) {
	v := reflect.ValueOf(e).Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := v.Field(i)
		if strings.TrimSpace(f.String()) == "" {
			f.SetString(t.Field(i).Tag.Get("default"))
		}
	}
}

func parse(e env, getenv func(string) string) (Config, error) {
	var p input.Problems
	c := Config{ListenAddress: strings.TrimSpace(e.ListenAddress), ResultsQueue: strings.TrimSpace(e.ResultsQueue)}

	c.AllowInsecureLoopback = parseBool(&p, "ALLOW_INSECURE_LOOPBACK", e.AllowInsecureLoopback)
	c.ResultsIncludeTokenValue = parseBool(&p, "RESULTS_INCLUDE_TOKEN_VALUE", e.ResultsIncludeTokenValue)

	if n, err := strconv.Atoi(strings.TrimSpace(e.Port)); err != nil || n < 1 || n > 65535 {
		p.Add("FUNCTIONS_CUSTOMHANDLER_PORT", "%q is not a TCP port (1-65535)", e.Port)
	} else {
		c.Port = strconv.Itoa(n)
	}
	if net.ParseIP(c.ListenAddress) == nil && c.ListenAddress != "localhost" {
		p.Add("LISTEN_ADDRESS", "%q is not an IP address (use 127.0.0.1, ::1, or 0.0.0.0 to listen on all interfaces)", e.ListenAddress)
	}

	cl, ok := lookupCloud(strings.TrimSpace(e.Cloud))
	if !ok {
		p.Add("AZURE_CLOUD", "%q is not one of AzurePublic, AzureUSGovernment, AzureChina", e.Cloud)
		cl, _ = lookupCloud("AzurePublic")
	}
	c.Cloud = cl
	c.ARMEndpoint = cl.ResourceManager
	if e.ARMEndpoint != "" {
		if u, err := endpoint(e.ARMEndpoint, c.AllowInsecureLoopback); err != nil {
			p.Add("AZURE_RESOURCE_MANAGER_ENDPOINT", "%v", err)
		} else {
			c.ARMEndpoint = u
		}
	}

	hosts := e.AllowedHosts
	if strings.TrimSpace(hosts) == "" {
		hosts = "*." + cl.DatabricksSuffix
	}
	if h, err := allowlist.ParseHosts(hosts); err != nil {
		p.Add("DATABRICKS_ALLOWED_HOSTS", "%v", err)
	} else if h.Empty() {
		p.Add("DATABRICKS_ALLOWED_HOSTS", "lists no host pattern")
	} else {
		c.AllowedHosts = h
	}
	if s, err := allowlist.ParseSubscriptions(e.AllowedSubscriptions); err != nil {
		p.Add("DATABRICKS_ALLOWED_SUBSCRIPTIONS", "%v", err)
	} else {
		c.AllowedSubscriptions = s
	}

	c.DefaultLifetime = parseDuration(&p, "TOKEN_DEFAULT_LIFETIME", e.DefaultLifetime, time.Second)
	c.MaxLifetime = parseDuration(&p, "TOKEN_MAX_LIFETIME", e.MaxLifetime, time.Second)
	c.RotateBefore = parseDuration(&p, "TOKEN_ROTATE_BEFORE", e.RotateBefore, time.Second)
	c.RetryBudget = parseDuration(&p, "UPSTREAM_RETRY_BUDGET", e.RetryBudget, time.Second)
	c.NotReadyBackoff = parseDuration(&p, "WORKSPACE_NOT_READY_BACKOFF", e.NotReadyBackoff, time.Second)
	if c.MaxLifetime > maxPATLifetime {
		p.Add("TOKEN_MAX_LIFETIME", "%s is over Databricks' cap of 730 days (17520h)", e.MaxLifetime)
	}
	if c.DefaultLifetime > 0 && c.MaxLifetime > 0 && c.DefaultLifetime > c.MaxLifetime {
		p.Add("TOKEN_DEFAULT_LIFETIME", "%s is longer than TOKEN_MAX_LIFETIME (%s)", e.DefaultLifetime, e.MaxLifetime)
	}
	if c.RotateBefore > 0 && c.MaxLifetime > 0 && c.RotateBefore >= c.MaxLifetime {
		p.Add("TOKEN_ROTATE_BEFORE", "%s must be shorter than TOKEN_MAX_LIFETIME (%s)", e.RotateBefore, e.MaxLifetime)
	}
	if scopes, err := tokens.ParseScopeList(e.EventTokenScopes); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.Add("EVENT_TOKEN_SCOPES", "%s", line)
		}
	} else {
		c.EventTokenScopes = scopes
	}
	if c.RetryBudget > 10*time.Minute {
		p.Add("UPSTREAM_RETRY_BUDGET", "%s is longer than the longest Consumption function timeout (10m)", e.RetryBudget)
	}

	if e.KeyVaultURI != "" {
		if u, err := endpoint(e.KeyVaultURI, c.AllowInsecureLoopback); err != nil {
			p.Add("KEY_VAULT_URI", "%v", err)
		} else {
			c.KeyVaultURI = u
		}
	}

	c.ServiceBusNamespace, c.ServiceBusConnectionString = parseServiceBus(&p, e, cl, c.AllowInsecureLoopback)
	for _, q := range []struct{ name, value string }{{"RESULTS_QUEUE", e.ResultsQueue}, {"TOKEN_REQUESTS_QUEUE", e.TokenRequestsQueue}, {"WORKSPACE_EVENTS_QUEUE", e.WorkspaceEventsQueue}} {
		if !validQueueName(strings.TrimSpace(q.value)) {
			p.Add(q.name, "%q is not a Service Bus queue name (1-260 letters, digits, '.', '-', '_', '/')", q.value)
		}
	}
	c.TokenRequestsQueue, c.WorkspaceEventsQueue = strings.TrimSpace(e.TokenRequestsQueue), strings.TrimSpace(e.WorkspaceEventsQueue)
	if n, err := strconv.Atoi(strings.TrimSpace(e.MaxDeliveryCount)); err != nil || n < 1 || n > 2000 {
		p.Add("QUEUE_MAX_DELIVERY_COUNT", "%q is not a delivery count (1-2000)", e.MaxDeliveryCount)
	} else {
		c.MaxDeliveryCount = n
	}
	if c.ResultsIncludeTokenValue && !c.PublishesResults() {
		p.Add("RESULTS_INCLUDE_TOKEN_VALUE", "is true but no results queue is configured (set SERVICEBUS_NAMESPACE or SERVICEBUS_CONNECTION_STRING)")
	}

	c.Ledger = parseLedger(&p, e, c.AllowInsecureLoopback)

	switch strings.ToLower(strings.TrimSpace(e.LogLevel)) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		p.Add("LOG_LEVEL", "%q is not one of debug, info, warn, error", e.LogLevel)
	}
	c.PlatformAuth = authz.PlatformAuthEnabled(getenv)
	if pol, err := authz.LoadPolicy(strings.TrimSpace(e.AuthzPolicy), nil); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			p.Add("AUTHZ_POLICY", "%s", line)
		}
	} else if pol != nil {
		c.Policy = pol
		if err := pol.CheckMaxLifetime(c.MaxLifetime); err != nil && c.MaxLifetime > 0 {
			for _, line := range strings.Split(err.Error(), "\n") {
				p.Add("AUTHZ_POLICY", "%s", line)
			}
		}
		// The principal headers are trusted because only the local Functions
		// host, behind App Service Authentication, can reach the binary.
		if !IsLoopback(c.ListenAddress) {
			p.Add("AUTHZ_POLICY", "is set while LISTEN_ADDRESS %s is not a loopback address: the caller headers are trusted only from the Functions host on this machine", c.ListenAddress)
		}
		if getenv("WEBSITE_SITE_NAME") != "" && !authz.PlatformAuthEnabled(getenv) {
			p.Add("AUTHZ_POLICY", "is set but App Service Authentication is off (WEBSITE_AUTH_ENABLED is neither True nor a non-zero number): callers could forge the principal headers")
		}
	}
	return c, p.Err()
}

func parseBool(p *input.Problems, name, v string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		p.Add(name, "%q is not true or false", v)
	}
	return b
}

func parseDuration(p *input.Problems, name, v string, min time.Duration) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	switch {
	case err != nil:
		p.Add(name, "%q is not a duration (like 720h or 30s)", v)
	case d < min:
		p.Add(name, "%s is shorter than %s", v, min)
	case d%time.Second != 0:
		p.Add(name, "%s is not a whole number of seconds", v)
	default:
		return d
	}
	return 0
}

// endpoint checks an https endpoint. Plain http is allowed only for a
// loopback address and only with ALLOW_INSECURE_LOOPBACK (local stand-ins).
func endpoint(raw string, allowInsecureLoopback bool) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q is not an absolute URL like https://host", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return "", fmt.Errorf("%q uses http://, which is allowed only for loopback addresses", raw)
		}
		if !allowInsecureLoopback {
			return "", fmt.Errorf("%q uses http://; set ALLOW_INSECURE_LOOPBACK=true to allow it for a local stand-in", raw)
		}
	default:
		return "", fmt.Errorf("%q must use https://", raw)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// IsLoopback reports whether host is a loopback address or "localhost".
func IsLoopback(host string) bool { return allowlist.IsLoopback(host) }

func parseServiceBus(p *input.Problems, e env, cl Cloud, allowInsecureLoopback bool) (ns, conn string) {
	ns, conn = strings.TrimSpace(e.ServiceBusNamespace), strings.TrimSpace(e.ServiceBusConnectionString)
	if ns != "" && conn != "" {
		p.Add("SERVICEBUS_NAMESPACE", "set together with SERVICEBUS_CONNECTION_STRING; set only one")
		return "", ""
	}
	if ns != "" {
		ns = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(ns, "sb://"), "https://"), "/")
		if !strings.Contains(ns, ".") {
			ns += "." + cl.ServiceBusSuffix
		}
		for _, l := range strings.Split(ns, ".") {
			if l == "" || strings.ContainsAny(l, "/:@ ") {
				p.Add("SERVICEBUS_NAMESPACE", "%q is not a namespace name or host (like mybus.%s)", e.ServiceBusNamespace, cl.ServiceBusSuffix)
				return "", ""
			}
		}
	}
	if conn != "" {
		// Never echo the connection string: it holds a shared access key.
		fields := map[string]string{}
		for _, part := range strings.Split(conn, ";") {
			if k, v, ok := strings.Cut(part, "="); ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		u, err := url.Parse(fields["endpoint"])
		if err != nil || u.Scheme != "sb" || u.Hostname() == "" {
			p.Add("SERVICEBUS_CONNECTION_STRING", "has no Endpoint=sb://<namespace> part")
			return "", ""
		}
		if emu, _ := strconv.ParseBool(fields["usedevelopmentemulator"]); emu {
			// The emulator mode speaks plain AMQP: the same rule as http://.
			if !IsLoopback(u.Hostname()) {
				p.Add("SERVICEBUS_CONNECTION_STRING", "UseDevelopmentEmulator=true (plain AMQP) is allowed only for a loopback endpoint")
				return "", ""
			}
			if !allowInsecureLoopback {
				p.Add("SERVICEBUS_CONNECTION_STRING", "UseDevelopmentEmulator=true (plain AMQP) needs ALLOW_INSECURE_LOOPBACK=true")
				return "", ""
			}
		}
	}
	return ns, conn
}

// parseLedger reads the ledger's settings. The connection string is a
// secret: no problem quotes it (ledger.ParseConnectionString never does).
func parseLedger(p *input.Problems, e env, allowInsecureLoopback bool) Ledger {
	l := Ledger{Table: strings.TrimSpace(e.LedgerTable)}
	if !validTableName(l.Table) {
		p.Add("LEDGER_TABLE", "%q is not a table name (3-63 letters and digits, starting with a letter; not \"tables\")", e.LedgerTable)
	}
	l.Retention = parseDuration(p, "LEDGER_RETENTION", e.LedgerRetention, time.Second)
	conn, uri := strings.TrimSpace(e.Storage), strings.TrimSpace(e.StorageTableURI)
	switch {
	case conn != "" && uri != "":
		p.Add("AzureWebJobsStorage", "set together with AzureWebJobsStorage__tableServiceUri; set only one (the connection string locally, the identity-based form in Azure)")
	case conn != "":
		cs, err := ledger.ParseConnectionString(conn)
		if err != nil {
			p.Add("AzureWebJobsStorage", "%v", err)
			break
		}
		u, err := endpoint(cs.TableEndpoint, allowInsecureLoopback)
		if err != nil {
			p.Add("AzureWebJobsStorage", "table endpoint %v", err)
			break
		}
		l.TableEndpoint, l.Connection = u, cs
	case uri != "":
		// A query here would be a shared access signature: a secret, so
		// it is refused without quoting the value.
		if pu, err := url.Parse(uri); err == nil && (pu.RawQuery != "" || pu.User != nil) {
			p.Add("AzureWebJobsStorage__tableServiceUri", "must be the table endpoint alone, without a query or user info (the ledger uses the function's identity)")
			break
		}
		u, err := endpoint(uri, allowInsecureLoopback)
		if err != nil {
			p.Add("AzureWebJobsStorage__tableServiceUri", "%v", err)
			break
		}
		l.TableEndpoint = u
	}
	return l
}

// validTableName applies Azure's table name rules.
func validTableName(n string) bool {
	if len(n) < 3 || len(n) > 63 || strings.EqualFold(n, "tables") {
		return false
	}
	for i, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func validQueueName(q string) bool {
	if q == "" || len(q) > 260 {
		return false
	}
	for _, r := range q {
		if !(r == '.' || r == '-' || r == '_' || r == '/' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}
