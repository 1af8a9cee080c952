package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakekeyvault"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

func startVault(t *testing.T, o envOptions) *env {
	t.Helper()
	o.keyVault, o.serviceBus = true, true
	return start(t, o)
}

// versions returns the vault's versions of a secret, oldest first.
func versions(e *env, name string) []fakekeyvault.Secret {
	var out []fakekeyvault.Secret
	for _, s := range e.stack.Vault.Secrets() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func TestKeyVaultDelivery(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	dbw := e.stack.Workspaces[0]
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "comment": "etl", "lifetimeSeconds": 86400, "requestId": "kv-1"})
	rec := r.json(t)
	if _, has := rec["tokenValue"]; has {
		t.Fatalf("the response carries the token value with Key Vault delivery: %s", r.Body)
	}
	uri, _ := rec["secretUri"].(string)
	if !strings.HasPrefix(uri, e.stack.Vault.URL()+"/secrets/"+stack.SecretName(0)+"/") {
		t.Fatalf("secretUri = %q", uri)
	}
	vs := versions(e, stack.SecretName(0))
	live := dbw.LiveTokens()
	if len(vs) != 1 || len(live) != 1 || vs[0].Value != live[0].Value || vs[0].ID != uri {
		t.Fatalf("vault holds %d versions, workspace %d live tokens; the version must hold the live token", len(vs), len(live))
	}
	v := vs[0]
	if v.Tags["tokenId"] != live[0].ID || !strings.EqualFold(v.Tags["workspaceResourceId"], ws(0)) || v.Tags["lifetimeSeconds"] != "86400" ||
		v.Tags["managedBy"] != "databricks-token-broker" || v.ContentType == "" || !v.Expires.Equal(live[0].Expires().Truncate(time.Second)) && v.Expires.Sub(live[0].Expires()).Abs() > time.Second {
		t.Errorf("version attributes: tags %v content type %q exp %s (token expires %s)", v.Tags, v.ContentType, v.Expires, live[0].Expires())
	}
	// The result message carries the secretUri and no value either.
	res := e.results(1, 20*time.Second)[0]
	if res.data()["secretUri"] != uri || res.data()["tokenValue"] != nil {
		t.Errorf("result data: %v", res.data())
	}

	// A retried call answers with the same secret, and a secretName is honoured.
	again := e.create(map[string]any{"workspaceResourceId": ws(0), "comment": "etl", "lifetimeSeconds": 86400, "requestId": "kv-1"})
	if again.Status != 200 || again.json(t)["secretUri"] != uri {
		t.Errorf("replay: %d %s", again.Status, again.Body)
	}
	named := e.create(map[string]any{"workspaceResourceId": ws(0), "secretName": "etl-token"})
	if named.Status != 201 || !strings.Contains(named.json(t)["secretUri"].(string), "/secrets/etl-token/") {
		t.Errorf("secretName: %d %s", named.Status, named.Body)
	}
	e.results(1, 20*time.Second)

	// Revoke by secretUri: the token goes, the version is disabled; again is notFound.
	rv := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"secretUri": uri})
	if rv.Status != 200 || rv.json(t)["status"] != "revoked" || rv.json(t)["tokenId"] != live[0].ID {
		t.Fatalf("revoke by secretUri: %d %s", rv.Status, rv.Body)
	}
	if tok, _ := dbw.Token(live[0].ID); tok.State != fakedatabricks.Revoked {
		t.Errorf("token state %s after revoke", tok.State)
	}
	if vs := versions(e, stack.SecretName(0)); vs[0].Enabled {
		t.Error("the revoked version is still enabled")
	}
	rv = e.do(http.MethodPost, "/api/revoke-token", map[string]any{"secretUri": uri})
	if rv.Status != 200 || rv.json(t)["status"] != "notFound" {
		t.Errorf("second revoke: %d %s", rv.Status, rv.Body)
	}
}

