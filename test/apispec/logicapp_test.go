package apispec_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/contoso/databricks-token-broker/test/apispec"
)

// The Logic Apps example (examples/logic-app-create-token.json) is checked
// against the shape of the Workflow Definition Language (schema 2016-06-01,
// as Microsoft Learn's reference describes it) and against the OpenAPI
// document: it must call documented operations with documented fields and
// read only documented response fields, so neither can drift from the other.

const workflowSchema = "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#"

var (
	// Keys a workflow definition may have at the top level.
	topLevelKeys = []string{"$schema", "contentVersion", "parameters", "triggers", "actions", "outputs", "staticResults"}
	// Workflow parameter types (compared without regard to case).
	parameterTypes = []string{"array", "bool", "float", "int", "object", "securestring", "secureobject", "string"}
	// Trigger and action types the example may use.
	triggerTypes = []string{"Recurrence", "Request", "Http", "HttpWebhook", "ApiConnection", "ApiConnectionWebhook"}
	actionTypes  = []string{"Http", "HttpWebhook", "ApiConnection", "ApiConnectionWebhook", "Compose", "ParseJson", "If", "Switch",
		"Scope", "Foreach", "Until", "Terminate", "Wait", "InitializeVariable", "SetVariable", "Response"}
	runAfterStatuses = []string{"Succeeded", "Failed", "Skipped", "TimedOut"}
	retryTypes       = []string{"default", "none", "fixed", "exponential"}
	httpMethods      = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
	frequencies      = []string{"Second", "Minute", "Hour", "Day", "Week", "Month"}
)

// action is one trigger or action of the example, wherever it is nested.
type action struct {
	name  string
	scope string // "" for the top level; else the containing action and branch
	def   map[string]any
}

func (a action) typ() string            { s, _ := a.def["type"].(string); return s }
func (a action) inputs() map[string]any { m, _ := a.def["inputs"].(map[string]any); return m }
func (a action) json() string           { b, _ := json.Marshal(a.def["inputs"]); return string(b) }

func (a action) secured() []string {
	rc, _ := a.def["runtimeConfiguration"].(map[string]any)
	sd, _ := rc["secureData"].(map[string]any)
	props, _ := sd["properties"].([]any)
	var out []string
	for _, p := range props {
		s, _ := p.(string)
		out = append(out, s)
	}
	return out
}

func loadExample(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(apispec.RepoRoot(), "examples", "logic-app-create-token.json"))
	if err != nil {
		t.Fatal(err)
	}
	var wf map[string]any
	if err := json.Unmarshal(b, &wf); err != nil {
		t.Fatalf("the example is not JSON: %v", err)
	}
	return wf
}

