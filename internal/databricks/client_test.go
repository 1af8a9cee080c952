package databricks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const redirectBody = "REDIRECT-BODY-3f9a: follow me"

// redirecting is a workspace host that answers every request with status
// and a Location on the other host.
func redirecting(t *testing.T, status int, to *kittest.Elsewhere) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to.Redirect(w, r, status, redirectBody)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	id, err := tokens.ParseWorkspaceID("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws-one")
	if err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		call func(context.Context, *Client, tokens.Workspace) error
	}{
		{"create", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.CreateToken(ctx, ws, "c", time.Hour, tokens.Scopes{})
			return err
		}},
		{"list", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.ListTokens(ctx, ws)
			return err
		}},
		{"delete", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.DeleteToken(ctx, ws, "123")
			return err
		}},
		{"workspace-conf", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			_, err := c.Policy(ctx, ws)
			return err
		}},
		// A redirect followed here would hand the new token itself over.
		{"verify", func(ctx context.Context, c *Client, ws tokens.Workspace) error {
			return c.VerifyToken(ctx, ws, tokens.NewSecret("dapi-successor-7c1e"))
		}},
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, tls := range []bool{true, false} {
			scheme := map[bool]string{true: "https", false: "http"}[tls]
			t.Run(fmt.Sprintf("%d to %s", status, scheme), func(t *testing.T) {
				t.Parallel()
				// It answers as a Databricks workspace would, with an
				// attacker-chosen token, so a client that followed would
				// also report a token as issued.
				other := kittest.StartElsewhere(t, scheme, `{"token_value":"dapi-attacker-chosen","token_info":{"token_id":"attacker","creation_time":1,"expiry_time":-1},"token_infos":[]}`)
				ws := redirecting(t, status, other)
				// The test server's client follows redirects, as
				// http.DefaultClient does: the adapter must not.
				c := New(&azfake.TokenCredential{}, Options{DatabricksScope: "dbx/.default", ManagementScope: "mgmt/.default",
					ClientOptions: policy.ClientOptions{Transport: ws.Client()}})
				for _, op := range ops {
					err := op.call(t.Context(), c, tokens.Workspace{ID: id, URL: ws.URL})
					kittest.WantRedirectRefused(t, op.name, err, ws.URL, status, other, redirectBody, "fake_token", "dapi-successor")
				}
			})
		}
	}
}

// The verification call carries the new token and nothing of the service's
// identity, and its errors never hold the value, even when an answer
// quotes it.
func TestVerifyToken(t *testing.T) {
	t.Parallel()
	const value = "dapi0123456789abcdef0123456789abcdef"
	id, _ := tokens.ParseWorkspaceID("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws-one")
	var status atomic.Int64
	var seen atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Clone(context.Background()))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		fmt.Fprintf(w, `{"error_code":"PERMISSION_DENIED","message":"token %s does not have required scopes: x"}`, value)
	}))
	t.Cleanup(srv.Close)
	c := New(&azfake.TokenCredential{}, Options{DatabricksScope: "dbx/.default", ManagementScope: "mgmt/.default",
		ClientOptions: policy.ClientOptions{Transport: srv.Client()}})
	ws := tokens.Workspace{ID: id, URL: srv.URL}

	status.Store(http.StatusOK)
	if err := c.VerifyToken(t.Context(), ws, tokens.NewSecret(value)); err != nil {
		t.Fatalf("200: %v", err)
	}
	r := seen.Load().(*http.Request)
	if r.Method != http.MethodGet || r.URL.Path != "/api/2.0/preview/scim/v2/Me" || r.Header.Get("Authorization") != "Bearer "+value ||
		r.Header.Get(HeaderManagementToken) != "" || r.Header.Get(HeaderWorkspaceResourceID) != "" {
		t.Errorf("request %s %s with headers %v", r.Method, r.URL.Path, r.Header)
	}
	for _, st := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		status.Store(int64(st))
		err := c.VerifyToken(t.Context(), ws, tokens.NewSecret(value))
		var te *tokens.Error
		if !errors.As(err, &te) || te.Code != tokens.CodeUpstreamError || te.PermissionDenied || !strings.Contains(te.Message, fmt.Sprint(st)) {
			t.Errorf("%d: %v; want an UpstreamError naming the status", st, err)
		}
		if strings.Contains(err.Error(), value) || strings.Contains(te.Message, value) {
			t.Errorf("%d: the error holds the token value: %v", st, err)
		}
	}
}
