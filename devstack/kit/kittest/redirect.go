package kittest

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Elsewhere is where a hostile redirect points. It answers as the real
// service would (body, as JSON), over TLS or plain HTTP as scheme says,
// and counts the requests that reach it: a client that followed the
// redirect would have sent them, bearer token included. It closes when
// the test ends.
type Elsewhere struct {
	*httptest.Server
	calls atomic.Int64
}

// StartElsewhere starts an Elsewhere on scheme ("https" or "http").
func StartElsewhere(t testing.TB, scheme, body string) *Elsewhere {
	e := &Elsewhere{}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	if scheme == "https" {
		e.StartTLS()
	} else {
		e.Start()
	}
	t.Cleanup(e.Close)
	return e
}

// Calls is how many requests reached it.
func (e *Elsewhere) Calls() int64 { return e.calls.Load() }

// Redirect answers r with status and a Location on e, same path and query.
func (e *Elsewhere) Redirect(w http.ResponseWriter, r *http.Request, status int, body string) {
	kit.Redirect(w, status, e.URL+r.URL.RequestURI(), body)
}

// WantRedirectRefused checks what an adapter's call (named by what)
// answered when the service at serviceURL redirected it to e: an
// UpstreamError whose message names the service's host, the status and
// where it pointed, and that quotes none of secrets (the redirect's body,
// tokens, values); and nothing reached e.
func WantRedirectRefused(t testing.TB, what string, err error, serviceURL string, status int, e *Elsewhere, secrets ...string) {
	t.Helper()
	var te *tokens.Error
	if !errors.As(err, &te) || te.Code != tokens.CodeUpstreamError {
		t.Errorf("%s: %v; want an UpstreamError", what, err)
		return
	}
	host := strings.TrimPrefix(serviceURL, "https://")
	to, _ := url.Parse(e.URL)
	if !strings.Contains(te.Message, host) || !strings.Contains(te.Message, fmt.Sprint(status)) || !strings.Contains(te.Message, to.Host) {
		t.Errorf("%s: message %q does not name the host %s, the status and where it pointed", what, te.Message, host)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("%s: the error echoes %q: %v", what, s, err)
		}
	}
	if n := e.Calls(); n != 0 {
		t.Errorf("%s: the redirect target received %d requests", what, n)
	}
}
