package upstream

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// RedirectError reports an upstream that answered with a redirect (any
// 3xx). None of the service's Azure endpoints — Entra, ARM, Key Vault, a
// Databricks workspace — redirects an API call, and following one would
// re-send the request, bearer and management tokens included, to wherever
// the answer points. So a 3xx is a refusal: nothing is sent to Location,
// and its body, which the redirecting host chose, is never read into an
// error or shown.
type RedirectError struct {
	// Host is the host[:port] that answered.
	Host string
	// Status is the 3xx status.
	Status int
	// Location is scheme://host[:port] of the Location header (never its
	// path or query, which could carry anything), or "" when it had none.
	Location string
}

func (e *RedirectError) Error() string {
	to := "without a Location"
	if e.Location != "" {
		to = "pointing at " + e.Location
	}
	return fmt.Sprintf("%s answered HTTP %d, a redirect %s; %s", e.Host, e.Status, to, redirectRefused)
}

// redirectRefused ends every RedirectError's text: azidentity keeps only
// the text of a cause, and this is how a redirect is still told from a
// transport failure there.
const redirectRefused = "redirects are never followed, so nothing was sent there"

// NonRetriable tells azcore's retry policy that another try would only get
// the same redirect.
func (*RedirectError) NonRetriable() {}

// NoRedirects returns t as a transport that never follows a redirect and
// turns every 3xx answer into a *RedirectError. Every Azure HTTP client of
// the service (azidentity, ARM, Key Vault, Databricks) is built on it: the
// adapters apply it to whatever transport they are given, so the guarantee
// does not depend on the caller's choice. For an *http.Client, a copy that
// stops at the first answer (CheckRedirect) is used; any other transporter
// is assumed to return answers as they come and only wrapped. nil stands
// for a default client. Wrapping twice changes nothing.
func NoRedirects(t policy.Transporter) policy.Transporter {
	switch c := t.(type) {
	case noRedirects:
		return c
	case nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		t = &http.Client{Transport: tr, CheckRedirect: stopAtFirstAnswer}
	case *http.Client:
		cc := *c
		cc.CheckRedirect = stopAtFirstAnswer
		t = &cc
	}
	return noRedirects{next: t}
}

func stopAtFirstAnswer(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

type noRedirects struct{ next policy.Transporter }

// maxRedirectDrain bounds how much of a 3xx body is read (and discarded) so
// the connection can be reused; a bigger body just costs the connection.
const maxRedirectDrain = 64 << 10

func (n noRedirects) Do(req *http.Request) (*http.Response, error) {
	resp, err := n.next.Do(req)
	if err != nil || resp.StatusCode < 300 || resp.StatusCode > 399 {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRedirectDrain))
	_ = resp.Body.Close()
	e := &RedirectError{Host: req.URL.Host, Status: resp.StatusCode}
	if loc, lerr := req.URL.Parse(resp.Header.Get("Location")); lerr == nil && resp.Header.Get("Location") != "" {
		e.Location = loc.Scheme + "://" + loc.Host
		if len(e.Location) > 300 { // a host name has at most 253 characters
			e.Location = e.Location[:300] + "…"
		}
	}
	return nil, e
}
