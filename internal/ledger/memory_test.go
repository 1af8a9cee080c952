package ledger_test

import (
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/ledger"
)

func TestMemory(t *testing.T) {
	runSuite(t, func(t *testing.T, c *clock, retention time.Duration) ledger.Ledger {
		return ledger.NewMemory(ledger.Options{Now: c.Now, Retention: retention})
	})
}
