package e2e

// The ledger (issue 13): one live token per request id across instances,
// one Databricks call per new token and none per repeat, out-of-band
// revokes picked up by the timer, Expiring results for inline tokens, and
// a table that cannot be reached failing before any token exists. All on
// Azurite's Table Storage, shared by two instances where it matters.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

// Bursts of concurrent creates with one request id, spread over two
// instances, make one token, and every caller is answered with its record:
// 201 for the call that issued it, 200 for the others.
func TestTwoInstancesOneTokenPerRequestID(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{ledger: true})
	b := e.instance()
	hosts := []*hostsim.Host{e.host, b}
	w := e.stack.Workspaces[0]
	w.SetLatency(30 * time.Millisecond) // widen the window between claim and record
	const ids, burst = 6, 10
	type answer struct {
		status  int
		tokenID string
	}
	answers := make([][]answer, ids)
	var wg sync.WaitGroup
	for i := range ids {
		answers[i] = make([]answer, burst)
		for j := range burst {
			wg.Go(func() {
				r := e.doAt(hosts[j%2], http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "requestId": fmt.Sprintf("burst-%d", i)})
				var rec struct {
					TokenID string `json:"tokenId"`
				}
				_ = jsonInto(r.Body, &rec)
				answers[i][j] = answer{r.Status, rec.TokenID}
			})
		}
	}
	wg.Wait()
	for i, as := range answers {
		created, token := 0, ""
		for _, a := range as {
			switch {
			case a.status == http.StatusCreated:
				created++
			case a.status != http.StatusOK:
				t.Errorf("burst-%d: a caller got %d", i, a.status)
			}
			if token == "" {
				token = a.tokenID
			}
			if a.tokenID != token {
				t.Errorf("burst-%d: callers were answered with different tokens (%s, %s)", i, token, a.tokenID)
			}
		}
		if created != 1 {
			t.Errorf("burst-%d: %d answers were 201; want exactly one", i, created)
		}
	}
	if n := len(w.LiveTokens()); n != ids {
		t.Errorf("%d live tokens for %d request ids", n, ids)
	}
	if n := w.Calls()[fakedatabricks.OpCreate]; n != ids {
		t.Errorf("%d creates for %d request ids", n, ids)
	}
	if n := w.Calls()[fakedatabricks.OpList]; n != 0 {
		t.Errorf("%d token lists; a create with a durable ledger needs none", n)
	}
}

// An instance killed in the middle of a create holds its claim until it
// runs out; a repeat on the other instance then takes it over, finds what
// the dead one made by its marker, and answers with it: one live token,
// nothing orphaned, nothing doubled.
func TestKilledInstanceMidCreateIsTakenOver(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{ledger: true, settings: []string{"UPSTREAM_RETRY_BUDGET=2s"}})
	b := e.instance()
	w := e.stack.Workspaces[0]
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Delay{D: 2 * time.Second})
	done := make(chan response, 1)
	go func() { done <- e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "killed-1"}) }()
	if !waitFor(5*time.Second, func() bool { return w.Calls()[fakedatabricks.OpCreate] == 1 }) {
		t.Fatal("the create never reached the workspace")
	}
	e.host.KillHandler()
	if r := <-done; r.Status == http.StatusCreated {
		t.Fatalf("the killed instance answered 201")
	}
	// The claim lasts the budget and its clean-up (some 20 s here); the
	// repeat gets 503 with Retry-After until then, as the contract says.
	var final response
	waitFor(60*time.Second, func() bool {
		final = e.doAt(b, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws(0), "requestId": "killed-1"})
		if final.Status == http.StatusServiceUnavailable && final.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After: %s", final.Body)
		}
		return final.Status != http.StatusServiceUnavailable
	})
	if final.Status != http.StatusOK && final.Status != http.StatusCreated {
		t.Fatalf("repeat after the kill: %d %s", final.Status, final.Body)
	}
	if n := len(w.LiveTokens()); n != 1 {
		t.Errorf("%d live tokens after the takeover; want 1", n)
	}
	if live := w.LiveTokens(); len(live) == 1 && final.json(t)["tokenId"] != live[0].ID {
		t.Errorf("the repeat's answer names %v, not the live token %s", final.json(t)["tokenId"], live[0].ID)
	}
}

