package ledger_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"

	"github.com/contoso/databricks-token-broker/devstack/faketables"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// One Azurite for the whole package run (it starts in about half a
// second); every test gets a table of its own in it.
var (
	azOnce sync.Once
	az     *faketables.Server
	azErr  error
	azLog  strings.Builder
	azMu   sync.Mutex
)

type lockedLog struct{}

func (lockedLog) Write(p []byte) (int, error) {
	azMu.Lock()
	defer azMu.Unlock()
	return azLog.Write(p)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if az != nil {
		if err := az.Close(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// azurite returns the shared Azurite; without Node.js or the npm package
// the tests fail (make deps installs them).
func azurite(t *testing.T) *faketables.Server {
	t.Helper()
	kittest.Require(t, faketables.Project.Available())
	azOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		az, azErr = faketables.Start(ctx, faketables.Options{Log: lockedLog{}})
	})
	if azErr != nil {
		t.Fatalf("starting Azurite: %v", azErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			azMu.Lock()
			t.Logf("azurite output:\n%s", azLog.String())
			azMu.Unlock()
		}
	})
	return az
}

var tableSeq atomic.Int64

func newTable(t *testing.T, c *clock, retention time.Duration) *ledger.Table {
	t.Helper()
	return tableNamed(t, c, retention, fmt.Sprintf("ledger%d", tableSeq.Add(1)))
}

