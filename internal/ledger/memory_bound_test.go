package ledger

import (
	"fmt"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// The in-memory ledger is bounded: request ids are callers' input, and a
// busy instance must not grow without limit (it forgets the oldest).
func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	m := NewMemory(Options{})
	ws, _ := tokens.ParseWorkspaceID("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws1")
	for i := range MaxMemoryRecords + 500 {
		a, err := m.Acquire(t.Context(), Key{Workspace: ws, RequestID: fmt.Sprintf("r%d", i)}, Terms{For: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Complete(t.Context(), a.Lease, Token{TokenID: fmt.Sprintf("t%d", i), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		// Secret names a caller makes up are bounded too.
		if _, err := m.Bind(t.Context(), fmt.Sprintf("secret/s%d", i), "ws"); err != nil {
			t.Fatal(err)
		}
	}
	m.mu.Lock()
	n, b := len(m.rows), len(m.binds)
	m.mu.Unlock()
	if n > MaxMemoryRecords || b > MaxMemoryRecords {
		t.Errorf("%d records and %d bindings kept; the bound is %d", n, b, MaxMemoryRecords)
	}
	if owner, _ := m.Bind(t.Context(), fmt.Sprintf("secret/s%d", MaxMemoryRecords+499), "other"); owner != "ws" {
		t.Errorf("the newest binding was dropped: owner %q", owner)
	}
	if _, ok, _ := m.Get(t.Context(), Key{Workspace: ws, RequestID: fmt.Sprintf("r%d", MaxMemoryRecords+499)}); !ok {
		t.Errorf("the newest record was evicted")
	}
}
