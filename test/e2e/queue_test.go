package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeservicebus"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

// startQueues starts the system with the Service Bus broker: the host
// simulator receives from token-requests and workspace-events with the SDK,
// and the handler publishes to token-results with the SDK.
func startQueues(t *testing.T, o envOptions) *env {
	t.Helper()
	o.serviceBus = true
	return start(t, o)
}

func (e *env) sbClient() *azservicebus.Client {
	e.t.Helper()
	c, err := azservicebus.NewClientFromConnectionString(e.stack.Broker.ConnectionString(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func (e *env) send(queue string, body []byte, messageID string) {
	e.t.Helper()
	s, err := e.sbClient().NewSender(queue, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	msg := &azservicebus.Message{Body: body, ContentType: ptr("application/json")}
	if messageID != "" {
		msg.MessageID = &messageID
	}
	if err := s.SendMessage(e.t.Context(), msg, nil); err != nil {
		e.t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// result is a received CloudEvent with its Service Bus properties.
type result struct {
	MessageID, CorrelationID, Subject, ContentType string
	Event                                          map[string]any
}

func (r result) data() map[string]any { d, _ := r.Event["data"].(map[string]any); return d }

// results receives exactly n messages from token-results (waiting up to
// timeout), then checks that no more arrive for a moment.
func (e *env) results(n int, timeout time.Duration) []result {
	e.t.Helper()
	// PeekLock, and the receiver closed before returning: an idle
	// receiver left open would hold credit and take the next result.
	rcv, err := e.sbClient().NewReceiverForQueue("token-results", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rcv.Close(context.Background())
	var out []result
	deadline := time.Now().Add(timeout)
	for len(out) < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(e.t.Context(), deadline)
		msgs, err := rcv.ReceiveMessages(ctx, n-len(out), nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			e.t.Fatal(err)
		}
		for _, m := range msgs {
			e.see(m.Body)
			out = append(out, toResult(e.t, m))
			if err := rcv.CompleteMessage(e.t.Context(), m, nil); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	if len(out) != n {
		e.t.Fatalf("received %d results, want %d: %+v", len(out), n, out)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 300*time.Millisecond)
	defer cancel()
	if extra, _ := rcv.ReceiveMessages(ctx, 10, nil); len(extra) > 0 {
		e.t.Errorf("%d more results than expected: %s", len(extra), extra[0].Body)
		for _, m := range extra {
			_ = rcv.CompleteMessage(context.Background(), m, nil)
		}
	}
	return out
}

func toResult(t *testing.T, m *azservicebus.ReceivedMessage) result {
	t.Helper()
	r := result{MessageID: m.MessageID}
	if m.CorrelationID != nil {
		r.CorrelationID = *m.CorrelationID
	}
	if m.Subject != nil {
		r.Subject = *m.Subject
	}
	if m.ContentType != nil {
		r.ContentType = *m.ContentType
	}
	if err := json.Unmarshal(m.Body, &r.Event); err != nil {
		t.Fatalf("result is not JSON: %v", err)
	}
	return r
}

func command(fields map[string]any) []byte {
	b, _ := json.Marshal(fields)
	return b
}

func (e *env) waitIdle() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	if err := e.host.WaitIdle(ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) stats(queue string) fakeservicebus.QueueStats {
	e.t.Helper()
	s, err := e.stack.Broker.Stats(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return s[queue]
}

var inlineResults = []string{"RESULTS_INCLUDE_TOKEN_VALUE=true"}

func TestQueuedCreateAndRevoke(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: inlineResults})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "comment": "from automation", "lifetimeSeconds": 3600}), "msg-create-1")
	r := e.results(1, 20*time.Second)[0]
	if r.Subject != "Databricks.Token.Created" || r.CorrelationID != "msg-create-1" || r.ContentType != "application/cloudevents+json; charset=utf-8" {
		t.Errorf("message properties: %+v", r)
	}
	ev := r.Event
	if ev["specversion"] != "1.0" || ev["type"] != "Databricks.Token.Created" || ev["id"] != r.MessageID || !strings.EqualFold(ev["source"].(string), ws(0)) {
		t.Errorf("CloudEvent envelope: %v", ev)
	}
	d := r.data()
	live := e.stack.Workspaces[0].LiveTokens()
	if len(live) != 1 || d["tokenId"] != live[0].ID || d["tokenValue"] != live[0].Value || ev["subject"] != live[0].ID {
		t.Fatalf("result data %v does not match the one live token", d)
	}
	if d["requestId"] != "msg-create-1" || d["comment"] != "from automation" {
		t.Errorf("data = %v", d)
	}

	e.send("token-requests", command(map[string]any{"action": "revoke", "workspaceResourceId": ws(0), "tokenId": live[0].ID}), "msg-revoke-1")
	r = e.results(1, 20*time.Second)[0]
	if r.Subject != "Databricks.Token.Revoked" || r.data()["status"] != "revoked" || r.CorrelationID != "msg-revoke-1" {
		t.Errorf("revoke result: %+v", r)
	}
	if len(e.stack.Workspaces[0].LiveTokens()) != 0 {
		t.Error("token still live")
	}
	e.waitIdle()
	if s := e.stats("token-requests"); s.DeadLettered != 0 || s.Active != 0 {
		t.Errorf("token-requests after success: %+v", s)
	}
}

func TestBadMessagesCompleteWithAFailedResult(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: inlineResults})
	bad := map[string][]byte{
		"not-json":       []byte("hello there"),
		"array":          []byte(`[1,2,3]`),
		"no-action":      command(map[string]any{"workspaceResourceId": ws(0)}),
		"unknown-action": command(map[string]any{"action": "mint", "workspaceResourceId": ws(0)}),
		"bad-fields":     command(map[string]any{"action": "create", "workspaceResourceId": "nope", "lifetimeSeconds": 0, "extra": true}),
		"bad-revoke":     command(map[string]any{"action": "revoke", "tokenId": "abc"}),
		"oversized":      command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "comment": strings.Repeat("x", 70<<10)}),
	}
	for id, body := range bad {
		e.send("token-requests", body, id)
	}
	rs := e.results(len(bad), 30*time.Second)
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.CorrelationID] = true
		errObj, _ := r.data()["error"].(map[string]any)
		if r.Subject != "Databricks.Token.Failed" || errObj["code"] == nil {
			t.Errorf("%s: %+v", r.CorrelationID, r)
		}
		if r.CorrelationID == "oversized" && errObj["code"] != "RequestTooLarge" {
			t.Errorf("oversized: %v", errObj)
		}
	}
	for id := range bad {
		if !seen[id] {
			t.Errorf("no Failed result for %s", id)
		}
	}
	e.waitIdle()
	for _, inv := range e.host.Invocations() {
		if inv.DeliveryCount > 1 {
			t.Errorf("message %s was redelivered (delivery %d): bad input must not loop", inv.MessageID, inv.DeliveryCount)
		}
	}
	if s := e.stats("token-requests"); s.DeadLettered != 0 {
		t.Errorf("dead-lettered: %+v", s)
	}
	if n := len(e.stack.Workspaces[0].Requests()); n != 0 {
		t.Errorf("%d Databricks calls for invalid commands", n)
	}
}