func TestKeyVaultBadInput(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	if _, err := e.stack.Vault.PutSecret("someone-elses", "not ours", "text/plain", map[string]string{"owner": "team-x"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body map[string]any
		code string
	}{
		{"another vault", map[string]any{"secretUri": "https://other.vault.azure.net/secrets/" + stack.SecretName(0) + "/abc"}, "InvalidRequest"},
		{"unmanaged secret", map[string]any{"secretUri": e.stack.Vault.URL() + "/secrets/someone-elses"}, "InvalidRequest"},
		{"not a secret URI", map[string]any{"secretUri": e.stack.Vault.URL() + "/keys/k1"}, "InvalidRequest"},
	}
	for _, tt := range tests {
		r := e.do(http.MethodPost, "/api/revoke-token", tt.body)
		if r.Status != 400 || r.errorCode(t) != tt.code {
			t.Errorf("%s: %d %s", tt.name, r.Status, r.Body)
		}
	}
	if r := e.create(map[string]any{"workspaceResourceId": ws(0), "secretName": "bad_name"}); r.Status != 400 {
		t.Errorf("bad secret name: %d %s", r.Status, r.Body)
	}
	// A vault that refuses (no RBAC role): the create fails, and the token it made is revoked.
	e.stack.Vault.Forbid(stack.SecretName(0), true)
	r := e.create(map[string]any{"workspaceResourceId": ws(0)})
	if r.Status != 502 || r.errorCode(t) != "UpstreamError" || !strings.Contains(string(r.Body), "Key Vault") {
		t.Errorf("vault 403: %d %s", r.Status, r.Body)
	}
	if n := len(e.stack.Workspaces[0].LiveTokens()); n != 0 {
		t.Errorf("%d live tokens after a failed delivery; want 0 (no orphan)", n)
	}
}

// A Key Vault write that happened but whose answer never came back (every
// attempt's connection cut after the version was written) is a delivery:
// the create answers 201 with the version that holds the token, and no
// enabled version holds a revoked token. Taking the lost answer for a
// failure would revoke the token while the secret's latest version holds
// it, and every consumer would read a dead token.
func TestLostKeyVaultAnswerStillDelivers(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{settings: []string{"UPSTREAM_RETRY_BUDGET=3s"}})
	e.stack.Vault.LoseNextSetAnswers(10)
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "requestId": "lost-answer"})
	w := e.stack.Workspaces[0]
	for _, v := range versions(e, stack.SecretName(0)) {
		if tok, _ := w.Token(v.Tags["tokenId"]); v.Enabled && tok.State != fakedatabricks.Live {
			t.Errorf("version %s is enabled and holds token %s, which is %s", v.ID, tok.ID, tok.State)
		}
	}
	if live := w.LiveTokens(); len(live) != 1 || r.json(t)["tokenId"] != live[0].ID {
		t.Errorf("%d live tokens; want the one the answer names (%v)", len(live), r.json(t)["tokenId"])
	}

	// The same, but the vault cannot be asked at once whether the write
	// happened (its listing is refused once): the token is revoked, and the
	// versions that turn out to hold it are disabled a moment later.
	e.stack.Vault.LoseNextSetAnswers(10)
	e.stack.Vault.InjectFault(fakekeyvault.Fault{Op: "versions", Status: http.StatusForbidden})
	if r := e.create(map[string]any{"workspaceResourceId": ws(0), "requestId": "lost-answer-2"}); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("create whose delivery cannot be confirmed: %d %s; want 503", r.Status, r.Body)
	}
	held := 0
	for _, v := range versions(e, stack.SecretName(0)) {
		tok, _ := w.Token(v.Tags["tokenId"])
		if v.Tags["requestId"] == "lost-answer-2" {
			held++
		}
		if v.Enabled && tok.State != fakedatabricks.Live {
			t.Errorf("version %s is enabled and holds token %s, which is %s", v.ID, tok.ID, tok.State)
		}
	}
	if held == 0 || len(w.LiveTokens()) != 1 {
		t.Errorf("%d versions of the lost write, %d live tokens; want the write landed and only the first token live", held, len(w.LiveTokens()))
	}
}

