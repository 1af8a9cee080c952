package e2e

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
	"github.com/contoso/databricks-token-broker/devstack/stack"
	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/test/kql"
)

// These tests tie the alert queries (infra/monitoring/alerts) to the real
// binary: each provokes an alert's condition end to end and checks that the
// line it produced is one the query selects (its event is among the events
// the query filters on) and carries every field the query reads. Renaming
// an event or a field in the handler, or in a query, fails here.

// auditLine is one JSON line of the handler's output that has an event.
type auditLine map[string]any

func (l auditLine) str(k string) string { s, _ := l[k].(string); return s }

// auditLines parses the handler's output so far.
func (e *env) auditLines() []auditLine {
	var out []auditLine
	for _, raw := range strings.Split(e.output.String(), "\n") {
		if !strings.HasPrefix(raw, "{") {
			continue
		}
		var l auditLine
		if json.Unmarshal([]byte(raw), &l) == nil && l.str("event") != "" {
			out = append(out, l)
		}
	}
	return out
}

// lineOf waits for the first line of event ev that satisfies match.
func (e *env) lineOf(ev audit.Event, match func(auditLine) bool) auditLine {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, l := range e.auditLines() {
			if l.str("event") == string(ev) && (match == nil || match(l)) {
				return l
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no %s line (matching) in the handler's output; audit lines:\n%s", ev, e.dumpAudit())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) dumpAudit() string {
	var b strings.Builder
	for _, l := range e.auditLines() {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// alertQuery describes infra/monitoring/alerts/<name>.kql with kqlcheck.
func alertQuery(t *testing.T, name string) kql.Query {
	t.Helper()
	q, err := kql.DescribeFile(repoRoot(), filepath.Join("infra", "monitoring", "alerts", name+".kql"))
	if errors.Is(err, kql.ErrUnavailable) {
		kittest.Require(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Diagnostics) > 0 {
		t.Fatalf("%s does not analyse cleanly: %+v", q.File, q.Diagnostics)
	}
	return q
}

// assertSelects fails unless q selects l by its event and l carries every
// field q reads, except those listed in elsewhere (fields q reads from
// another of its events' lines, checked on that line).
func assertSelects(t *testing.T, q kql.Query, l auditLine, elsewhere ...string) {
	t.Helper()
	if !slices.Contains(q.Events, l.str("event")) {
		t.Errorf("%s filters on events %q, not on %q, the event of the line the condition produced: %v", q.File, q.Events, l.str("event"), l)
	}
	for _, f := range q.Fields {
		if slices.Contains(elsewhere, f) {
			continue
		}
		if _, ok := l[f]; !ok {
			t.Errorf("%s reads field %q, which the %s line lacks: %v", q.File, f, l.str("event"), l)
		}
	}
}

// assertAuditLines checks every outcome line (one with duration_ms) of the
// run: it has an event of internal/audit, and every field that event
// guarantees.
func (e *env) assertAuditLines() map[string]bool {
	e.t.Helper()
	specs := map[string]audit.Spec{}
	for _, s := range audit.Events {
		specs[string(s.Event)] = s
	}
	seen := map[string]bool{}
	for _, raw := range strings.Split(e.output.String(), "\n") {
		var l auditLine
		if !strings.HasPrefix(raw, "{") || json.Unmarshal([]byte(raw), &l) != nil || l["duration_ms"] == nil {
			continue
		}
		ev := l.str("event")
		spec, ok := specs[ev]
		if !ok {
			e.t.Errorf("an outcome line has event %q, which internal/audit does not declare: %s", ev, raw)
			continue
		}
		seen[ev] = true
		for _, f := range append([]string{"function", "invocation_id"}, spec.Fields...) {
			if _, ok := l[f]; !ok {
				e.t.Errorf("a %s line lacks field %q: %s", ev, f, raw)
			}
		}
		for f := range l {
			if _, ok := audit.Fields[f]; !ok {
				e.t.Errorf("a %s line carries field %q, which internal/audit.Fields does not document: %s", ev, f, raw)
			}
		}
	}
	return seen
}

// TestAlertRotationFailedAndTokenExpiring provokes a failed rotation of a
// Key Vault token inside its rotation window, then a successful one.
func TestAlertRotationFailedAndTokenExpiring(t *testing.T) {
	t.Parallel()
	failedQ, expiringQ, deniedQ, missingQ := alertQuery(t, "rotation-failed"), alertQuery(t, "token-expiring"),
		alertQuery(t, "permission-denied"), alertQuery(t, "rotation-missing")
	e := startVault(t, envOptions{})
	// An hour-long token is inside the 168 h rotation window at once.
	r := e.mustCreate(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 3600, "secretName": "etl"})
	e.results(1, 20*time.Second)
	tokenID := r.json(t)["tokenId"].(string)

	// The workspace refuses the successor: the rotation fails, the token is
	// left without one.
	e.stack.Workspaces[0].InjectFault(fakedatabricks.OpCreate, fakedatabricks.HTML403{})
	if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	e.results(1, 20*time.Second)
	failed := e.lineOf(audit.TokenRotationFailed, nil)
	assertSelects(t, failedQ, failed)
	if failed.str("token_id") != tokenID || !strings.EqualFold(failed.str("workspace"), ws(0)) || failed.str("code") != "UpstreamError" {
		t.Errorf("rotation_failed line: %v; want token %s in %s, code UpstreamError", failed, tokenID, ws(0))
	}
	expiring := e.lineOf(audit.TokenExpiring, nil)
	assertSelects(t, expiringQ, expiring, "replaces_token_id")
	expiresIn, _ := expiring["expires_in_s"].(float64)
	if expiring.str("token_id") != tokenID || expiring.str("secret_name") != "etl" || expiresIn <= 0 || expiresIn > 3600 {
		t.Errorf("expiring line: %v; want token %s of secret etl, expiring within the hour", expiring, tokenID)
	}
	// The gateway's 403 is a refusal of the identity too.
	assertSelects(t, deniedQ, failed)
	if failed["permission_denied"] != true || failed.str("upstream") != "databricks" {
		t.Errorf("rotation_failed line: permission_denied %v upstream %q", failed["permission_denied"], failed.str("upstream"))
	}
	run := e.lineOf(audit.RotationCompleted, nil)
	assertSelects(t, missingQ, run, "reason")
	if run["failed"] != float64(1) {
		t.Errorf("rotation.completed: %v; want failed 1", run)
	}

	// The next run succeeds: token.rotated names the token it replaces,
	// which is what ends the token-expiring alert.
	if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	e.results(1, 20*time.Second)
	rotated := e.lineOf(audit.TokenRotated, nil)
	assertSelects(t, expiringQ, rotated, "secret_name", "token_id")
	if rotated.str("replaces_token_id") != tokenID || rotated.str("token_id") == tokenID {
		t.Errorf("rotated line: %v; want a new token replacing %s", rotated, tokenID)
	}
	e.assertAuditLines()
}

// TestAlertPermissionDenied takes away, one after the other, the identity's
// Reader on the workspace (ARM), its CAN USE on tokens (Databricks) and its
// role on a Key Vault secret: each refusal is a line the permission-denied
// alert selects, naming the service.
func TestAlertPermissionDenied(t *testing.T) {
	t.Parallel()
	q := alertQuery(t, "permission-denied")
	e := startVault(t, envOptions{})
	oid := e.stack.MSI.Identity().ObjectID
	steps := []struct {
		upstream string
		deny     func(bool)
		body     map[string]any
	}{
		{"arm", func(d bool) { e.stack.ARM.DenyRead(oid, d) }, map[string]any{"workspaceResourceId": ws(0)}},
		{"databricks", func(d bool) { e.stack.Workspaces[0].SetCanUse(oid, !d) }, map[string]any{"workspaceResourceId": ws(0)}},
		{"keyvault", func(d bool) { e.stack.Vault.Forbid("locked", d) }, map[string]any{"workspaceResourceId": ws(0), "secretName": "locked"}},
	}
	for i, s := range steps {
		s.deny(true)
		r := e.create(s.body, "x-ms-client-request-id", "perm-"+strconv.Itoa(i))
		s.deny(false)
		if r.Status != 502 || r.errorCode(t) != "UpstreamError" {
			t.Fatalf("%s refusal: %d %s", s.upstream, r.Status, r.Body)
		}
		l := e.lineOf(audit.TokenFailed, func(l auditLine) bool { return l.str("request_id") == "perm-"+strconv.Itoa(i) })
		assertSelects(t, q, l)
		if l["permission_denied"] != true || l.str("upstream") != s.upstream || l.str("cause") == "" {
			t.Errorf("%s refusal line: %v", s.upstream, l)
		}
	}
	e.assertAuditLines()
}

// TestAlertFailuresAndRefusals provokes a caller refused by AUTHZ_POLICY
// and a failure after throttling, and checks the lines the policy-refusals
// and failures alerts select, and the throttling the workbook charts.
func TestAlertFailuresAndRefusals(t *testing.T) {
	t.Parallel()
	refusedQ, failedQ := alertQuery(t, "policy-refusals"), alertQuery(t, "failures")
	e := start(t, envOptions{serviceBus: true, easyAuth: true, settings: []string{"AUTHZ_POLICY=" + testPolicy(), "RESULTS_INCLUDE_TOKEN_VALUE=true"}})
	intruder := bearer(fakeeasyauth.Caller{AppID: intruderApp})
	if r := e.create(map[string]any{"workspaceResourceId": ws(0)}, intruder...); r.Status != 403 {
		t.Fatalf("intruder: %d %s", r.Status, r.Body)
	}
	refused := e.lineOf(audit.TokenRefused, nil)
	assertSelects(t, refusedQ, refused)
	if refused.str("code") != "NotAuthorized" || refused.str("caller") != "principal" || refused.str("caller_app_id") != intruderApp {
		t.Errorf("refused line: %v", refused)
	}

	// Throttled twice, the second time for longer than the retry budget:
	// the create fails with UpstreamUnavailable.
	dbw := e.stack.Workspaces[0]
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "0"})
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "120"})
	creator := bearer(fakeeasyauth.Caller{AppID: logicAppID, Roles: []string{"Tokens.Create"}})
	if r := e.create(map[string]any{"workspaceResourceId": ws(0)}, creator...); r.Status != 503 {
		t.Fatalf("throttled create: %d %s", r.Status, r.Body)
	}
	failed := e.lineOf(audit.TokenFailed, nil)
	assertSelects(t, failedQ, failed)
	if failed.str("code") != "UpstreamUnavailable" || failed.str("upstream") != "databricks" {
		t.Errorf("failed line: %v", failed)
	}
	calls, _ := failed["calls"].(map[string]any)
	dbx, _ := calls["databricks"].(map[string]any)
	if dbx["n"] != float64(2) || dbx["throttled"] != float64(2) {
		t.Errorf("calls on the failed line: %v; want 2 Databricks attempts, both throttled", calls)
	}
	e.results(2, 20*time.Second) // the two Failed results
	e.assertAuditLines()
}

