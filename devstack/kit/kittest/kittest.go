// Package kittest is what the stand-ins' own tests share: one test CA per
// test binary, stand-ins and a managed identity endpoint that close with
// their test, an Azure SDK retry policy that never makes a test wait, a
// check of an SDK error's status and code, a request with a bearer token,
// and a check that a stand-in in a child process closes cleanly. Only
// tests import it.
package kittest

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// CA is one test CA for the whole test binary: generating a key per test
// would cost more than the test.
var CA = sync.OnceValue(func() *testca.CA {
	c, err := testca.New()
	if err != nil {
		panic(err)
	}
	return c
})

// FastRetry retries as the SDK's defaults do, a few times, without the
// seconds between tries.
var FastRetry = policy.RetryOptions{MaxRetries: 3, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond}

// StartMSI starts a managed identity endpoint that closes when t ends.
func StartMSI(t testing.TB, opts fakeentra.MSIOptions) *fakeentra.MSI {
	t.Helper()
	m, err := fakeentra.StartMSI(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// Start starts a REST stand-in with start (fakearm.Start,
// fakekeyvault.Start, fakedatabricks.StartWorkspace), its certificate from
// CA, and closes it when t ends.
func Start[S io.Closer, O any](t testing.TB, start func(*testca.CA, O) (S, error), opts O) S {
	t.Helper()
	s, err := start(CA(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// WantResponseError stops t unless err is an SDK response error with this
// status and error code.
func WantResponseError(t testing.TB, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("err = %v, want %d %s", err, status, code)
	}
}

// Do sends method url through CA's client, with "Authorization: Bearer
// token" unless token is empty, and returns the response with its body.
func Do(t testing.TB, method, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := CA().Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// WantClosed stops t unless p, a stand-in in a child process, closes
// cleanly: Close succeeds, again when called a second time, and Done is
// closed by the time it returns.
func WantClosed(t testing.TB, p interface {
	Close() error
	Done() <-chan struct{}
}) {
	t.Helper()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

// Require fails the test when a tool it runs is missing (err names it):
// Node.js, a stand-in's npm project (the broker, Azurite) or a checker
// under tools/. A test that skipped itself instead would pass having
// proved nothing, on a laptop as in CI; `make deps` installs every one.
func Require(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%v (run make deps, which installs the Node.js projects the tests run)", err)
	}
}