// collect walks the actions of a scope and of every nested scope (If,
// Switch, Scope, Foreach, Until), checking each scope's runAfter graph.
func collect(t *testing.T, scope string, actions map[string]any, out *[]action) {
	t.Helper()
	if len(actions) == 0 {
		t.Errorf("%s: no actions", orTop(scope))
		return
	}
	roots := 0
	for _, name := range slices.Sorted(maps.Keys(actions)) {
		def, ok := actions[name].(map[string]any)
		if !ok {
			t.Errorf("action %s is not an object", name)
			continue
		}
		a := action{name: name, scope: scope, def: def}
		*out = append(*out, a)
		if !slices.Contains(actionTypes, a.typ()) {
			t.Errorf("action %s: type %q is not a known action type", name, a.typ())
		}
		ra, ok := def["runAfter"].(map[string]any)
		if !ok {
			t.Errorf("action %s: runAfter is missing or not an object", name)
		}
		if len(ra) == 0 {
			roots++
		}
		for pred, sts := range ra {
			if pred == name {
				t.Errorf("action %s runs after itself", name)
			}
			if _, ok := actions[pred]; !ok {
				t.Errorf("action %s runs after %q, which is not an action of the same scope (%s)", name, pred, orTop(scope))
			}
			list, _ := sts.([]any)
			if len(list) == 0 {
				t.Errorf("action %s: runAfter %s lists no statuses", name, pred)
			}
			for _, s := range list {
				if st, _ := s.(string); !slices.Contains(runAfterStatuses, st) {
					t.Errorf("action %s: runAfter %s status %v is not one of %v", name, pred, s, runAfterStatuses)
				}
			}
		}
		switch a.typ() {
		case "If":
			if _, ok := def["expression"]; !ok {
				t.Errorf("condition %s has no expression", name)
			}
			inner, _ := def["actions"].(map[string]any)
			collect(t, name+" (true)", inner, out)
			if e, ok := def["else"].(map[string]any); ok {
				inner, _ := e["actions"].(map[string]any)
				collect(t, name+" (false)", inner, out)
			}
		case "Scope", "Foreach", "Until":
			inner, _ := def["actions"].(map[string]any)
			collect(t, name, inner, out)
		case "Switch":
			cases, _ := def["cases"].(map[string]any)
			for c, v := range cases {
				m, _ := v.(map[string]any)
				inner, _ := m["actions"].(map[string]any)
				collect(t, name+" case "+c, inner, out)
			}
		}
	}
	if roots == 0 {
		t.Errorf("%s: every action runs after another; none can start", orTop(scope))
	}
	checkAcyclic(t, scope, actions)
}

func orTop(scope string) string {
	if scope == "" {
		return "the top level"
	}
	return scope
}

func checkAcyclic(t *testing.T, scope string, actions map[string]any) {
	t.Helper()
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) bool
	visit = func(n string) bool {
		switch state[n] {
		case 1:
			return false
		case 2:
			return true
		}
		state[n] = 1
		def, _ := actions[n].(map[string]any)
		ra, _ := def["runAfter"].(map[string]any)
		for p := range ra {
			if _, ok := actions[p]; ok && !visit(p) {
				return false
			}
		}
		state[n] = 2
		return true
	}
	for n := range actions {
		if !visit(n) {
			t.Errorf("%s: runAfter has a cycle through %s", orTop(scope), n)
		}
	}
}

var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

// duration parses the ISO 8601 durations retry policies use (days, hours,
// minutes, seconds).
func duration(s string) (time.Duration, error) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || s == "PT" {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * unit
		}
	}
	return d, nil
}

// checkRetryPolicy follows Microsoft Learn's retry policy limits: count
// 1-90, intervals in ISO 8601 between PT5S and P1D.
func checkRetryPolicy(t *testing.T, name string, rp map[string]any) {
	t.Helper()
	typ, _ := rp["type"].(string)
	if !slices.Contains(retryTypes, typ) {
		t.Errorf("%s: retryPolicy type %q is not one of %v", name, typ, retryTypes)
		return
	}
	if typ != "fixed" && typ != "exponential" {
		return
	}
	count, ok := rp["count"].(float64)
	if !ok || count != float64(int(count)) || count < 1 || count > 90 {
		t.Errorf("%s: retryPolicy count %v; want an integer 1-90", name, rp["count"])
	}
	bounds := map[string]time.Duration{}
	for _, k := range []string{"interval", "minimumInterval", "maximumInterval"} {
		s, ok := rp[k].(string)
		if !ok {
			if k == "interval" {
				t.Errorf("%s: retryPolicy has no interval", name)
			}
			continue
		}
		d, err := duration(s)
		if err != nil || d < 5*time.Second || d > 24*time.Hour {
			t.Errorf("%s: retryPolicy %s %q; want an ISO 8601 duration from PT5S to P1D", name, k, s)
		}
		bounds[k] = d
	}
	if lo, hi := bounds["minimumInterval"], bounds["maximumInterval"]; lo != 0 && hi != 0 && lo > hi {
		t.Errorf("%s: minimumInterval %s is above maximumInterval %s", name, lo, hi)
	}
}