// TestAuditEvents pins the event table with the real binary: every outcome
// line of an ordinary session has a declared event and that event's fields,
// and the session produces the events below.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: []string{"RESULTS_INCLUDE_TOKEN_VALUE=true"}})
	body := map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 600, "requestId": "pin-1"}
	r := e.mustCreate(body)
	if again := e.create(body); again.Status != 200 {
		t.Fatalf("repeat: %d %s", again.Status, again.Body)
	}
	if l := e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(0), nil); l.Status != 200 {
		t.Fatalf("list: %d %s", l.Status, l.Body)
	}
	if rv := e.do(http.MethodPost, "/api/revoke-token", map[string]any{"workspaceResourceId": ws(0), "tokenId": r.json(t)["tokenId"]}); rv.Status != 200 {
		t.Fatalf("revoke: %d %s", rv.Status, rv.Body)
	}
	if bad := e.create(map[string]any{"workspaceResourceId": "not-a-workspace"}); bad.Status != 400 {
		t.Fatalf("bad request: %d %s", bad.Status, bad.Body)
	}
	unknown := "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/nowhere"
	if nf := e.create(map[string]any{"workspaceResourceId": unknown}); nf.Status != 404 {
		t.Fatalf("unknown workspace: %d %s", nf.Status, nf.Body)
	}
	e.results(4, 20*time.Second) // the repeat's Created is a duplicate the queue drops
	e.send("workspace-events", gridEvent(ws(0), "ev-pin-1", "Microsoft.Resources/deployments/write"), "sb-pin-1")
	e.waitIdle()
	if _, err := e.host.InvokeTimer(t.Context(), "rotate-tokens", false); err != nil {
		t.Fatal(err)
	}
	e.lineOf(audit.RotationSkipped, func(l auditLine) bool { return l.str("reason") == "no-key-vault" })
	e.lineOf(audit.MessageIgnored, nil)

	seen := e.assertAuditLines()
	want := []audit.Event{audit.TokenIssued, audit.TokenReused, audit.TokensListed, audit.TokenRevoked,
		audit.TokenRefused, audit.TokenFailed, audit.MessageIgnored, audit.RotationSkipped}
	for _, ev := range want {
		if !seen[string(ev)] {
			t.Errorf("no %s line; seen %v", ev, slices.Sorted(maps.Keys(seen)))
		}
	}
}
