package deploycheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// contractFunction is one row of the contract's function table (contract.md
// section 1, and tokens/ from section 6).
type contractFunction struct {
	folder  string
	trigger string
	methods []string // HTTP functions
	queue   string   // Service Bus functions
}

var contractFunctions = []contractFunction{
	{folder: "create-token", trigger: "httpTrigger", methods: []string{"POST"}},
	{folder: "revoke-token", trigger: "httpTrigger", methods: []string{"POST"}},
	{folder: "list-tokens", trigger: "httpTrigger", methods: []string{"GET"}},
	{folder: "tokens", trigger: "httpTrigger", methods: []string{"GET"}},
	{folder: "token-requests", trigger: "serviceBusTrigger", queue: "token-requests"},
	{folder: "workspace-events", trigger: "serviceBusTrigger", queue: "workspace-events"},
	{folder: "rotate-tokens", trigger: "timerTrigger"},
}

type binding struct {
	Type              string   `json:"type"`
	Direction         string   `json:"direction"`
	Name              string   `json:"name"`
	AuthLevel         string   `json:"authLevel"`
	Methods           []string `json:"methods"`
	Route             string   `json:"route"`
	QueueName         string   `json:"queueName"`
	Connection        string   `json:"connection"`
	IsSessionsEnabled bool     `json:"isSessionsEnabled"`
	Cardinality       string   `json:"cardinality"`
	Schedule          string   `json:"schedule"`
	RunOnStartup      bool     `json:"runOnStartup"`
}

