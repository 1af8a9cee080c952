package keyvault

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const redirectBody = "REDIRECT-BODY-51be: follow me"

func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	ws, err := tokens.ParseWorkspaceID("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws-one")
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, scheme := range []string{"https", "http"} {
			// The write itself (token and secret value in it), and the
			// challenge round trip before it.
			for _, when := range []string{"write", "challenge"} {
				t.Run(fmt.Sprintf("%d to %s on %s", status, scheme, when), func(t *testing.T) {
					t.Parallel()
					other := kittest.StartElsewhere(t, scheme, `{"id":"https://elsewhere.example/secrets/s/0123456789abcdef0123456789abcdef","attributes":{"enabled":true}}`)
					kv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if when == "write" && r.Header.Get("Authorization") == "" {
							w.Header().Set("WWW-Authenticate", `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001", resource="https://vault.azure.net"`)
							w.WriteHeader(http.StatusUnauthorized)
							return
						}
						other.Redirect(w, r, status, redirectBody)
					}))
					defer kv.Close()

					v, err := New(kv.URL, &azfake.TokenCredential{}, Options{Loopback: true, ClientOptions: policy.ClientOptions{Transport: kv.Client()}})
					if err != nil {
						t.Fatal(err)
					}
					uri, err := v.Put(t.Context(), "s", tokens.NewSecret("dapi-secret-value"), tokens.StoredToken{TokenID: "1", Workspace: ws,
						Lifetime: time.Hour, ExpiresAt: time.Now().Add(time.Hour), IssuedAt: time.Now(), RequestID: "r"})
					if err == nil {
						t.Fatalf("Put = %q; want an UpstreamError", uri)
					}
					kittest.WantRedirectRefused(t, "Put", err, kv.URL, status, other, redirectBody, "fake_token", "dapi-secret-value")
				})
			}
		}
	}
}

// The scopes take the tags the rest of the record leaves: a version never
// needs more than Key Vault's 15 (one kept for revokedAt), and Fits says
// so before any token exists.
func TestScopesFitTheTagLimit(t *testing.T) {
	t.Parallel()
	longWS, err := tokens.ParseWorkspaceID("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/" + strings.Repeat("g", 90) + "/providers/Microsoft.Databricks/workspaces/" + strings.Repeat("w", 64))
	if err != nil {
		t.Fatal(err)
	}
	var many []string
	for i := range 32 {
		many = append(many, fmt.Sprintf("area-number-%02d:read", i))
	}
	v := &Vault{}
	tests := []struct {
		name    string
		st      tokens.StoredToken
		fits    bool
		scopeTg int // tags the scopes take
	}{
		{"unscoped at every field's longest", tokens.StoredToken{Workspace: longWS, Comment: strings.Repeat("😀", 200), Kind: "req", Origin: "http"}, true, 0},
		{"a few scopes at every field's longest", tokens.StoredToken{Workspace: longWS, Comment: strings.Repeat("😀", 200), Kind: "req", Origin: "http",
			Scopes: tokens.Scopes{List: []string{"sql:read:restricted-query", "unity-catalog:read"}}}, true, 1},
		{"32 long scopes, typical comment", tokens.StoredToken{Workspace: longWS, Comment: "nightly ETL", Kind: "req", Origin: "http",
			Scopes: tokens.Scopes{List: many, Autoscope: true}}, true, 3},
		{"32 long scopes at every field's longest", tokens.StoredToken{Workspace: longWS, Comment: strings.Repeat("😀", 200), Kind: "req", Origin: "http",
			Scopes: tokens.Scopes{List: many}}, false, 3},
	}
	for _, tt := range tests {
		tt.st.TokenID = strings.Repeat("f", 64)
		err := v.Fits(tt.st)
		if (err == nil) != tt.fits {
			t.Errorf("%s: Fits = %v", tt.name, err)
		}
		if err != nil && (tokens.CodeOf(err) != tokens.CodeInvalidRequest || tokens.AsError(err).Target != "scopes") {
			t.Errorf("%s: %v; want InvalidRequest on scopes", tt.name, err)
		}
		tags := versionTags(tt.st)
		n := 0
		for k := range tags {
			if strings.HasPrefix(k, TagScopes) {
				n++
			}
		}
		if n != tt.scopeTg {
			t.Errorf("%s: scopes take %d tags; want %d", tt.name, n, tt.scopeTg)
		}
		if tt.fits && len(tags)+1 > maxTags {
			t.Errorf("%s: %d tags fit, yet with revokedAt a version would exceed %d", tt.name, len(tags), maxTags)
		}
		// What Put writes reads back as it was.
		props := &azsecrets.SecretProperties{ID: ptr(azsecrets.ID("https://kv.vault.azure.net/secrets/s/v1")), Tags: tags}
		got, ok := stored(props)
		if !ok || !slices.Equal(got.Scopes.List, tt.st.Scopes.List) || got.Scopes.Autoscope != tt.st.Scopes.Autoscope {
			t.Errorf("%s: read back scopes %+v; want %+v", tt.name, got.Scopes, tt.st.Scopes)
		}
	}
}