// A queued create whose handler is killed while the workspace is still
// making its token is resumed by the message's next delivery at once: the
// claim was taken under the same message, which Service Bus hands out again
// only when that delivery is over, so nothing waits for the dead attempt's
// claim to run out (here it would outlast the budget, and the last of the
// two deliveries would fail). The dead attempt's create completes after the
// resumed one has looked for it; its token is revoked as soon as it shows.
func TestRedeliveryAfterAKillResumesAtOnce(t *testing.T) {
	t.Parallel()
	queues := stack.DefaultQueues()
	queues[0].MaxDeliveryCount = 2
	e := startVault(t, envOptions{ledger: true, queues: queues, settings: []string{"UPSTREAM_RETRY_BUDGET=2s", "QUEUE_MAX_DELIVERY_COUNT=2"}})
	w := e.stack.Workspaces[0]
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Slow{D: 1500 * time.Millisecond})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "requestId": "resumed-1"}), "m-resumed")
	if !waitFor(10*time.Second, func() bool { return w.Calls()[fakedatabricks.OpCreate] == 1 }) {
		t.Fatal("the create never reached the workspace")
	}
	e.host.KillHandler()
	r := e.results(1, 30*time.Second)[0]
	if r.Subject != "Databricks.Token.Created" {
		t.Fatalf("result of the redelivery: %s %v; want Created", r.Subject, r.data()["error"])
	}
	held := map[string]bool{}
	for _, s := range e.stack.Vault.Secrets() {
		held[s.Tags["tokenId"]] = true
	}
	if !waitFor(10*time.Second, func() bool { return len(w.LiveTokens()) == 1 && len(w.Tokens()) == 2 }) {
		t.Fatalf("%d tokens, %d live; want the dead attempt's revoked and one live", len(w.Tokens()), len(w.LiveTokens()))
	}
	if live := w.LiveTokens()[0]; !held[live.ID] || r.data()["tokenId"] != live.ID {
		t.Errorf("the live token %s is not the one delivered (%v, held %v)", live.ID, r.data()["tokenId"], held[live.ID])
	}
}

// A burst of "workspace written" events for one workspace (ARM sends several
// per deployment), spread over two instances, yields one event token: the
// instances take turns on the workspace through the ledger, as the handlers
// of one instance do through a lock, and the later ones find the token the
// first one stored. No instance takes another's token, made but not yet
// stored, for the orphan of a crash.
func TestEventBurstOverTwoInstancesMakesOneToken(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{ledger: true})
	e.instance()
	w := e.stack.Workspaces[0]
	w.SetLatency(100 * time.Millisecond) // widen the window between list, create and store
	for i := range 6 {
		e.send("workspace-events", gridEvent(ws(0), fmt.Sprintf("ev-burst-%d", i), "Microsoft.Databricks/workspaces/write"), fmt.Sprintf("sb-burst-%d", i))
	}
	if r := e.results(1, 30*time.Second)[0]; r.Subject != "Databricks.Token.Created" {
		t.Fatalf("result: %s %v", r.Subject, r.data())
	}
	e.waitIdle()
	if n := len(w.Tokens()); n != 1 {
		t.Errorf("%d tokens were made (%d live); want one event token", n, len(w.LiveTokens()))
	}
	for _, v := range versions(e, stack.SecretName(0)) {
		if tok, _ := w.Token(v.Tags["tokenId"]); v.Enabled && tok.State != fakedatabricks.Live {
			t.Errorf("version %s is enabled and holds token %s, which is %s", v.ID, tok.ID, tok.State)
		}
	}
}