// functionFolders returns the folders at the repository root that hold a
// function.json, with their bindings.
func functionFolders(t *testing.T) map[string][]binding {
	t.Helper()
	entries, err := os.ReadDir(root(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]binding{}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(root(t), e.Name(), "function.json"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var fn struct {
			Bindings []binding `json:"bindings"`
		}
		if err := json.Unmarshal(raw, &fn); err != nil {
			t.Fatalf("%s/function.json: %v", e.Name(), err)
		}
		out[e.Name()] = fn.Bindings
	}
	return out
}

// TestHostJSON proves host.json makes the app a custom handler whose HTTP
// requests are forwarded raw at /api/<folder>, on the v4 extension bundle
// (Service Bus extension 5.x, identity-based connections; Flex needs v4).
func TestHostJSON(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "host.json"))
	if err != nil {
		t.Fatalf("host.json: %v", err)
	}
	var h struct {
		Version       string `json:"version"`
		CustomHandler *struct {
			Description struct {
				DefaultExecutablePath string `json:"defaultExecutablePath"`
			} `json:"description"`
			EnableForwardingHttpRequest bool `json:"enableForwardingHttpRequest"`
			EnableProxyingHttpRequest   bool `json:"enableProxyingHttpRequest"`
		} `json:"customHandler"`
		ExtensionBundle struct {
			ID      string `json:"id"`
			Version string `json:"version"`
		} `json:"extensionBundle"`
		Extensions struct {
			HTTP *struct {
				RoutePrefix *string `json:"routePrefix"`
			} `json:"http"`
		} `json:"extensions"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("host.json: %v", err)
	}
	if h.Version != "2.0" {
		t.Errorf("version = %q, want 2.0", h.Version)
	}
	if h.CustomHandler == nil {
		t.Fatal("host.json has no customHandler section")
	}
	// cmd/package puts the binary at this path; the zip must match.
	if got := h.CustomHandler.Description.DefaultExecutablePath; got != "handler" {
		t.Errorf("customHandler.description.defaultExecutablePath = %q, want handler", got)
	}
	if !h.CustomHandler.EnableForwardingHttpRequest && !h.CustomHandler.EnableProxyingHttpRequest {
		t.Error("neither enableForwardingHttpRequest nor enableProxyingHttpRequest: HTTP functions would get the envelope, not the raw request")
	}
	if h.ExtensionBundle.ID != "Microsoft.Azure.Functions.ExtensionBundle" || h.ExtensionBundle.Version != "[4.*, 5.0.0)" {
		t.Errorf("extensionBundle = %+v, want Microsoft.Azure.Functions.ExtensionBundle [4.*, 5.0.0)", h.ExtensionBundle)
	}
	if h.Extensions.HTTP != nil && h.Extensions.HTTP.RoutePrefix != nil && *h.Extensions.HTTP.RoutePrefix != "api" {
		t.Errorf("extensions.http.routePrefix = %q, want api (the contract's /api/<folder>)", *h.Extensions.HTTP.RoutePrefix)
	}
}

// TestFunctionFoldersMatchContract proves the function folders are exactly
// the contract's, each with its one trigger: HTTP functions have one
// httpTrigger in and one http out (so forwarding applies), the contract's
// methods and authLevel function; Service Bus functions read the right
// queue through the identity-based ServiceBusConnection; the timer runs on
// %ROTATE_SCHEDULE%.
func TestFunctionFoldersMatchContract(t *testing.T) {
	folders := functionFolders(t)
	for name := range folders {
		if !slices.ContainsFunc(contractFunctions, func(c contractFunction) bool { return c.folder == name }) {
			t.Errorf("%s/function.json: %s is not a function the contract lists", name, name)
		}
	}
	for _, c := range contractFunctions {
		bindings, ok := folders[c.folder]
		if !ok {
			t.Errorf("%s/function.json is missing (contract section 1)", c.folder)
			continue
		}
		where := c.folder + "/function.json"
		switch c.trigger {
		case "httpTrigger":
			checkHTTP(t, where, c, bindings)
		case "serviceBusTrigger":
			checkServiceBus(t, where, c, bindings)
		case "timerTrigger":
			checkTimer(t, where, bindings)
		}
	}
}

func checkHTTP(t *testing.T, where string, c contractFunction, bindings []binding) {
	t.Helper()
	if len(bindings) != 2 {
		t.Errorf("%s: %d bindings, want exactly an httpTrigger in and an http out (forwarding needs one-in/one-out)", where, len(bindings))
		return
	}
	var in, out *binding
	for i := range bindings {
		b := &bindings[i]
		switch {
		case b.Type == "httpTrigger" && b.Direction == "in":
			in = b
		case b.Type == "http" && b.Direction == "out":
			out = b
		}
	}
	if in == nil || out == nil {
		t.Errorf("%s: bindings %+v, want one httpTrigger in and one http out", where, bindings)
		return
	}
	if in.AuthLevel != "function" {
		t.Errorf("%s: authLevel %q, want function", where, in.AuthLevel)
	}
	methods := make([]string, len(in.Methods))
	for i, m := range in.Methods {
		methods[i] = strings.ToUpper(m)
	}
	slices.Sort(methods)
	if !slices.Equal(methods, c.methods) {
		t.Errorf("%s: methods %q, want %q", where, in.Methods, c.methods)
	}
	if in.Route != "" && in.Route != c.folder {
		t.Errorf("%s: route %q; the contract serves /api/%s", where, in.Route, c.folder)
	}
	if in.Name != "req" || out.Name != "res" {
		t.Errorf("%s: binding names %q/%q, want req/res", where, in.Name, out.Name)
	}
}

func checkServiceBus(t *testing.T, where string, c contractFunction, bindings []binding) {
	t.Helper()
	if len(bindings) != 1 {
		t.Errorf("%s: %d bindings, want only the serviceBusTrigger (results go out through the SDK)", where, len(bindings))
		return
	}
	b := bindings[0]
	if b.Type != "serviceBusTrigger" || b.Direction != "in" {
		t.Errorf("%s: %s/%s, want serviceBusTrigger in", where, b.Type, b.Direction)
	}
	if b.QueueName != c.queue {
		t.Errorf("%s: queueName %q, want %q", where, b.QueueName, c.queue)
	}
	// Identity-based: the ServiceBusConnection__* app settings in the Bicep.
	if b.Connection != "ServiceBusConnection" {
		t.Errorf("%s: connection %q, want ServiceBusConnection", where, b.Connection)
	}
	if b.IsSessionsEnabled {
		t.Errorf("%s: sessions enabled; Event Grid cannot deliver to session queues and the Bicep queues have none", where)
	}
	if b.Cardinality != "" && b.Cardinality != "one" {
		t.Errorf("%s: cardinality %q, want one (the handler takes one message per invocation)", where, b.Cardinality)
	}
	// The handler reads the message from the envelope's Data under this name.
	if b.Name != "message" {
		t.Errorf("%s: binding name %q, want message", where, b.Name)
	}
}

func checkTimer(t *testing.T, where string, bindings []binding) {
	t.Helper()
	if len(bindings) != 1 || bindings[0].Type != "timerTrigger" || bindings[0].Direction != "in" {
		t.Errorf("%s: bindings %+v, want one timerTrigger in", where, bindings)
		return
	}
	b := bindings[0]
	if b.Schedule != "%ROTATE_SCHEDULE%" {
		t.Errorf("%s: schedule %q, want %%ROTATE_SCHEDULE%% (set by the Bicep app settings)", where, b.Schedule)
	}
	if b.RunOnStartup {
		t.Errorf("%s: runOnStartup true would rotate on every scale-out and restart", where)
	}
	if b.Name != "timer" {
		t.Errorf("%s: binding name %q, want timer", where, b.Name)
	}
}
