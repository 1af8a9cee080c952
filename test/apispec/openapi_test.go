package apispec_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/contoso/databricks-token-broker/test/apispec"
)

// TestOpenAPIIsSwagger20 validates api/openapi.json against the official
// Swagger 2.0 JSON Schema (testdata/swagger-2.0.schema.json, from the
// OpenAPI Initiative's schemas/v2.0/schema.json), which is stricter than
// kin-openapi's reading of it: Logic Apps custom connectors, Power
// Automate and API Management import Swagger 2.0 only.
func TestOpenAPIIsSwagger20(t *testing.T) {
	t.Parallel()
	const id = "http://swagger.io/v2/schema.json"
	schemaFile, err := os.ReadFile(filepath.Join("testdata", "swagger-2.0.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	schemaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaFile))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.UseRegexpEngine(ecmaRegexp)
	if err := c.AddResource(id, schemaDoc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile(id)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(apispec.Path())
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("api/openapi.json: %v", err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Errorf("api/openapi.json is not valid Swagger 2.0: %v", err)
	}
	if _, err := apispec.Load(t.Context()); err != nil {
		t.Error(err)
	}
}

// ecmaRegexp compiles the ECMA 262 patterns Swagger 2.0 uses: as Go's
// regexp, after rewriting \uXXXX escapes to \x{XXXX} (kin-openapi does the
// same when it validates).
func ecmaRegexp(s string) (jsonschema.Regexp, error) {
	return regexp.Compile(unicodeEscape.ReplaceAllString(s, `\x{$1}`))
}

var unicodeEscape = regexp.MustCompile(`\\u([0-9A-Fa-f]{4})`)

// TestOpenAPIConnectorConventions checks what a Logic Apps custom
// connector shows its users: every operation has a summary, a description
// and a visibility; every parameter and every property a title
// (x-ms-summary) and a description; visibilities are the documented values.
func TestOpenAPIConnectorConventions(t *testing.T) {
	t.Parallel()
	spec, err := apispec.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	visibilities := []string{"important", "advanced", "internal"}
	checkVisibility := func(where string, ext map[string]any) {
		if v, ok := ext["x-ms-visibility"]; ok && !slices.Contains(visibilities, v.(string)) {
			t.Errorf("%s: x-ms-visibility %q is not one of %v", where, v, visibilities)
		}
	}
	for path, item := range spec.V2.Paths {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.Summary == "" || op.Description == "" || op.OperationID == "" {
				t.Errorf("%s: summary, description and operationId are all needed", where)
			}
			if op.Extensions["x-ms-visibility"] == nil {
				t.Errorf("%s: no x-ms-visibility", where)
			}
			checkVisibility(where, op.Extensions)
			for _, p := range op.Parameters {
				pw := where + " parameter " + p.Name
				if p.Extensions["x-ms-summary"] == nil || p.Description == "" {
					t.Errorf("%s: needs x-ms-summary and a description", pw)
				}
				checkVisibility(pw, p.Extensions)
				if p.Extensions["x-ms-visibility"] == "internal" && p.Required && p.Default == nil {
					t.Errorf("%s: an internal, required parameter needs a default", pw)
				}
			}
			for code, r := range op.Responses.Map() {
				if strings.TrimSpace(r.Description) == "" {
					t.Errorf("%s %s: no description", where, code)
				}
			}
		}
	}
	for name, def := range spec.V2.Definitions {
		if def.Value.Description == "" {
			t.Errorf("definition %s: no description", name)
		}
		for prop, s := range def.Value.Properties {
			pw := name + "." + prop
			if s.Ref != "" {
				continue
			}
			if s.Value.Extensions["x-ms-summary"] == nil || s.Value.Description == "" {
				t.Errorf("%s: needs x-ms-summary and a description", pw)
			}
			checkVisibility(pw, s.Value.Extensions)
		}
	}
}
