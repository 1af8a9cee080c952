package e2e

// The README's guarantees, tried on the paths that break them: a policy
// on the queues, creates answered after the budget, clean-up that fails,
// results that cannot be published, secrets shared by two workspaces,
// rotation, out-of-band revokes and forged caller headers. Each test here
// failed on the code before its fix.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/fakekeyvault"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

// contractSecretName computes the default secret name as contract
// section 3 gives it, independently of the code under test.
func contractSecretName(resourceID string) string {
	name := resourceID[strings.LastIndex(resourceID, "/")+1:]
	sum := sha256.Sum256([]byte(strings.ToLower(resourceID)))
	return "databricks-" + strings.ReplaceAll(name, "_", "-") + "-" + hex.EncodeToString(sum[:])[:8]
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func lifetimeOf(t fakedatabricks.Token) time.Duration {
	return time.Duration(t.ExpiryTime-t.CreationTime) * time.Millisecond
}

func byRequestID(rs []result) map[string]result {
	out := map[string]result{}
	for _, r := range rs {
		id, _ := r.data()["requestId"].(string)
		out[id] = r
	}
	return out
}

func errorCode(r result) string {
	e, _ := r.data()["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// A rule for the queue principal limits queued creates and workspace
// events as a rule for an HTTP caller limits create-token: a default
// lifetime is cut to the rule's maxLifetime, a longer explicit one refused.
func TestQueuePolicyCapsLifetimes(t *testing.T) {
	t.Parallel()
	policy := fmt.Sprintf(`{"version":1,"rules":[{"principals":["queue"],"actions":["create","revoke"],"workspaces":["/subscriptions/%s"],"maxLifetime":"24h"}]}`, stack.Subscription)
	e := startVault(t, envOptions{workspaces: 2, settings: []string{"AUTHZ_POLICY=" + policy}})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "requestId": "cap-default"}), "m-cap-1")
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "requestId": "cap-long", "lifetimeSeconds": 7 * 86400}), "m-cap-2")
	e.send("workspace-events", gridEvent(ws(1), "ev-cap", "Microsoft.Databricks/workspaces/write"), "sb-cap")
	got := byRequestID(e.results(3, 30*time.Second))
	if r := got["cap-default"]; r.Subject != "Databricks.Token.Created" {
		t.Errorf("queued create without a lifetime: %+v", r)
	}
	if r := got["cap-long"]; r.Subject != "Databricks.Token.Failed" || errorCode(r) != "NotAuthorized" {
		t.Errorf("queued create over the rule's maxLifetime: %+v; want Failed NotAuthorized", r)
	}
	if r := got["evt-ev-cap"]; r.Subject != "Databricks.Token.Created" {
		t.Errorf("workspace event: %+v", r)
	}
	for i, w := range e.stack.Workspaces {
		live := w.LiveTokens()
		if len(live) != 1 {
			t.Fatalf("workspace %d: %d live tokens; want 1", i, len(live))
		}
		if l := lifetimeOf(live[0]); l != 24*time.Hour {
			t.Errorf("workspace %d: the queue-issued token lives %s; the queue rule allows 24h", i, l)
		}
	}
}