// The timer's sweep is the backstop for a dead attempt's token that shows
// up later than anyone looked: a token carrying the marker of a request id
// the ledger records with another token is revoked once it is older than
// any claim lasts. A younger one may be a claim's work in progress, and a
// request id the ledger does not know (a token issued before the ledger
// existed) is not the sweep's to judge: both stay.
func TestSweepRevokesAStrayOfARecordedRequest(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{ledger: true})
	w := e.stack.Workspaces[0]
	id := e.stack.MSI.Identity()
	w.Advance(-50 * time.Hour)
	earlier := w.CreateToken(id.ObjectID, id.ClientID, "[dtb:req:stray-1] issued before the ledger, then the id was used again", 90*24*time.Hour)
	w.Advance(48 * time.Hour) // two hours ago: the request is served, and an attempt that died leaves a token
	first := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "requestId": "stray-1"})
	stray := w.CreateToken(id.ObjectID, id.ClientID, "[dtb:req:stray-1] left by a dead attempt", 24*time.Hour)
	legacy := w.CreateToken(id.ObjectID, id.ClientID, "[dtb:req:legacy-1] issued before the ledger", 24*time.Hour)
	w.Advance(2 * time.Hour)
	young := w.CreateToken(id.ObjectID, id.ClientID, "[dtb:req:stray-1] still being made", 24*time.Hour)
	if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	state := func(tokenID string) fakedatabricks.TokenState {
		tok, _ := w.Token(tokenID)
		return tok.State
	}
	recorded, _ := first.json(t)["tokenId"].(string)
	for _, c := range []struct {
		name, id string
		want     fakedatabricks.TokenState
	}{{"the stray", stray.ID, fakedatabricks.Revoked}, {"the recorded token", recorded, fakedatabricks.Live},
		{"the pre-ledger token", legacy.ID, fakedatabricks.Live}, {"the young token", young.ID, fakedatabricks.Live},
		{"the token of the id's earlier life", earlier.ID, fakedatabricks.Live}} {
		if got := state(c.id); got != c.want {
			t.Errorf("%s after the sweep: %s, want %s", c.name, got, c.want)
		}
	}
}

// A token revoked outside the service (the Databricks UI) is picked up by
// the timer's sweep: the repeat of its request id then issues a new one.
// Until the sweep, a repeat is answered from the ledger with no Databricks
// call at all.
func TestSweepFindsTokensRevokedElsewhere(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{ledger: true})
	w := e.stack.Workspaces[0]
	first := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "requestId": "sweep-1"})
	before := w.Calls()
	for range 3 {
		if r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "sweep-1"}); r.Status != http.StatusOK {
			t.Fatalf("repeat: %d %s", r.Status, r.Body)
		}
	}
	if after := w.Calls(); after[fakedatabricks.OpCreate]+after[fakedatabricks.OpList] != before[fakedatabricks.OpCreate]+before[fakedatabricks.OpList] {
		t.Errorf("repeats cost Databricks calls: %v then %v", before, after)
	}
	id, _ := first.json(t)["tokenId"].(string)
	w.RevokeToken(id)
	if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	again := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "sweep-1"})
	if again.Status != http.StatusCreated || again.json(t)["tokenId"] == id {
		t.Errorf("repeat after the sweep: %d %s; want 201 with a new token", again.Status, again.Body)
	}
}

// A token delivered inline cannot be rotated by the service: once inside
// the rotation window, its holder hears of it in an Expiring result, once
// (a later run's copy has the same id and is dropped as a duplicate).
func TestInlineTokenInsideTheWindowIsAnnounced(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{ledger: true})
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "requestId": "expiring-1", "lifetimeSeconds": 3600})
	e.results(1, 20*time.Second)
	for range 2 {
		if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
			t.Fatal(err)
		}
	}
	rs := e.results(1, 20*time.Second)
	if rs[0].Subject != "Databricks.Token.Expiring" || rs[0].data()["tokenId"] != r.json(t)["tokenId"] || rs[0].data()["requestId"] != "expiring-1" {
		t.Errorf("result: %+v", rs[0])
	}
	if _, has := rs[0].data()["tokenValue"]; has {
		t.Errorf("the Expiring result carries a value")
	}
}

// A ledger that cannot be reached fails the create before any token
// exists, as UpstreamUnavailable with Retry-After.
func TestUnreachableLedgerFailsBeforeAnyToken(t *testing.T) {
	t.Parallel()
	closed := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
	e := start(t, envOptions{settings: []string{"UPSTREAM_RETRY_BUDGET=2s", "ALLOW_INSECURE_LOOPBACK=true", "AzureWebJobsStorage=" + closed}})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "no-table"})
	if r.Status != http.StatusServiceUnavailable || r.errorCode(t) != "UpstreamUnavailable" || r.Header.Get("Retry-After") == "" {
		t.Errorf("create with the ledger unreachable: %d %s", r.Status, r.Body)
	}
	if n := e.stack.Workspaces[0].Calls()[fakedatabricks.OpCreate]; n != 0 {
		t.Errorf("%d creates reached Databricks", n)
	}
	if n := len(e.stack.Workspaces[0].Tokens()); n != 0 {
		t.Errorf("%d tokens exist", n)
	}
}

func jsonInto(b []byte, v any) error { return json.Unmarshal(b, v) }
