package stack_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/faketables"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/devstack/stack"
	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// With Ledger, the stack's environment points AzureWebJobsStorage at a
// running Azurite, in the form the ledger reads.
func TestStackLedger(t *testing.T) {
	kittest.Require(t, faketables.Project.Available())
	s, err := stack.Start(t.Context(), stack.Options{Dir: t.TempDir(), Ledger: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	env := s.Env()
	var conn string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "AzureWebJobsStorage="); ok {
			conn = v
		}
	}
	if conn == "" || !slices.Contains(env, "ALLOW_INSECURE_LOOPBACK=true") {
		t.Fatalf("env lacks AzureWebJobsStorage or ALLOW_INSECURE_LOOPBACK: %q", env)
	}
	cs, err := ledger.ParseConnectionString(conn)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.NewTableFromConnectionString(cs, "tokenledger", ledger.TableOptions{AllowInsecureLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := tokens.ParseWorkspaceID(stack.WorkspaceResourceID(0))
	if a, err := l.Acquire(t.Context(), ledger.Key{Workspace: ws, RequestID: "r"}, ledger.Terms{For: time.Minute}); err != nil || a.Outcome != ledger.Leased {
		t.Fatalf("Acquire through the stack's table: %v, %v", a.Outcome, err)
	}
	if !slices.Contains(s.Secrets(), faketables.AccountKey) {
		t.Error("the account key is not among the secrets a log scan looks for")
	}
}