func tableNamed(t *testing.T, c *clock, retention time.Duration, name string) *ledger.Table {
	t.Helper()
	conn, err := ledger.ParseConnectionString(azurite(t).ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.NewTableFromConnectionString(conn, name, ledger.TableOptions{
		Options: ledger.Options{Now: c.Now, Retention: retention}, AllowInsecureLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestTable(t *testing.T) {
	runSuite(t, func(t *testing.T, c *clock, retention time.Duration) ledger.Ledger {
		return newTable(t, c, retention)
	})
}

// Two Table values over one table are two instances of the app: the lock
// holds between them, not just inside one process.
func TestTableAcrossInstances(t *testing.T) {
	c := newClock()
	name := fmt.Sprintf("ledger%d", tableSeq.Add(1))
	a, b := tableNamed(t, c, 0, name), tableNamed(t, c, 0, name)
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "shared"}
	var wg sync.WaitGroup
	var outcomes [2]ledger.Acquisition
	var errs [2]error
	for i, l := range []ledger.Ledger{a, b} {
		wg.Go(func() { outcomes[i], errs[i] = l.Acquire(t.Context(), k, ledger.Terms{For: lease}) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if (outcomes[0].Outcome == ledger.Leased) == (outcomes[1].Outcome == ledger.Leased) {
		t.Fatalf("outcomes %s and %s, want one lease", outcomes[0].Outcome, outcomes[1].Outcome)
	}
	winner, other := a, ledger.Ledger(b)
	lz := outcomes[0].Lease
	if outcomes[1].Outcome == ledger.Leased {
		winner, other, lz = b, a, outcomes[1].Lease
	}
	if _, err := winner.Complete(t.Context(), lz, token("tok-1", c.Now(), time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := acquire(t, other, k); got.Outcome != ledger.Recorded || got.Row.TokenID != "tok-1" {
		t.Fatalf("the other instance sees %s %+v", got.Outcome, got.Row)
	}
	page, err := other.Query(t.Context(), ledger.Filter{})
	if err != nil || len(page.Rows) != 1 {
		t.Fatalf("the other instance's inventory: %+v, %v", page.Rows, err)
	}
}

// faultServer answers every request with status and code, and records
// what it was sent.
func faultServer(t *testing.T, status int, code string, header http.Header) (*httptest.Server, *atomic.Int64, *atomic.Value) {
	t.Helper()
	var calls atomic.Int64
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		auth.Store(r.Header.Get("Authorization"))
		for k, v := range header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		w.Header().Set("x-ms-error-code", code)
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"odata.error":{"code":%q,"message":{"lang":"en-US","value":"fault injected"}}}`, code)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &auth
}

// budget is an invocation's UPSTREAM_RETRY_BUDGET, short for tests.
func budget(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := upstream.WithBudget(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func identityTable(t *testing.T, endpoint string) *ledger.Table {
	t.Helper()
	l, err := ledger.NewTable(endpoint, "tokenledger", &fake.TokenCredential{}, ledger.TableOptions{AllowInsecureLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestTableThrottledOrFailing(t *testing.T) {
	k := ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "r"}
	tests := []struct {
		name       string
		status     int
		code       string
		header     http.Header
		retryAfter time.Duration
	}{
		{"503 with Retry-After", http.StatusServiceUnavailable, "ServerBusy", http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{"429 with Retry-After", http.StatusTooManyRequests, "ServerBusy", http.Header{"Retry-After": {"9"}}, 9 * time.Second},
		{"500 without", http.StatusInternalServerError, "InternalError", nil, upstream.DefaultRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, calls, auth := faultServer(t, tt.status, tt.code, tt.header)
			l := identityTable(t, srv.URL+"/devstoreaccount1")
			start := time.Now()
			_, err := l.Acquire(budget(t, 2*time.Second), k, ledger.Terms{For: lease})
			e := tokens.AsError(err)
			if e == nil || e.Code != tokens.CodeUpstreamUnavailable || e.RetryAfter != tt.retryAfter {
				t.Fatalf("Acquire = %v (retry after %v), want UpstreamUnavailable after %v", err, e.RetryAfter, tt.retryAfter)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s, past the budget", took)
			}
			if calls.Load() == 0 || auth.Load() != "Bearer "+"fake_token" {
				t.Errorf("calls %d, Authorization %q: the identity's bearer token did not reach the loopback endpoint", calls.Load(), auth.Load())
			}
			if !strings.Contains(e.Message, "Azure Table Storage") {
				t.Errorf("message %q does not name the ledger's store", e.Message)
			}
		})
	}
}

func TestTableForbiddenNamesTheRole(t *testing.T) {
	srv, _, _ := faultServer(t, http.StatusForbidden, "AuthorizationPermissionMismatch", nil)
	l := identityTable(t, srv.URL+"/devstoreaccount1")
	_, err := l.Acquire(budget(t, 2*time.Second), ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "r"}, ledger.Terms{For: lease})
	e := tokens.AsError(err)
	if e.Code != tokens.CodeUpstreamError || !strings.Contains(e.Message, "Storage Table Data Contributor") {
		t.Fatalf("Acquire = %v, want UpstreamError naming Storage Table Data Contributor", err)
	}
	if _, err := l.Query(budget(t, 2*time.Second), ledger.Filter{}); tokens.CodeOf(err) != tokens.CodeUpstreamError {
		t.Errorf("Query = %v, want UpstreamError", err)
	}
}

func TestTableUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	sas := "sv=2019-02-02&ss=t&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
	conn, err := ledger.ParseConnectionString("TableEndpoint=http://" + addr + "/acct;SharedAccessSignature=" + sas)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.NewTableFromConnectionString(conn, "tokenledger", ledger.TableOptions{AllowInsecureLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = l.Acquire(budget(t, 1500*time.Millisecond), ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "r"}, ledger.Terms{For: lease})
	e := tokens.AsError(err)
	if e.Code != tokens.CodeUpstreamUnavailable || e.RetryAfter <= 0 {
		t.Fatalf("Acquire = %v, want UpstreamUnavailable with Retry-After", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s, past the budget", took)
	}
	if strings.Contains(err.Error(), "sig=") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("the error shows the shared access signature: %v", err)
	}
}

// Connection strings and keys never reach an error.
func TestTableErrorsHoldNoKey(t *testing.T) {
	srv, _, _ := faultServer(t, http.StatusForbidden, "AuthenticationFailed", nil)
	key := "c2VjcmV0LWtleS1mb3ItdGhlLXRlc3Q="
	conn, err := ledger.ParseConnectionString("DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=" + key + ";TableEndpoint=" + srv.URL + "/acct")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.NewTableFromConnectionString(conn, "tokenledger", ledger.TableOptions{AllowInsecureLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Acquire(budget(t, 2*time.Second), ledger.Key{Workspace: workspace(t, "rg-a", "dbw-a"), RequestID: "r"}, ledger.Terms{For: lease})
	if tokens.CodeOf(err) != tokens.CodeUpstreamError || !strings.Contains(tokens.AsError(err).Message, "AuthenticationFailed") {
		t.Errorf("Acquire = %v, want UpstreamError about the key", err)
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", conn), conn.String(), l.String()} {
		if strings.Contains(s, key) {
			t.Errorf("the key shows in %q", s)
		}
	}
}

func TestTableRefusesPlainHTTP(t *testing.T) {
	for _, tt := range []struct {
		endpoint string
		allow    bool
	}{
		{"http://127.0.0.1:10002/devstoreaccount1", false},
		{"http://table.example.com", true},
		{"ftp://127.0.0.1", true},
		{"https://acct.table.core.windows.net?sv=x", true},
	} {
		if _, err := ledger.NewTable(tt.endpoint, "tokenledger", &fake.TokenCredential{}, ledger.TableOptions{AllowInsecureLoopback: tt.allow}); err == nil {
			t.Errorf("NewTable(%s, allow loopback %v) accepted", tt.endpoint, tt.allow)
		}
	}
	if _, err := ledger.NewTable("https://acct.table.core.windows.net", "tokenledger", &fake.TokenCredential{}, ledger.TableOptions{}); err != nil {
		t.Errorf("an https endpoint: %v", err)
	}
}
