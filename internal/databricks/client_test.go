package databricks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const redirectBody = "REDIRECT-BODY-3f9a: follow me"

// elsewhere is the host a redirect points at. It counts what reaches it and
// answers as a Databricks workspace would, with an attacker-chosen token,
// so a client that followed would also report a token as issued.
type elsewhere struct {
	srv   *httptest.Server
	calls atomic.Int64
}

func newElsewhere(t *testing.T, tls bool) *elsewhere {
	t.Helper()
	e := &elsewhere{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token_value":"dapi-attacker-chosen","token_info":{"token_id":"attacker","creation_time":1,"expiry_time":-1},"token_infos":[]}`)
	})
	if tls {
		e.srv = httptest.NewTLSServer(h)
	} else {
		e.srv = httptest.NewServer(h)
	}
	t.Cleanup(e.srv.Close)
	return e
}

// redirecting is a workspace host that answers every request with status
// and a Location on the other host.
func redirecting(t *testing.T, status int, to *elsewhere) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", to.srv.URL+r.URL.RequestURI())
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprint(w, redirectBody)
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
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, tls := range []bool{true, false} {
			scheme := map[bool]string{true: "https", false: "http"}[tls]
			t.Run(fmt.Sprintf("%d to %s", status, scheme), func(t *testing.T) {
				t.Parallel()
				other := newElsewhere(t, tls)
				ws := redirecting(t, status, other)
				// The test server's client follows redirects, as
				// http.DefaultClient does: the adapter must not.
				c := New(&azfake.TokenCredential{}, Options{DatabricksScope: "dbx/.default", ManagementScope: "mgmt/.default",
					ClientOptions: policy.ClientOptions{Transport: ws.Client()}})
				wsHost := strings.TrimPrefix(ws.URL, "https://")
				otherHost, _ := url.Parse(other.srv.URL)
				for _, op := range ops {
					err := op.call(t.Context(), c, tokens.Workspace{ID: id, URL: ws.URL})
					var te *tokens.Error
					if !errors.As(err, &te) || te.Code != tokens.CodeUpstreamError {
						t.Errorf("%s: %v; want an UpstreamError", op.name, err)
						continue
					}
					if !strings.Contains(te.Message, wsHost) || !strings.Contains(te.Message, fmt.Sprint(status)) || !strings.Contains(te.Message, otherHost.Host) {
						t.Errorf("%s: message %q does not name the host %s, the status and where it pointed", op.name, te.Message, wsHost)
					}
					if s := err.Error(); strings.Contains(s, redirectBody) || strings.Contains(s, "fake_token") {
						t.Errorf("%s: the error echoes the redirect body or a token: %s", op.name, s)
					}
				}
				if n := other.calls.Load(); n != 0 {
					t.Errorf("the redirect target received %d requests (with the management token)", n)
				}
			})
		}
	}
}
