package fakeentra

import (
	"net/http"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// issuer is what the managed identity endpoint and the authority share:
// the issuing clock, the faults a test queues for token requests, the
// count of requests and every token issued. Its methods are theirs.
type issuer struct {
	clock  kit.Clock
	faults kit.Faults[Fault]
	calls  kit.Counter
	issued kit.Log[string]
}

// Now returns the issuing clock's time (Clock plus Advance offsets).
func (i *issuer) Now() time.Time { return i.clock.Now() }

// Advance moves the issuing clock by d. Tokens issued afterwards carry the
// shifted iat/nbf/exp (a negative d issues tokens that are already expired
// by real time, when |d| exceeds the lifetime).
func (i *issuer) Advance(d time.Duration) { i.clock.Advance(d) }

// InjectFault queues f for the next token request; each consumes one
// queued fault, in order (the authority's metadata requests never do).
func (i *issuer) InjectFault(f Fault) { i.faults.Add("", f) }

// FailNext makes the next n token requests fail with status (e.g. 500, 429).
func (i *issuer) FailNext(n, status int) {
	for range n {
		i.InjectFault(Fault{Status: status})
	}
}

// Calls returns the number of requests per requested resource, faults and
// failures included: for the identity endpoint the resource query
// parameter as sent ("" when absent); for the authority the scope without
// "/.default", and "metadata" for OIDC metadata requests.
func (i *issuer) Calls() map[string]int { return i.calls.Snapshot() }

// Issued returns every token value issued so far, oldest first, so tests
// can scan logs and outputs for leaked access tokens.
func (i *issuer) Issued() []string { return i.issued.All() }

// fault serves the next queued fault, if any: it waits, drops the
// connection, or answers its status through fail, in the endpoint's own
// error shape, with its Retry-After. It reports whether the request has
// been answered.
func (i *issuer) fault(w http.ResponseWriter, r *http.Request, fail func(status int)) bool {
	f, ok := i.faults.Next("")
	if !ok {
		return false
	}
	kit.Sleep(r.Context(), nil, f.Delay)
	if f.Drop {
		kit.Drop()
	}
	if f.Status == 0 {
		return false
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	fail(f.Status)
	return true
}