var (
	paramRef   = regexp.MustCompile(`parameters\('([^']+)'\)`)
	actionRef  = regexp.MustCompile(`\b(body|outputs|actions|result)\('([^']+)'\)`)
	fieldChain = regexp.MustCompile(`body\('([^']+)'\)((?:\?\['[^']+'\])+)`)
	fieldName  = regexp.MustCompile(`\['([^']+)'\]`)
)

func TestLogicAppExampleShape(t *testing.T) {
	t.Parallel()
	wf := loadExample(t)
	if wf["$schema"] != workflowSchema {
		t.Errorf("$schema = %v; want %s", wf["$schema"], workflowSchema)
	}
	if v, _ := wf["contentVersion"].(string); !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("contentVersion %q; want n.n.n.n", v)
	}
	for k := range wf {
		if !slices.Contains(topLevelKeys, k) {
			t.Errorf("unknown top-level key %q", k)
		}
	}
	params, ok := wf["parameters"].(map[string]any)
	if !ok {
		t.Fatal("parameters is missing or not an object")
	}
	for name, v := range params {
		p, _ := v.(map[string]any)
		typ, _ := p["type"].(string)
		if !slices.Contains(parameterTypes, strings.ToLower(typ)) {
			t.Errorf("parameter %s: type %q is not one of %v", name, typ, parameterTypes)
		}
	}
	if _, ok := params["$connections"]; !ok {
		t.Error("no $connections parameter for the ApiConnection actions")
	}

	triggers, _ := wf["triggers"].(map[string]any)
	if len(triggers) == 0 {
		t.Error("no trigger")
	}
	for name, v := range triggers {
		tr, _ := v.(map[string]any)
		typ, _ := tr["type"].(string)
		if !slices.Contains(triggerTypes, typ) {
			t.Errorf("trigger %s: type %q is not a known trigger type", name, typ)
		}
		if typ == "Recurrence" {
			rec, _ := tr["recurrence"].(map[string]any)
			freq, _ := rec["frequency"].(string)
			interval, _ := rec["interval"].(float64)
			if !slices.Contains(frequencies, freq) || interval < 1 {
				t.Errorf("trigger %s: recurrence %v; want a frequency of %v and an interval of at least 1", name, rec, frequencies)
			}
		}
	}

	top, _ := wf["actions"].(map[string]any)
	var all []action
	collect(t, "", top, &all)
	names := map[string]bool{}
	for _, a := range all {
		if names[a.name] {
			t.Errorf("action name %s is used twice; names are unique across the workflow", a.name)
		}
		names[a.name] = true
	}

	for _, a := range all {
		in := a.inputs()
		switch a.typ() {
		case "Http":
			method, _ := in["method"].(string)
			uri, _ := in["uri"].(string)
			if !slices.Contains(httpMethods, strings.ToUpper(method)) || !strings.HasPrefix(uri, "https://") {
				t.Errorf("HTTP action %s: method %q, uri %q; want a method and an https uri", a.name, method, uri)
			}
			rp, ok := in["retryPolicy"].(map[string]any)
			if !ok {
				t.Errorf("HTTP action %s has no retryPolicy", a.name)
			} else {
				checkRetryPolicy(t, a.name, rp)
			}
		case "ApiConnection":
			host, _ := in["host"].(map[string]any)
			conn, _ := host["connection"].(map[string]any)
			ref, _ := conn["name"].(string)
			if !regexp.MustCompile(`^@parameters\('\$connections'\)\['[a-z0-9]+'\]\['connectionId'\]$`).MatchString(ref) {
				t.Errorf("ApiConnection %s: connection %q; want @parameters('$connections')['<api>']['connectionId']", a.name, ref)
			}
			if in["method"] == nil || in["path"] == nil {
				t.Errorf("ApiConnection %s: method or path missing", a.name)
			}
		case "Terminate":
			if st, _ := in["runStatus"].(string); !slices.Contains([]string{"Succeeded", "Failed", "Cancelled"}, st) {
				t.Errorf("Terminate %s: runStatus %q", a.name, st)
			}
		}
		// References point at things that exist.
		text, _ := json.Marshal(a.def)
		for _, m := range paramRef.FindAllStringSubmatch(string(text), -1) {
			if _, ok := params[m[1]]; !ok {
				t.Errorf("action %s uses parameter %q, which is not declared", a.name, m[1])
			}
		}
		for _, m := range actionRef.FindAllStringSubmatch(string(text), -1) {
			if !names[m[2]] {
				t.Errorf("action %s reads %s('%s'), which is not an action", a.name, m[1], m[2])
			}
		}
	}
}

