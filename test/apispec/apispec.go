// Package apispec loads the HTTP API's OpenAPI definition, api/openapi.json
// (Swagger 2.0: the version Logic Apps custom connectors, Power Automate and
// Azure API Management import), for the tests that hold the running binary
// and the Logic Apps example to it. Nothing in the shipped binary uses it.
package apispec

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
)

// RepoRoot is the module's root directory (found from this file's path, so
// tests work from any package directory).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Path is the OpenAPI document's file.
func Path() string { return filepath.Join(RepoRoot(), "api", "openapi.json") }

// Spec is the document as written (Swagger 2.0) and as OpenAPI 3, which
// is what kin-openapi validates requests and responses against.
type Spec struct {
	V2 *openapi2.T
	V3 *openapi3.T
	// Raw is the file's JSON, for checks the typed forms drop (extensions
	// on schemas are kept, but this is simpler to walk).
	Raw map[string]any
}

// Load reads Path, converts it to OpenAPI 3 and validates the result.
func Load(ctx context.Context) (*Spec, error) {
	b, err := os.ReadFile(Path())
	if err != nil {
		return nil, err
	}
	return Parse(ctx, b)
}

// Parse is Load for a document in memory.
func Parse(ctx context.Context, b []byte) (*Spec, error) {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	var v2 openapi2.T
	if err := json.Unmarshal(b, &v2); err != nil {
		return nil, fmt.Errorf("openapi.json as Swagger 2.0: %w", err)
	}
	if v2.Swagger != "2.0" {
		return nil, fmt.Errorf("openapi.json: swagger is %q; Logic Apps custom connectors need \"2.0\"", v2.Swagger)
	}
	v3, err := openapi2conv.ToV3(&v2)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: converting to OpenAPI 3: %w", err)
	}
	if err := v3.Validate(ctx); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	return &Spec{V2: &v2, V3: v3, Raw: raw}, nil
}