func TestQueuedCreateWithoutDeliveryIsRefused(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0)}), "m1")
	r := e.results(1, 20*time.Second)[0]
	if code := r.data()["error"].(map[string]any)["code"]; code != "DeliveryNotConfigured" {
		t.Errorf("code = %v", code)
	}
	if len(e.stack.Workspaces[0].Tokens()) != 0 {
		t.Error("a token was issued that could be delivered nowhere")
	}
}

func TestTransientFailureIsRedeliveredThenSucceeds(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: append([]string{"UPSTREAM_RETRY_BUDGET=2s"}, inlineResults...)})
	dbw := e.stack.Workspaces[0]
	dbw.InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "60"}) // beyond the budget: fail the invocation
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0)}), "m-transient")
	r := e.results(1, 60*time.Second)[0]
	if r.Subject != "Databricks.Token.Created" {
		t.Fatalf("result: %+v", r)
	}
	if n := len(dbw.LiveTokens()); n != 1 {
		t.Errorf("%d live tokens; want 1", n)
	}
	e.waitIdle()
	deliveries := 0
	for _, inv := range e.host.Invocations() {
		if inv.MessageID == "m-transient" {
			deliveries++
		}
	}
	if deliveries != 2 {
		t.Errorf("%d deliveries; want 2 (one failed, one redelivered)", deliveries)
	}
}

func TestLastDeliveryPublishesFailureBeforeDeadLetter(t *testing.T) {
	t.Parallel()
	queues := stack.DefaultQueues()
	queues[0].MaxDeliveryCount = 3
	e := start(t, envOptions{serviceBus: true, settings: append([]string{"UPSTREAM_RETRY_BUDGET=1s", "QUEUE_MAX_DELIVERY_COUNT=3"}, inlineResults...),
		before: func(s *stack.Stack) {
			for range 10 {
				s.Workspaces[0].InjectFault(fakedatabricks.OpCreate, fakedatabricks.Status429{RetryAfter: "60"})
			}
		}, queues: queues})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0)}), "m-doomed")
	r := e.results(1, 60*time.Second)[0]
	if r.Subject != "Databricks.Token.Failed" || r.data()["error"].(map[string]any)["code"] != "UpstreamUnavailable" {
		t.Errorf("result: %+v", r)
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.stats("token-requests").DeadLettered != 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if s := e.stats("token-requests"); s.DeadLettered != 1 {
		t.Errorf("after the last delivery: %+v; want the message dead-lettered", s)
	}
	if n := len(e.stack.Workspaces[0].Tokens()); n != 0 {
		t.Errorf("%d tokens exist", n)
	}
}