// TestLogicAppExampleKeepsSecretsOutOfRunHistory: every action whose inputs
// carry the function key or the token has secure inputs; every action whose
// outputs hold a secret (the function key, the token, Key Vault's answer to
// Set Secret) has secure outputs; the function key never sits in a plain
// parameter.
func TestLogicAppExampleKeepsSecretsOutOfRunHistory(t *testing.T) {
	t.Parallel()
	wf := loadExample(t)
	var all []action
	top, _ := wf["actions"].(map[string]any)
	collect(t, "", top, &all)
	params, _ := wf["parameters"].(map[string]any)

	secretOutputs := map[string]bool{}
	for _, a := range all {
		in := a.inputs()
		uri, _ := in["uri"].(string)
		path, _ := in["path"].(string)
		switch {
		case a.typ() == "Http" && strings.HasSuffix(uri, "/api/create-token"):
			secretOutputs[a.name] = true // tokenValue
		case a.typ() == "ApiConnection" && strings.HasPrefix(path, "/secrets/") && strings.HasSuffix(path, "/value"):
			secretOutputs[a.name] = true // Key Vault Get secret
		case a.typ() == "Http" && strings.Contains(uri, ".vault.azure.net/secrets/"):
			secretOutputs[a.name] = true // Set Secret answers with the value
		}
	}
	if len(secretOutputs) < 3 {
		t.Errorf("found %d actions with secret outputs (%v); the example reads the key, creates a token and stores it", len(secretOutputs), secretOutputs)
	}
	for _, a := range all {
		secured := a.secured()
		if secretOutputs[a.name] && !slices.Contains(secured, "outputs") {
			t.Errorf("action %s returns a secret but its outputs are not secured (runtimeConfiguration.secureData.properties)", a.name)
		}
		in := a.json()
		carriesSecret := strings.Contains(in, "tokenValue")
		headers, _ := a.inputs()["headers"].(map[string]any)
		if key, ok := headers["x-functions-key"].(string); ok {
			carriesSecret = true
			for _, m := range paramRef.FindAllStringSubmatch(key, -1) {
				p, _ := params[m[1]].(map[string]any)
				if typ, _ := p["type"].(string); !strings.EqualFold(typ, "securestring") {
					t.Errorf("action %s sends parameter %s as the function key; it must be a securestring", a.name, m[1])
				}
			}
		}
		for name := range secretOutputs {
			if strings.Contains(in, "body('"+name+"')?['value']") {
				carriesSecret = true
			}
		}
		if carriesSecret {
			if a.typ() == "Terminate" || a.typ() == "If" || a.typ() == "Compose" {
				t.Errorf("action %s (%s) carries a secret but cannot secure its inputs", a.name, a.typ())
			} else if !slices.Contains(secured, "inputs") {
				t.Errorf("action %s carries the function key or the token but its inputs are not secured", a.name)
			}
		}
	}
}