func TestWorkspaceLifetimePolicy(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{before: func(s *stack.Stack) { s.Workspaces[0].SetMaxTokenLifetimeDays(7) }})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 8 * 86400})
	if r.Status != 400 || !strings.Contains(string(r.Body), "maxTokenLifetimeDays 7") {
		t.Errorf("over the workspace maximum: %d %s", r.Status, r.Body)
	}
	if n := e.stack.Workspaces[0].Calls()[fakedatabricks.OpCreate]; n != 0 {
		t.Errorf("%d creates were sent for a lifetime the workspace refuses", n)
	}
	if r := e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 7 * 86400}); r.Status != 201 {
		t.Errorf("at the workspace maximum: %d %s", r.Status, r.Body)
	}
	for _, tok := range e.stack.Workspaces[0].Tokens() {
		if tok.ExpiryTime < 0 {
			t.Error("a token without expiry was created")
		}
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{workspaces: 2})
	// Tokens of 4 s are inside the 168 h rotation window from the start.
	for i := range 2 {
		e.mustCreate(map[string]any{"workspaceResourceId": ws(i), "comment": "short-lived", "lifetimeSeconds": 4})
	}
	e.results(2, 20*time.Second)
	first := [2]fakekeyvault.Secret{versions(e, stack.SecretName(0))[0], versions(e, stack.SecretName(1))[0]}

	// The second workspace fails; the first still rotates.
	e.stack.Workspaces[1].InjectFault(fakedatabricks.OpCreate, fakedatabricks.HTML403{})
	if _, err := e.host.InvokeTimer(e.t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	rs := e.results(2, 20*time.Second)
	byType := map[string]result{}
	for _, r := range rs {
		byType[r.Subject] = r
	}
	rot, failed := byType["Databricks.Token.Rotated"], byType["Databricks.Token.Failed"]
	if rot.Event == nil || failed.Event == nil || !strings.EqualFold(failed.Event["source"].(string), ws(1)) {
		t.Fatalf("results: %+v", rs)
	}
	v1 := versions(e, stack.SecretName(0))
	if len(v1) != 2 || rot.data()["secretUri"] != v1[1].ID || rot.data()["comment"] != "short-lived" || v1[1].Tags["lifetimeSeconds"] != "4" {
		t.Fatalf("rotation wrote %d versions; result %v", len(v1), rot.data())
	}
	if tok, _ := e.stack.Workspaces[0].Token(first[0].Tags["tokenId"]); tok.State != fakedatabricks.Live {
		t.Errorf("the superseded token was revoked at once (state %s); it must keep working until it expires", tok.State)
	}

	// After the old versions expire, a later run retires them (and rotates again).
	time.Sleep(4500 * time.Millisecond)
	if _, err := e.host.InvokeTimer(e.t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	e.waitIdle()
	time.Sleep(500 * time.Millisecond)
	if v := versions(e, stack.SecretName(0)); v[0].Enabled {
		t.Errorf("the superseded, expired version is still enabled")
	}
}

// With the ledger, rotation reads what is due from it: after the day's one
// scan of the whole vault, a run lists no secrets, and reads the versions of
// the due secret alone; a secret whose token is far from expiry is not
// touched at all.
func TestRotationReadsTheLedgerNotTheVault(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{ledger: true})
	for name, life := range map[string]int{"due-secret": 3600, "fresh-secret": 60 * 24 * 3600} {
		e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "secretName": name, "lifetimeSeconds": life})
	}
	e.results(2, 20*time.Second)
	reads := func() (list int, versions map[string]int) {
		versions = map[string]int{}
		for _, r := range e.stack.Vault.Requests() {
			switch r.Op {
			case "list":
				list++
			case "versions":
				versions[strings.Split(r.Path, "/")[2]]++
			}
		}
		return list, versions
	}
	for run := range 2 {
		list0, versions0 := reads()
		if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
			t.Fatal(err)
		}
		if r := e.results(1, 20*time.Second)[0]; r.Subject != "Databricks.Token.Rotated" {
			t.Fatalf("run %d: %s %v; want the due secret rotated", run, r.Subject, r.data())
		}
		list1, versions1 := reads()
		if run == 0 && list1 == list0 {
			t.Errorf("the day's first run did not scan the vault")
		}
		if run == 1 && (list1 != list0 || versions1["fresh-secret"] != versions0["fresh-secret"] || versions1["due-secret"] == versions0["due-secret"]) {
			t.Errorf("the ledger-driven run listed secrets %d times and the versions of %v; want none and only due-secret's", list1-list0, versions1)
		}
	}
	if n := len(versions(e, "due-secret")); n != 3 {
		t.Errorf("due-secret has %d versions; want 3 (two rotations)", n)
	}
}