// A create that Databricks carries out but answers only after the budget
// ran out, or after the caller went away, leaves no token behind: the
// reconciliation runs on a deadline of its own. The retry then issues one.
func TestCreateAnsweredTooLateLeavesNoOrphan(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{settings: []string{"UPSTREAM_RETRY_BUDGET=2s"}})
	w := e.stack.Workspaces[0]
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Delay{D: 4 * time.Second})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "late-1"})
	if r.Status != http.StatusServiceUnavailable || r.errorCode(t) != "UpstreamUnavailable" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("create past the budget: %d %s", r.Status, r.Body)
	}
	if !waitFor(5*time.Second, func() bool { return len(w.Tokens()) == 1 && len(w.LiveTokens()) == 0 }) {
		t.Fatalf("after the late create: %d tokens, %d live; want the late one made and revoked\n%s", len(w.Tokens()), len(w.LiveTokens()), e.output)
	}
	again := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "late-1"})
	if again.Status != http.StatusCreated || again.json(t)["tokenValue"] == nil || len(w.LiveTokens()) != 1 {
		t.Fatalf("retry: %d %s; %d live tokens", again.Status, again.Body, len(w.LiveTokens()))
	}

	// The caller gives up after a second, well inside the budget: the host
	// cancels the invocation, and what the create made is revoked.
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Delay{D: 3 * time.Second})
	impatient := &http.Client{Timeout: time.Second}
	resp, err := impatient.Post(e.host.URL()+"/api/create-token", "application/json",
		strings.NewReader(`{"workspaceResourceId":"`+ws(0)+`","requestId":"gone-1"}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the impatient call got an answer: %d", resp.StatusCode)
	}
	if !waitFor(8*time.Second, func() bool { return len(w.Tokens()) == 3 && len(w.LiveTokens()) == 1 }) {
		t.Errorf("after the caller went away: %d tokens, %d live; want its token made and revoked", len(w.Tokens()), len(w.LiveTokens()))
	}
}

// When writing the value to Key Vault fails and revoking the token fails
// too, the outcome is transient: HTTP says 503 with Retry-After, a queue
// message is redelivered, and the retry revokes what was left.
func TestFailedCleanupIsRetriedNotCompleted(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{workspaces: 2})
	// The identity may read the vault but not write to it.
	refuseWrites := func(n int) {
		for range n {
			e.stack.Vault.InjectFault(fakekeyvault.Fault{Status: http.StatusForbidden, Op: "set"})
		}
	}
	refuseWrites(2)

	// HTTP
	w := e.stack.Workspaces[0]
	w.InjectFault(fakedatabricks.OpDelete, fakedatabricks.Status503{RetryAfter: "100"})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "dbl-1"})
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("Key Vault refused and the revoke failed: %d %s; want 503 with Retry-After (a retry repairs it)", r.Status, r.Body)
	}
	again := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "dbl-1"})
	if again.Status != http.StatusBadGateway || len(w.LiveTokens()) != 0 {
		t.Fatalf("retry: %d %s; %d live tokens; want 502 (the vault still refuses) and none left", again.Status, again.Body, len(w.LiveTokens()))
	}

	// Queue: the first delivery must not complete; the redelivery cleans up.
	// (The two HTTP attempts failed differently: two Failed results.)
	e.results(2, 20*time.Second)
	refuseWrites(2)
	w1 := e.stack.Workspaces[1]
	w1.InjectFault(fakedatabricks.OpDelete, fakedatabricks.Status503{RetryAfter: "100"})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(1)}), "m-dbl")
	res := e.results(1, 30*time.Second)[0]
	if res.Subject != "Databricks.Token.Failed" || errorCode(res) != "UpstreamError" {
		t.Errorf("final result: %+v", res)
	}
	if !waitFor(5*time.Second, func() bool { return len(w1.LiveTokens()) == 0 }) {
		t.Errorf("%d live tokens after the queued create failed; the redelivery must revoke the undelivered one", len(w1.LiveTokens()))
	}
	if n := w1.Calls()[fakedatabricks.OpCreate]; n != 2 {
		t.Errorf("%d creates; want 2 (the first delivery's, and the redelivery's after it revoked the first)", n)
	}
}

// Inline delivery puts the value only into the result. When the result
// cannot be published on the last delivery, no redelivery will revoke the
// token: the handler revokes it before answering.
func TestUnpublishableInlineResultRevokesTheToken(t *testing.T) {
	t.Parallel()
	queues := stack.DefaultQueues()
	queues[0].MaxDeliveryCount = 1
	queues[2].DenySend = true // the identity lacks Data Sender on token-results
	e := start(t, envOptions{serviceBus: true, queues: queues, settings: append([]string{"QUEUE_MAX_DELIVERY_COUNT=1"}, inlineResults...)})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "requestId": "lost-1"}), "m-lost")
	w := e.stack.Workspaces[0]
	if !waitFor(30*time.Second, func() bool { return e.stats("token-requests").DeadLettered == 1 }) {
		t.Fatalf("the message was not dead-lettered: %+v", e.stats("token-requests"))
	}
	if len(w.Tokens()) != 1 || len(w.LiveTokens()) != 0 {
		t.Errorf("%d tokens, %d live; want the one issued, revoked since its value could reach nobody", len(w.Tokens()), len(w.LiveTokens()))
	}
}

// RESULTS_INCLUDE_TOKEN_VALUE is for queued creates, whose result is the
// only way the value travels. A value minted over HTTP goes to its caller
// only, never to every reader of token-results.
func TestHTTPValuesNeverTravelInResults(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: inlineResults})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "http-v"})
	if r.Status != http.StatusCreated || r.json(t)["tokenValue"] == nil {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "requestId": "queue-v"}), "m-v")
	got := byRequestID(e.results(2, 20*time.Second))
	if v, has := got["http-v"].data()["tokenValue"]; has {
		t.Errorf("the Created result of an HTTP create carries the token value (%T)", v)
	}
	if got["queue-v"].data()["tokenValue"] == nil {
		t.Errorf("the Created result of a queued create lost its value: %v", got["queue-v"].data())
	}
}

// Same-named workspaces (etl_prod and etl-prod, in two resource groups)
// get a secret each, named as the contract says; a secretName that holds
// another workspace's tokens, or that the service did not write, is
// refused before any token exists.
func TestSecretsAreNeverSharedBetweenWorkspaces(t *testing.T) {
	t.Parallel()
	idA := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-a/providers/Microsoft.Databricks/workspaces/etl_prod", stack.Subscription)
	idB := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-b/providers/Microsoft.Databricks/workspaces/etl-prod", stack.Subscription)
	var wa, wb *fakedatabricks.Workspace
	e := startVault(t, envOptions{before: func(s *stack.Stack) {
		var err error
		if wa, err = s.AddWorkspace(idA); err != nil {
			t.Fatal(err)
		}
		if wb, err = s.AddWorkspace(idB); err != nil {
			t.Fatal(err)
		}
	}})
	for _, c := range []struct {
		id string
		w  *fakedatabricks.Workspace
	}{{idA, wa}, {idB, wb}} {
		r := e.create(map[string]any{"workspaceResourceId": c.id})
		if r.Status != http.StatusCreated {
			t.Fatalf("create in %s: %d %s", c.id, r.Status, r.Body)
		}
		name := contractSecretName(c.id)
		uri, _ := r.json(t)["secretUri"].(string)
		if !strings.HasPrefix(uri, e.stack.Vault.URL()+"/secrets/"+name+"/") {
			t.Errorf("secretUri %s; want secret %s", uri, name)
		}
		vs := versions(e, name)
		if len(vs) != 1 || vs[0].Value != c.w.LiveTokens()[0].Value {
			t.Errorf("secret %s holds %d versions; want exactly this workspace's token", name, len(vs))
		}
	}
	e.results(2, 20*time.Second)

	creates := wa.Calls()[fakedatabricks.OpCreate]
	if _, err := e.stack.Vault.PutSecret("hand-made", "not ours", "", nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{contractSecretName(idB), "hand-made"} {
		r := e.create(map[string]any{"workspaceResourceId": idA, "secretName": name})
		if r.Status != http.StatusBadRequest || r.errorCode(t) != "InvalidRequest" || !strings.Contains(string(r.Body), "secretName") {
			t.Errorf("secretName %s: %d %s; want 400 InvalidRequest on secretName", name, r.Status, r.Body)
		}
	}
	if n := wa.Calls()[fakedatabricks.OpCreate]; n != creates {
		t.Errorf("%d token creates for refused secret names; want none", n-creates)
	}
	if vs := versions(e, contractSecretName(idB)); len(vs) != 1 {
		t.Errorf("workspace B's secret now holds %d versions", len(vs))
	}
	e.results(2, 20*time.Second)

	// Another workspace's default name is refused before that workspace
	// has used it, too: taken first, it would refuse that workspace's own
	// creates and events.
	idC := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-c/providers/Microsoft.Databricks/workspaces/etl-dev", stack.Subscription)
	if r := e.create(map[string]any{"workspaceResourceId": idA, "secretName": contractSecretName(idC)}); r.Status != http.StatusBadRequest {
		t.Errorf("secretName of an unused workspace's default: %d %s; want 400", r.Status, r.Body)
	}
	e.results(1, 20*time.Second)
	// Both workspaces racing into one new secret: one is refused before
	// its token exists, and the secret holds one workspace's tokens.
	for round := range 4 {
		name := fmt.Sprintf("race-%d", round)
		statuses := make([]int, 2)
		var wg sync.WaitGroup
		for i, id := range []string{idA, idB} {
			wg.Go(func() { statuses[i] = e.create(map[string]any{"workspaceResourceId": id, "secretName": name}).Status })
		}
		wg.Wait()
		slices.Sort(statuses)
		owners := map[string]bool{}
		for _, v := range versions(e, name) {
			owners[v.Tags["workspaceResourceId"]] = true
		}
		if !slices.Equal(statuses, []int{http.StatusCreated, http.StatusBadRequest}) || len(owners) != 1 {
			t.Errorf("round %d: statuses %v, the secret holds tokens of %d workspaces; want 201 and 400, one workspace", round, statuses, len(owners))
		}
		e.results(2, 20*time.Second)
	}
}

// A resource id of 264 characters (a 90-character resource group and a
// 64-character workspace name) is longer than a Key Vault tag value may
// be; the create must not fail after the token exists because of it.
func TestLongWorkspaceIDFitsKeyVault(t *testing.T) {
	t.Parallel()
	id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Databricks/workspaces/%s",
		stack.Subscription, strings.Repeat("g", 90), strings.Repeat("w", 64))
	var w *fakedatabricks.Workspace
	e := startVault(t, envOptions{before: func(s *stack.Stack) {
		var err error
		if w, err = s.AddWorkspace(id); err != nil {
			t.Fatal(err)
		}
	}})
	r := e.create(map[string]any{"workspaceResourceId": id, "comment": strings.Repeat("é", 200)})
	if r.Status != http.StatusCreated {
		t.Fatalf("create with a %d-character resource id: %d %s", len(id), r.Status, r.Body)
	}
	uri, _ := r.json(t)["secretUri"].(string)
	rv := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"secretUri": uri})
	if rv.Status != http.StatusOK || rv.json(t)["status"] != "revoked" || len(w.LiveTokens()) != 0 {
		t.Errorf("revoke by secretUri: %d %s", rv.Status, rv.Body)
	}
	e.results(2, 20*time.Second)
}

// Revoking by tokenId disables the Key Vault version that holds the token:
// a consumer reading the secret must not get a dead token.
// The ledger says which secret holds the token, so a revoke reads that
// secret alone; an id neither Databricks nor the ledger knows costs the
// vault nothing (made-up ids must not make each revoke list the vault).
func TestRevokeByTokenIDDisablesItsVersion(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{ledger: true})
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0)})
	e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "secretName": "another-secret"})
	id, _ := r.json(t)["tokenId"].(string)
	vaultOps := func() map[string]int {
		ops := map[string]int{}
		for _, q := range e.stack.Vault.Requests() {
			ops[q.Op]++
		}
		return ops
	}
	before := vaultOps()
	rv := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": id})
	if rv.Status != http.StatusOK || rv.json(t)["status"] != "revoked" {
		t.Fatalf("revoke: %d %s", rv.Status, rv.Body)
	}
	vs := versions(e, contractSecretName(ws(0)))
	if len(vs) != 1 || vs[0].Enabled {
		t.Errorf("the version holding the revoked token is still enabled: %+v", vs)
	}
	if after := vaultOps(); after["list"] != before["list"] || after["versions"] != before["versions"]+1 {
		t.Errorf("vault calls %v → %v; want one listing of the token's own secret, no listing of the vault", before, after)
	}
	before = vaultOps()
	if rv := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": "made-up-1"}); rv.Status != http.StatusOK || rv.json(t)["status"] != "notFound" {
		t.Errorf("revoke of a made-up id: %d %s", rv.Status, rv.Body)
	}
	if after := vaultOps(); len(after) != len(before) || after["list"] != before["list"] || after["versions"] != before["versions"] {
		t.Errorf("a made-up id cost the vault %v → %v; want nothing", before, after)
	}
	e.results(4, 20*time.Second)
}

// A rotated event token is still an event token: the next workspace event
// finds it and issues nothing.
func TestRotatedEventTokenStaysAnEventToken(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{settings: []string{"TOKEN_DEFAULT_LIFETIME=20s", "TOKEN_ROTATE_BEFORE=15s"}})
	e.send("workspace-events", gridEvent(ws(0), "ev-rot-1", "Microsoft.Databricks/workspaces/write"), "sb-rot-1")
	if r := e.results(1, 20*time.Second)[0]; r.Subject != "Databricks.Token.Created" {
		t.Fatalf("event: %+v", r)
	}
	time.Sleep(6 * time.Second) // the 20 s token is now inside the 15 s window
	if _, err := e.host.InvokeTimer(e.t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	if r := e.results(1, 20*time.Second)[0]; r.Subject != "Databricks.Token.Rotated" {
		t.Fatalf("rotation: %+v", r)
	}
	// The successor has some 19 s left: outside the window.
	e.eventIssuesNothing("ev-rot-2", 2) // the first until it expires, its rotated successor
}

// A token revoked on one instance is not the answer to a repeat on
// another: the ledger they share says it was revoked, and the request id
// issues a new token. (The cross-instance version of a stale cache.)
func TestRepeatAfterRevokeElsewhereIssuesANewToken(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{ledger: true})
	b := e.instance()
	first := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "requestId": "oob-1"})
	id, _ := first.json(t)["tokenId"].(string)
	if rv := e.doAt(b, http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": id}); rv.Status != http.StatusOK {
		t.Fatalf("revoke on the other instance: %d %s", rv.Status, rv.Body)
	}
	again := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "oob-1"})
	if again.Status != http.StatusCreated || again.json(t)["tokenId"] == id {
		t.Errorf("repeat after the token was revoked on another instance: %d %s; want 201 with a new token", again.Status, again.Body)
	}
}

// Without App Service Authentication (and without a policy) anyone can
// send the X-MS-CLIENT-PRINCIPAL headers: they are not recorded as the
// caller. With WEBSITE_AUTH_ENABLED the platform vouches for them.
func TestForgedCallerHeadersAreNotRecorded(t *testing.T) {
	t.Parallel()
	forged := fakeeasyauth.Headers(mustClaims(t), []string{"Tokens.Create"}, "mallory")
	headers := []string{}
	for k, v := range forged {
		headers = append(headers, k, v[0])
	}
	oid := forged.Get("X-MS-CLIENT-PRINCIPAL-ID")
	for _, platform := range []bool{false, true} {
		o := envOptions{settings: inlineResults}
		if platform {
			o.settings = append(o.settings, "WEBSITE_AUTH_ENABLED=True")
		}
		e := startQueues(t, o)
		e.mustCreate(map[string]any{"workspaceResourceId": ws(0)}, headers...)
		by, _ := e.results(1, 20*time.Second)[0].data()["requestedBy"].(string)
		logged := strings.Contains(e.output.String(), oid)
		if platform != (strings.Contains(by, oid) && logged) || !platform && (by != "" || logged) {
			t.Errorf("WEBSITE_AUTH_ENABLED %v: requestedBy %q, caller id in the log %v", platform, by, logged)
		}
		if !platform && !strings.Contains(e.output.String(), `"caller":"unknown"`) {
			t.Errorf("the audit line does not mark the caller unknown")
		}
	}
}

// SIGTERM while a create is under way drains it: the caller gets its
// token, rather than a cut connection and a token nobody holds. (The
// drain used to stop after 20 s; an operation may take its whole budget
// and its clean-up.)
func TestSIGTERMDrainsAnInFlightCreate(t *testing.T) {
	t.Parallel()
	st, err := stack.Start(t.Context(), stack.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	out := &kit.Buffer{}
	cmd := exec.Command(handlerBinary)
	cmd.Env = append(append([]string{"PATH=/usr/bin:/bin", "FUNCTIONS_CUSTOMHANDLER_PORT=" + port}, st.Env()...), "UPSTREAM_RETRY_BUDGET=40s")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	base := "http://127.0.0.1:" + port
	if !waitFor(10*time.Second, func() bool {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("the handler did not get ready:\n%s", out)
	}

	// A slow list (the request id is the caller's) and a slow create: 24 s
	// in all, each call under the 20 s per-try timeout.
	w := st.Workspaces[0]
	w.InjectFault(fakedatabricks.OpList, fakedatabricks.Delay{D: 12 * time.Second})
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Delay{D: 12 * time.Second})
	type answer struct {
		status int
		body   string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Post(base+"/api/create-token", "application/json", strings.NewReader(`{"workspaceResourceId":"`+ws(0)+`","requestId":"drain-1"}`))
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answered <- answer{status: resp.StatusCode, body: string(b)}
	}()
	if !waitFor(5*time.Second, func() bool { return w.Calls()[fakedatabricks.OpList] == 1 }) {
		t.Fatal("the create never reached the workspace")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a := <-answered
	if a.err != nil || a.status != http.StatusCreated {
		t.Fatalf("the in-flight create after SIGTERM: %d %s %v", a.status, a.body, a.err)
	}
	if err := <-exited; err != nil {
		t.Errorf("the handler's exit after draining: %v\n%s", err, out)
	}
	if n := len(w.LiveTokens()); n != 1 {
		t.Errorf("%d live tokens; want the one the caller received", n)
	}
	for _, s := range st.Secrets() {
		if s != "" && strings.Contains(out.String(), s) {
			t.Errorf("a secret appears in the handler's output")
		}
	}
}

// A revoke whose caller goes away while Databricks carries out the delete
// never disables the token's version itself; the timer's next sweep finds
// the token gone and does, so the secret does not go on serving it.
func TestRevokeWhoseCallerLeftStillDisablesTheVersion(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{ledger: true})
	id, _ := e.mustCreate(map[string]any{"workspaceResourceId": ws(0)}).json(t)["tokenId"].(string)
	e.stack.Workspaces[0].InjectFault(fakedatabricks.OpDelete, fakedatabricks.Slow{D: 3 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	b, _ := json.Marshal(map[string]any{"workspaceResourceId": ws(0), "tokenId": id})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.host.URL()+"/api/revoke-token", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the revoke answered %d before the delete finished", resp.StatusCode)
	}
	if !waitFor(10*time.Second, func() bool { return len(e.stack.Workspaces[0].LiveTokens()) == 0 }) {
		t.Fatal("the slow delete never took effect")
	}
	if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions(e, contractSecretName(ws(0))) {
		if v.Enabled {
			t.Errorf("version %s still serves the revoked token", v.ID)
		}
	}
	e.waitIdle()
}

// A create the workspace answers after 21 s, inside the 30 s budget but
// past the 20 s a try of an idempotent call may take, is waited for: cut
// short, its token would be made again by the next try (two live tokens
// for one request id, the late one left to the sweep).
func TestSlowCreateInsideTheBudgetIsWaitedFor(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{ledger: true})
	w := e.stack.Workspaces[0]
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Delay{D: 21 * time.Second})
	if r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "slow-1"}); r.Status != http.StatusCreated {
		t.Errorf("create: %d %s; want 201", r.Status, r.Body)
	}
	time.Sleep(2 * time.Second) // a second create, had there been one, has landed
	if n := len(w.LiveTokens()); n != 1 {
		t.Errorf("%d live tokens for request id slow-1; want 1", n)
	}
	if n := w.Calls()[fakedatabricks.OpCreate]; n != 1 {
		t.Errorf("%d creates sent; want 1", n)
	}
}
