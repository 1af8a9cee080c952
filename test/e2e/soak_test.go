package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
)

// TestSoak drives N create commands through the queue while the handler is
// killed at random, creates are dropped after they happen, and Databricks
// throttles, with every command sent 1-3 times. It proves the delivery
// guarantees of the README: exactly one live token per request, one
// terminal result per request, no orphan token, no secret in any log line.
// SOAK_COMMANDS sets N (default 200; `make soak` runs 1000).
func TestSoak(t *testing.T) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("SOAK_COMMANDS")); err == nil && v > 0 {
		n = v
	}
	const workspaces = 4
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d commands", seed, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	// Two instances of the app on one ledger table, both taking messages,
	// both killed now and then.
	e := startVault(t, envOptions{workspaces: workspaces, ledger: true, settings: []string{"UPSTREAM_RETRY_BUDGET=5s"}})
	instances := []*hostsim.Host{e.host, e.instance()}
	for i, w := range e.stack.Workspaces {
		w.SetRandomFaults(seed+uint64(i), fakedatabricks.FaultRates{DropAfterCreate: 0.05, Status429: 0.08, Status503: 0.03, RetryAfter: "1",
			Ops: []string{fakedatabricks.OpCreate, fakedatabricks.OpList}})
	}

	// Every command goes out 1-3 times (automation resending), in random order.
	type send struct {
		body []byte
		id   string
	}
	var sends []send
	for i := range n {
		body := command(map[string]any{"action": "create", "workspaceResourceId": ws(i % workspaces), "requestId": fmt.Sprintf("soak-%04d", i),
			"comment": fmt.Sprintf("soak %d", i), "lifetimeSeconds": 3600})
		for c := range 1 + rng.IntN(3) {
			sends = append(sends, send{body, fmt.Sprintf("soak-%04d-copy-%d", i, c)})
		}
	}
	rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })

	// Kill the handler now and then while the messages flow.
	ctx, stop := context.WithCancel(t.Context())
	var kills sync.WaitGroup
	killed := 0
	kills.Go(func() {
		for ctx.Err() == nil && killed < 1+n/25 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(200+rng.IntN(600)) * time.Millisecond):
			}
			instances[killed%2].KillHandler()
			killed++
		}
	})

	sb := e.sbClient()
	sender, err := sb.NewSender("token-requests", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sends {
		if err := sender.SendMessage(t.Context(), &azservicebus.Message{Body: s.body, MessageID: ptr(s.id)}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Collect results until every request has a terminal one.
	terminal := map[string]result{}
	var results int
	rcv, err := sb.NewReceiverForQueue("token-results", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close(context.Background())
	deadline := time.Now().Add(time.Duration(60+n/2) * time.Second)
	for len(terminal) < n && time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		msgs, err := rcv.ReceiveMessages(rctx, 100, nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		for _, m := range msgs {
			r := toResult(t, m)
			results++
			id, _ := r.data()["requestId"].(string)
			if prev, dup := terminal[id]; dup && prev.MessageID != r.MessageID {
				t.Errorf("request %s has two different terminal results: %s and %s", id, prev.Subject, r.Subject)
			}
			terminal[id] = r
			_ = rcv.CompleteMessage(t.Context(), m, nil)
		}
	}
	stop()
	kills.Wait()
	for _, w := range e.stack.Workspaces {
		w.ClearFaults()
	}
	e.waitIdle()

	created, failed := 0, 0
	for _, r := range terminal {
		switch r.Subject {
		case "Databricks.Token.Created":
			created++
		case "Databricks.Token.Failed":
			failed++
			t.Logf("failed: %v", r.data()["error"])
		}
	}
	// Every live token of ours is held by a vault version and belongs to a Created request.
	held := map[string]bool{}
	for _, s := range e.stack.Vault.Secrets() {
		held[s.Tags["tokenId"]] = true
	}
	live, orphans := 0, 0
	perRequest := map[string]int{}
	for _, w := range e.stack.Workspaces {
		for _, tok := range w.LiveTokens() {
			live++
			if !held[tok.ID] {
				orphans++
			}
			if i := strings.Index(tok.Comment, "soak-"); i >= 0 {
				perRequest[tok.Comment[i:i+9]]++
			}
		}
	}
	for id, c := range perRequest {
		if c != 1 {
			t.Errorf("request %s has %d live tokens", id, c)
		}
	}
	faults := map[string]int{}
	for _, w := range e.stack.Workspaces {
		for _, r := range w.Requests() {
			if r.Fault != "" {
				faults[r.Fault]++
			}
		}
	}
	t.Logf("soak: 2 instances on one ledger table, %d commands (%d messages), %d handler kills, injected faults %v, %d results received, %d terminal (%d created, %d failed), %d live tokens, %d orphans",
		n, len(sends), killed, faults, results, len(terminal), created, failed, live, orphans)
	if faults["dropAfter"] == 0 || faults["429"] == 0 {
		t.Errorf("the soak injected no ambiguous creates or no throttling: %v", faults)
	}
	if restarts := instances[0].Restarts() + instances[1].Restarts(); len(terminal) != n || live != created || orphans != 0 || restarts == 0 {
		t.Errorf("want %d terminal results, live tokens = created, 0 orphans, and at least one restart; got %d, %d vs %d, %d, %d restarts",
			n, len(terminal), live, created, orphans, restarts)
	}
}
