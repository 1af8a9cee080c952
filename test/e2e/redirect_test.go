package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakearm"
	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakekeyvault"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// redirectTarget is where a redirect points: a host the handler trusts
// (the stack's CA) that answers every request as a workspace would, with
// an attacker-chosen token, and counts what reaches it.
type redirectTarget struct {
	srv   *testca.Server
	calls atomic.Int64
}

func startRedirectTarget(t *testing.T, c *testca.CA, tls bool) *redirectTarget {
	t.Helper()
	rt := &redirectTarget{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token_value":"attacker-chosen-token","token_info":{"token_id":"attacker","creation_time":1,"expiry_time":-1}}`)
	})
	var err error
	if tls {
		rt.srv, err = c.Serve(h)
	} else {
		rt.srv, err = testca.ServePlain(h)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.srv.Close() })
	return rt
}

func TestRedirectsAreRefused(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{workspaces: 4})
	targets := map[string]*redirectTarget{"https": startRedirectTarget(t, e.stack.CA, true), "http": startRedirectTarget(t, e.stack.CA, false)}
	create := func(i int) response {
		return e.create(map[string]any{"workspaceResourceId": ws(i), "lifetimeSeconds": 600})
	}
	refused := func(what string, r response, host string) {
		t.Helper()
		if r.Status != 502 || r.errorCode(t) != "UpstreamError" {
			t.Errorf("%s: %d %s; want 502 UpstreamError", what, r.Status, r.Body)
		}
		if !strings.Contains(string(r.Body), host) {
			t.Errorf("%s: the error does not name %s: %s", what, host, r.Body)
		}
		for _, body := range []string{fakedatabricks.RedirectBody, fakearm.RedirectBody, fakekeyvault.RedirectBody, "attacker-chosen-token"} {
			if strings.Contains(string(r.Body), body) {
				t.Errorf("%s: the answer echoes %q", what, body)
			}
		}
	}
	live := func() int {
		n := 0
		for _, w := range e.stack.Workspaces {
			n += len(w.LiveTokens())
		}
		return n
	}

	// Each workspace is resolved in its own step, so ARM is asked anew.
	next := 0
	for _, scheme := range []string{"https", "http"} {
		to := targets[scheme].srv.URL()

		// The workspace answers token/create with a redirect.
		dbw := e.stack.Workspaces[next]
		dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Redirect{Location: to + "/api/2.0/token/create"})
		refused("Databricks redirect to "+scheme, create(next), dbw.Host())
		next++

		// ARM answers the workspace lookup with a redirect.
		e.stack.ARM.InjectFault(fakearm.Fault{Status: http.StatusTemporaryRedirect, Location: to + "/subscriptions/x"})
		refused("ARM redirect to "+scheme, create(next), strings.TrimPrefix(e.stack.ARM.Endpoint(), "https://"))
		next++
	}
	for _, scheme := range []string{"https", "http"} {
		// Key Vault answers the secret write with a redirect: the token
		// was made but never delivered, so it is revoked (no orphan).
		e.stack.Vault.InjectFault(fakekeyvault.Fault{Status: http.StatusPermanentRedirect, Location: targets[scheme].srv.URL() + "/secrets/x"})
		refused("Key Vault redirect to "+scheme, create(0), strings.TrimPrefix(e.stack.Vault.URL(), "https://"))
	}

	for scheme, rt := range targets {
		if n := rt.calls.Load(); n != 0 {
			t.Errorf("the %s host a redirect pointed at received %d requests (with tokens)", scheme, n)
		}
	}
	if n := live(); n != 0 {
		t.Errorf("%d live tokens after refused redirects; want 0 (none issued, none orphaned)", n)
	}
	// Nothing counts as issued: every published outcome is a failure.
	for _, res := range e.results(6, 20*time.Second) {
		if res.Subject != "Databricks.Token.Failed" {
			t.Errorf("published %s for a refused redirect: %v", res.Subject, res.data())
		}
	}
	// The refusals leave nothing behind: the next create works.
	if r := create(0); r.Status != 201 {
		t.Errorf("create after the redirects: %d %s", r.Status, r.Body)
	}
}
