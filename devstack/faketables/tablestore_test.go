package faketables_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/contoso/databricks-token-broker/devstack/faketables"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

// requireAzurite fails when Node.js or Azurite's npm package is missing.
func requireAzurite(t *testing.T) {
	t.Helper()
	kittest.Require(t, faketables.Project.Available())
}

// TestAzuriteAnswersAsAzureDoes starts the stand-in and checks, through the
// real aztables client and the connection string it hands out, the
// primitives the ledger's lock is built on.
func TestAzuriteAnswersAsAzureDoes(t *testing.T) {
	requireAzurite(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	began := time.Now()
	s, err := faketables.Start(ctx, faketables.Options{Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("azurite-table listening after %s", time.Since(began).Round(time.Millisecond))
	defer s.Close()
	if !strings.HasPrefix(s.TableEndpoint(), "http://127.0.0.1:") || !strings.Contains(s.ConnectionString(), "TableEndpoint="+s.TableEndpoint()+";") {
		t.Fatalf("endpoint %s, connection string for another endpoint", s.TableEndpoint())
	}
	svc, err := aztables.NewServiceClientFromConnectionString(s.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateTable(ctx, "probe", nil); err != nil {
		t.Fatal(err)
	}
	c := svc.NewClient("probe")
	ent, _ := json.Marshal(map[string]any{"PartitionKey": "p", "RowKey": "r", "N": "1"})
	added, err := c.AddEntity(ctx, ent, nil)
	if err != nil {
		t.Fatal(err)
	}
	var re *azcore.ResponseError
	if _, err := c.AddEntity(ctx, ent, nil); !errors.As(err, &re) || re.StatusCode != 409 || re.ErrorCode != string(aztables.EntityAlreadyExists) {
		t.Errorf("second insert: %v, want 409 EntityAlreadyExists", err)
	}
	upd, _ := json.Marshal(map[string]any{"PartitionKey": "p", "RowKey": "r", "N": "2"})
	opts := &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeReplace, IfMatch: &added.ETag}
	if _, err := c.UpdateEntity(ctx, upd, opts); err != nil {
		t.Fatalf("update with the current ETag: %v", err)
	}
	if _, err := c.UpdateEntity(ctx, upd, opts); !errors.As(err, &re) || re.StatusCode != 412 || re.ErrorCode != string(aztables.UpdateConditionNotSatisfied) {
		t.Errorf("update with a stale ETag: %v, want 412 UpdateConditionNotSatisfied", err)
	}
	stale := added.ETag
	_, err = c.SubmitTransaction(ctx, []aztables.TransactionAction{
		{ActionType: aztables.TransactionTypeUpdateReplace, Entity: upd, IfMatch: &stale},
		{ActionType: aztables.TransactionTypeInsertReplace, Entity: mustJSON(map[string]any{"PartitionKey": "p", "RowKey": "other"})},
	}, nil)
	if err == nil {
		t.Fatal("a transaction with a stale ETag was accepted")
	}
	if _, err := c.GetEntity(ctx, "p", "other", nil); !errors.As(err, &re) || re.StatusCode != 404 {
		t.Errorf("the refused transaction wrote its other entity: %v", err)
	}

	kittest.WantClosed(t, s)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