// TestDoubleTimerFireMakesOneReplacement: timer runs that overlap make one
// successor for a due version. In one instance the second run finds the
// first under way. The Functions timer is a singleton across instances,
// but a late lease or a manual run can fire it on two at once; then the
// shared ledger's claim on the rotation's request id (derived from the
// version) is what keeps it to one (with a memory ledger each, it fails:
// 3 versions).
func TestDoubleTimerFireMakesOneReplacement(t *testing.T) {
	t.Parallel()
	for _, instances := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d instances", instances), func(t *testing.T) {
			t.Parallel()
			e := startVault(t, envOptions{ledger: instances > 1})
			hosts := []*hostsim.Host{e.host}
			if instances > 1 {
				hosts = append(hosts, e.instance())
			}
			e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 3600})
			e.results(1, 20*time.Second)
			e.stack.Workspaces[0].SetLatency(100 * time.Millisecond) // widen the race
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					if _, err := hosts[i%len(hosts)].InvokeTimer(context.Background(), "rotate-tokens", false); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if v := versions(e, stack.SecretName(0)); len(v) != 2 {
				t.Errorf("%d versions after four overlapping timer runs; want 2 (one replacement)", len(v))
			}
			if n := len(e.stack.Workspaces[0].LiveTokens()); n != 2 {
				t.Errorf("%d live tokens; want 2 (the old one until it expires, one replacement)", n)
			}
			if rs := e.results(1, 20*time.Second); rs[0].Subject != "Databricks.Token.Rotated" {
				t.Errorf("result %s; want one Rotated", rs[0].Subject)
			}
		})
	}
}

func TestWorkspaceEventWithKeyVault(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	e.send("workspace-events", gridEvent(ws(0), "ev-kv-1", "Microsoft.Databricks/workspaces/write"), "sb-kv-1")
	r := e.results(1, 20*time.Second)[0]
	vs := versions(e, stack.SecretName(0))
	if r.Subject != "Databricks.Token.Created" || len(vs) != 1 || r.data()["secretUri"] != vs[0].ID || r.data()["tokenValue"] != nil {
		t.Fatalf("result %v; %d versions", r.data(), len(vs))
	}
	e.eventIssuesNothing("ev-kv-2", 1)
}

// One secret the identity may not read (Key Vault RBAC scoped to a secret)
// costs that secret its rotation, with a Failed result naming it, and no
// other secret anything: on the day's full vault scan and on the runs that
// read what is due from the ledger. Once it can be read, it is rotated.
// (Tokens of an hour are inside the week's window from the start, and so
// is each successor: every run rotates the open secret again.)
func TestOneUnreadableSecretDoesNotStopRotation(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{ledger: true})
	for _, name := range []string{"locked-secret", "open-secret"} {
		e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "secretName": name, "lifetimeSeconds": 3600})
	}
	e.results(2, 20*time.Second)
	e.stack.Vault.Forbid("locked-secret", true)
	// run fires the timer and returns the types of the results it
	// published and of the outcomes its reply lists. The same failure
	// published again within the duplicate-detection window is the same
	// result (one id), so the Logs show what each run found.
	run := func(results int) (published, found map[string]int) {
		t.Helper()
		inv, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false)
		if err != nil {
			t.Fatal(err)
		}
		published, found = map[string]int{}, map[string]int{}
		for _, r := range e.results(results, 20*time.Second) {
			published[r.Subject]++
			if r.Subject == "Databricks.Token.Failed" {
				if msg, _ := r.data()["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "locked-secret") {
					t.Errorf("Failed result %v does not name the secret", r.data())
				}
			}
		}
		for _, l := range inv.Logs {
			found[strings.Fields(l)[0]]++
		}
		return published, found
	}
	if pub, found := run(2); pub["Databricks.Token.Rotated"] != 1 || pub["Databricks.Token.Failed"] != 1 || found["Databricks.Token.Failed"] != 1 {
		t.Errorf("full scan: published %v, found %v; want the open secret rotated and one Failed for the locked one", pub, found)
	}
	if pub, found := run(1); pub["Databricks.Token.Rotated"] != 1 || found["Databricks.Token.Failed"] != 1 {
		t.Errorf("ledger run: published %v, found %v; want the open secret rotated and the locked one failed again", pub, found)
	}
	e.stack.Vault.Forbid("locked-secret", false)
	if pub, _ := run(2); pub["Databricks.Token.Rotated"] != 2 {
		t.Errorf("after access came back: published %v; want both secrets rotated", pub)
	}
	if n, m := len(versions(e, "open-secret")), len(versions(e, "locked-secret")); n != 4 || m != 2 {
		t.Errorf("open-secret has %d versions, locked-secret %d; want 4 (three runs) and 2 (the last run)", n, m)
	}
}