const eventTemplate = `{
  "topic": "/subscriptions/%[1]s",
  "subject": "%[2]s",
  "eventType": "Microsoft.Resources.ResourceWriteSuccess",
  "eventTime": "2026-11-28T10:00:00.1234567Z",
  "id": "%[3]s",
  "data": {
    "authorization": { "scope": "%[2]s", "action": "Microsoft.Databricks/workspaces/write", "evidence": { "role": "Contributor" } },
    "resourceProvider": "Microsoft.Databricks",
    "resourceUri": "%[2]s",
    "operationName": "%[4]s",
    "status": "Succeeded",
    "subscriptionId": "%[1]s",
    "tenantId": "11111111-1111-1111-1111-111111111111"
  },
  "dataVersion": "2",
  "metadataVersion": "1"
}`

// eventIssuesNothing sends workspace 0 another write event and checks that
// it is acknowledged with no result and no new token: wantLive stay live.
func (e *env) eventIssuesNothing(id string, wantLive int) {
	e.t.Helper()
	e.send("workspace-events", gridEvent(ws(0), id, "Microsoft.Databricks/workspaces/write"), "sb-"+id)
	e.waitIdle()
	e.results(0, time.Second)
	if n := len(e.stack.Workspaces[0].LiveTokens()); n != wantLive {
		e.t.Errorf("%d live tokens after event %s; want %d", n, id, wantLive)
	}
}

func gridEvent(resource, id, operation string) []byte {
	return []byte(fmt.Sprintf(eventTemplate, stack.Subscription, strings.Replace(resource, "resourceGroups", "resourcegroups", 1), id, operation))
}

func TestWorkspaceEvents(t *testing.T) {
	t.Parallel()
	e := startQueues(t, envOptions{settings: inlineResults})
	dbw := e.stack.Workspaces[0]
	// A foreign event is acknowledged and ignored: no token, no result.
	e.send("workspace-events", gridEvent(ws(0), "ev-foreign", "Microsoft.Storage/storageAccounts/write"), "sb-1")
	// The workspace write issues a token.
	e.send("workspace-events", gridEvent(ws(0), "ev-1", "Microsoft.Databricks/workspaces/write"), "sb-2")
	r := e.results(1, 20*time.Second)[0]
	if r.Subject != "Databricks.Token.Created" || r.data()["tokenValue"] == nil {
		t.Fatalf("result: %+v", r)
	}
	// Another write event for the same workspace (ARM sends several) finds the live token: nothing happens.
	cloud := fmt.Sprintf(`{"specversion":"1.0","type":"Microsoft.Resources.ResourceWriteSuccess","source":"/subscriptions/%s","id":"ev-2","subject":"%s","data":{"operationName":"Microsoft.Databricks/workspaces/write","status":"Succeeded"}}`,
		stack.Subscription, ws(0))
	e.send("workspace-events", []byte(cloud), "sb-3")
	e.waitIdle()
	e.results(0, time.Second)
	if n := len(dbw.LiveTokens()); n != 1 {
		t.Errorf("%d live tokens after two events; want 1", n)
	}
	if s := e.stats("workspace-events"); s.DeadLettered != 0 || s.Active != 0 {
		t.Errorf("workspace-events: %+v", s)
	}
}

func TestWorkspaceNotReadyIsWaitedFor(t *testing.T) {
	t.Parallel()
	fresh := "/subscriptions/" + stack.Subscription + "/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/fresh"
	var w *fakedatabricks.Workspace
	e := startQueues(t, envOptions{settings: append([]string{"WORKSPACE_NOT_READY_BACKOFF=1s"}, inlineResults...), before: func(s *stack.Stack) {
		var err error
		if w, err = s.AddWorkspace(fresh); err != nil {
			t.Fatal(err)
		}
		if err := s.ARM.SetProvisioningState(fresh, "Accepted"); err != nil {
			t.Fatal(err)
		}
	}})
	e.send("workspace-events", gridEvent(fresh, "ev-fresh", "Microsoft.Databricks/workspaces/write"), "sb-fresh")
	deadline := time.Now().Add(10 * time.Second)
	for e.stats("workspace-events").Scheduled == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s := e.stats("workspace-events"); s.Scheduled != 1 {
		t.Fatalf("workspace-events: %+v; want the event rescheduled", s)
	}
	if err := e.stack.ARM.SetProvisioningState(fresh, "Succeeded"); err != nil {
		t.Fatal(err)
	}
	r := e.results(1, 30*time.Second)[0]
	if r.Subject != "Databricks.Token.Created" || len(w.LiveTokens()) != 1 {
		t.Fatalf("result %+v, live %d", r, len(w.LiveTokens()))
	}
	e.waitIdle()
	for _, inv := range e.host.Invocations() {
		if inv.DeliveryCount > 1 {
			t.Errorf("a delivery was burned waiting: %+v", inv)
		}
	}
}