// TestLogicAppExampleMatchesOpenAPI: the example calls documented
// operations with documented request fields (and every required one), sends
// the function key the documented way, and reads only documented response
// fields.
func TestLogicAppExampleMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	spec, err := apispec.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wf := loadExample(t)
	var all []action
	top, _ := wf["actions"].(map[string]any)
	collect(t, "", top, &all)

	keyHeader := spec.V3.Components.SecuritySchemes["functionKeyHeader"].Value.Name
	ops := map[string]*openapi3.Operation{} // action name -> operation it calls
	calls := 0
	for _, a := range all {
		in := a.inputs()
		uri, _ := in["uri"].(string)
		if a.typ() != "Http" || !strings.Contains(uri, spec.V2.BasePath+"/") || strings.Contains(uri, ".vault.azure.net") {
			continue
		}
		calls++
		u, err := url.Parse(strings.ReplaceAll(uri, "@{parameters('functionAppHostName')}", spec.V2.Host))
		if err != nil {
			t.Errorf("HTTP action %s: uri %q: %v", a.name, uri, err)
			continue
		}
		path := strings.TrimPrefix(u.Path, spec.V2.BasePath)
		method, _ := in["method"].(string)
		item := spec.V3.Paths.Value(path)
		if item == nil || item.GetOperation(strings.ToUpper(method)) == nil {
			t.Errorf("HTTP action %s calls %s %s, which api/openapi.json does not document", a.name, method, u.Path)
			continue
		}
		op := item.GetOperation(strings.ToUpper(method))
		ops[a.name] = op
		headers, _ := in["headers"].(map[string]any)
		if _, ok := headers[keyHeader]; !ok {
			t.Errorf("HTTP action %s (%s) sends no %s header", a.name, op.OperationID, keyHeader)
		}
		body, _ := in["body"].(map[string]any)
		schema := op.RequestBody.Value.Content.Get("application/json").Schema.Value
		for field := range body {
			if _, ok := schema.Properties[field]; !ok {
				t.Errorf("HTTP action %s sends %q, which %s does not accept", a.name, field, op.OperationID)
			}
		}
		for _, field := range schema.Required {
			if _, ok := body[field]; !ok {
				t.Errorf("HTTP action %s omits %q, which %s requires", a.name, field, op.OperationID)
			}
		}
	}
	if calls < 2 {
		t.Errorf("the example calls the API %d times; want create-token and revoke-token", calls)
	}

	// Fields read from an API call's body are documented in a success
	// schema, or are the error envelope.
	for _, a := range all {
		text, _ := json.Marshal(a.def)
		for _, m := range fieldChain.FindAllStringSubmatch(string(text), -1) {
			op, ok := ops[m[1]]
			if !ok {
				continue
			}
			fields := fieldName.FindAllStringSubmatch(m[2], -1)
			first := fields[0][1]
			if first == "error" {
				if len(fields) > 1 {
					errSchema := spec.V3.Components.Schemas["Error"].Value
					if _, ok := errSchema.Properties[fields[1][1]]; !ok {
						t.Errorf("action %s reads error.%s from %s, which the error schema does not have", a.name, fields[1][1], m[1])
					}
				}
				continue
			}
			found := false
			for code, resp := range op.Responses.Map() {
				if !strings.HasPrefix(code, "2") {
					continue
				}
				if mt := resp.Value.Content.Get("application/json"); mt != nil {
					if _, ok := mt.Schema.Value.Properties[first]; ok {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("action %s reads %q from %s's answer, which %s does not document", a.name, first, m[1], op.OperationID)
			}
		}
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]time.Duration{"PT5S": 5 * time.Second, "PT10M": 10 * time.Minute, "P1D": 24 * time.Hour, "PT1H30M": 90 * time.Minute} {
		if got, err := duration(s); err != nil || got != want {
			t.Errorf("duration(%q) = %s, %v; want %s", s, got, err, want)
		}
	}
	for _, s := range []string{"", "P", "PT", "5S", "PT5", "PT-5S"} {
		if _, err := duration(s); err == nil {
			t.Errorf("duration(%q) succeeded", s)
		}
	}
}
