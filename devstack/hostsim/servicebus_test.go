package hostsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/devstack/fakeservicebus"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

// startBroker starts the node/rhea Service Bus stand-in. Without node (or
// its npm dependencies) the test fails, naming what to install.
func startBroker(t *testing.T, queues ...fakeservicebus.QueueConfig) *fakeservicebus.Broker {
	t.Helper()
	kittest.Require(t, fakeservicebus.Project.Available())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := fakeservicebus.Start(ctx, fakeservicebus.Options{Queues: queues})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

const queueHostJSON = `{
  "version": "2.0",
  "customHandler": { "description": { "defaultExecutablePath": "handler" }, "enableForwardingHttpRequest": true },
  "extensions": { "serviceBus": { "maxConcurrentCalls": %d } }
}`

func queueApp(t *testing.T, maxConcurrentCalls int) string {
	return writeApp(t, fmt.Sprintf(queueHostJSON, maxConcurrentCalls), map[string]string{
		"ProcessOrders": `{"bindings":[{"type":"serviceBusTrigger","direction":"in","name":"sbMsg",
		  "queueName":"%ORDERS_QUEUE%","connection":"ServiceBusConnection"}]}`,
		"rotate": standardFunctions["rotate"],
	})
}

// queueHost starts a broker with an "orders" queue and a host whose
// ProcessOrders function listens on it.
func queueHost(t *testing.T, q fakeservicebus.QueueConfig, opts hostsim.Options, maxConcurrentCalls int) (*testHost, *fakeservicebus.Broker) {
	t.Helper()
	q.Name = "orders"
	b := startBroker(t, q)
	opts.AppRoot = queueApp(t, maxConcurrentCalls)
	opts.Env = append(opts.Env, "ORDERS_QUEUE=orders")
	opts.ServiceBusConnectionString = b.ConnectionString()
	return startHost(t, opts), b
}

func send(t *testing.T, b *fakeservicebus.Broker, msgs ...*azservicebus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := azservicebus.NewClientFromConnectionString(b.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(ctx)
	sender, err := client.NewSender("orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close(ctx)
	for _, m := range msgs {
		if err := sender.SendMessage(ctx, m, nil); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
}

func jsonMessage(id, body string) *azservicebus.Message {
	ct := "application/json"
	return &azservicebus.Message{MessageID: &id, Body: []byte(body), ContentType: &ct}
}

func waitIdle(t *testing.T, h *hostsim.Host, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := h.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// byMessage groups Service Bus invocations by MessageID, in delivery order.
func byMessage(h *hostsim.Host) map[string][]hostsim.Invocation {
	out := map[string][]hostsim.Invocation{}
	for _, inv := range h.Invocations() {
		if inv.Trigger == hostsim.TriggerServiceBus {
			out[inv.MessageID] = append(out[inv.MessageID], inv)
		}
	}
	for _, invs := range out {
		sort.Slice(invs, func(i, j int) bool { return invs[i].DeliveryCount < invs[j].DeliveryCount })
	}
	return out
}

func queueStats(t *testing.T, b *fakeservicebus.Broker) fakeservicebus.QueueStats {
	t.Helper()
	st, err := b.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st["orders"]
}

// A message the handler accepts is completed; the handler saw the §3.5
// envelope at /ProcessOrders with the §1.5 headers.
func TestServiceBusCompleteOnSuccess(t *testing.T) {
	t.Parallel()
	h, b := queueHost(t, fakeservicebus.QueueConfig{MaxDeliveryCount: 3}, hostsim.Options{}, 0)
	corr, subj := "corr-9", "order.created"
	m := jsonMessage("m-1", `{"orderId":7,"customer":{"id":"c1"},"lines":[1,2]}`)
	m.CorrelationID, m.Subject = &corr, &subj
	m.ApplicationProperties = map[string]any{"tenant": "a", "attempt": int64(2)}
	send(t, b, m)
	waitIdle(t, h.Host, 30*time.Second)

	invs := byMessage(h.Host)["m-1"]
	if len(invs) != 1 {
		t.Fatalf("%d invocations, want 1:%s", len(invs), summary(invs...))
	}
	inv := invs[0]
	if inv.Err != nil || inv.Settlement != hostsim.SettlementComplete || inv.DeliveryCount != 1 || inv.Function != "ProcessOrders" {
		t.Errorf("invocation:%s", summary(inv))
	}
	echo := decodeEnvelopeEcho(t, inv.Body)
	if echo.Echo.Path != "/ProcessOrders" || string(echo.Echo.Envelope) != string(inv.Request) {
		t.Errorf("path %q; handler saw %s; recorded %s", echo.Echo.Path, echo.Echo.Envelope, inv.Request)
	}
	hd := echo.Echo.Headers
	if hd["Content-Type"][0] != "application/json; charset=utf-8" || hd["X-Azure-Functions-Invocationid"][0] != inv.ID ||
		hd["User-Agent"][0] != "Azure-Functions-Host/"+hostsim.HostVersion || hd["X-Azure-Functions-Hostversion"][0] != hostsim.HostVersion {
		t.Errorf("headers = %v", hd)
	}
	if echo.Echo.Body != `{"orderId":7,"customer":{"id":"c1"},"lines":[1,2]}` {
		t.Errorf("handler decoded body %q", echo.Echo.Body)
	}
	if diff := cmp.Diff([]string{"handled ProcessOrders invocation " + inv.ID + " delivery 1"}, inv.Logs); diff != "" {
		t.Errorf("Logs (-want +got):\n%s", diff)
	}

	md := decodeMetadata(t, inv.Request)
	str := func(k string) string {
		var s string
		if err := json.Unmarshal(md[k], &s); err != nil {
			t.Errorf("Metadata.%s = %s: %v", k, md[k], err)
		}
		return s
	}
	want := map[string]string{
		"DeliveryCount": "1", "MessageId": `"m-1"`, "ContentType": `"application/json"`,
		"CorrelationId": `"corr-9"`, "Subject": `"order.created"`, "Label": `"order.created"`,
		"ExpiresAtUtc": "9999-12-31T23:59:59", "ExpiresAt": "9999-12-31T23:59:59+00:00",
		"orderId": `"7"`,
	}
	for k, v := range want {
		if got := str(k); got != v {
			t.Errorf("Metadata.%s = %q, want %q", k, got, v)
		}
	}
	if !regexp.MustCompile(`^"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$`).MatchString(str("LockToken")) {
		t.Errorf("LockToken = %s", md["LockToken"])
	}
	if n, err := strconv.ParseInt(str("SequenceNumber"), 10, 64); err != nil || n < 1 {
		t.Errorf("SequenceNumber = %s", md["SequenceNumber"])
	}
	enq, err := time.Parse("2006-01-02T15:04:05", str("EnqueuedTimeUtc"))
	if err != nil || time.Since(enq) > time.Minute || time.Since(enq) < -time.Minute {
		t.Errorf("EnqueuedTimeUtc = %s (%v)", md["EnqueuedTimeUtc"], err)
	}
	if got := string(md["ApplicationProperties"]); got != `{"attempt":2,"tenant":"a"}` || string(md["UserProperties"]) != got {
		t.Errorf("ApplicationProperties = %s, UserProperties = %s", got, md["UserProperties"])
	}
	if got := string(md["customer"]); got != `{"id":"c1"}` {
		t.Errorf("Metadata.customer = %s, want the object", got)
	}
	if _, ok := md["lines"]; ok {
		t.Errorf("array property was promoted")
	}

	st := queueStats(t, b)
	if st.Completed != 1 || st.Active != 0 || st.Locked != 0 || st.DeadLettered != 0 {
		t.Errorf("queue stats = %+v", st)
	}
}

// Failures abandon the message: the broker redelivers it with
// DeliveryCount+1 and dead-letters it after MaxDeliveryCount.
func TestServiceBusAbandonRedeliverDeadLetter(t *testing.T) {
	t.Parallel()
	h, b := queueHost(t, fakeservicebus.QueueConfig{MaxDeliveryCount: 3}, hostsim.Options{}, 0)
	send(t, b,
		jsonMessage("always-500", `{"status":500}`),
		jsonMessage("not-json", `{"reply":"notjson"}`),
		jsonMessage("text-plain", `{"ct":"text/plain"}`),
		jsonMessage("null-reply", `{"reply":"null"}`),
		jsonMessage("fail-once", `{"failUntilDelivery":2}`),
	)
	waitIdle(t, h.Host, 60*time.Second)

	got := map[string][]string{}
	for id, invs := range byMessage(h.Host) {
		for _, inv := range invs {
			got[id] = append(got[id], fmt.Sprintf("%d:%s", inv.DeliveryCount, inv.Settlement))
			if (inv.Settlement == hostsim.SettlementAbandon) != (inv.Err != nil) {
				t.Errorf("%s delivery %d: settlement %s with error %v", id, inv.DeliveryCount, inv.Settlement, inv.Err)
			}
		}
	}
	dead := []string{"1:abandon", "2:abandon", "3:abandon"}
	want := map[string][]string{
		"always-500": dead, "not-json": dead, "text-plain": dead, "null-reply": dead,
		"fail-once": {"1:abandon", "2:complete"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
	st := queueStats(t, b)
	if st.DeadLettered != 4 || st.Completed != 1 || st.Active != 0 {
		t.Errorf("queue stats = %+v, want 4 dead-lettered, 1 completed", st)
	}
	dlq, err := b.Messages(context.Background(), "orders", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range dlq {
		if m.DeadLetterReason != "MaxDeliveryCountExceeded" {
			t.Errorf("dead-letter reason of %s = %q", m.MessageID, m.DeadLetterReason)
		}
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("Restarts = %d; failed replies must not restart the handler", n)
	}
}

// A function timeout kills and restarts the handler; both in-flight messages
// are abandoned and succeed on their second delivery.
func TestServiceBusTimeoutRestartsHandler(t *testing.T) {
	t.Parallel()
	h, b := queueHost(t, fakeservicebus.QueueConfig{MaxDeliveryCount: 5}, hostsim.Options{FunctionTimeout: 2 * time.Second}, 0)
	send(t, b, jsonMessage("slow", `{"sleep":"60s","sleepUntilDelivery":2}`))
	eventually(t, 30*time.Second, "slow message in flight", func() bool { return queueStats(t, b).Locked == 1 })
	// The bystander starts later, so only the slow one's timeout fires.
	time.Sleep(700 * time.Millisecond)
	send(t, b, jsonMessage("bystander", `{"sleep":"10s","sleepUntilDelivery":2}`))
	waitIdle(t, h.Host, 60*time.Second)

	if n := h.Restarts(); n != 1 {
		t.Errorf("Restarts = %d, want 1", n)
	}
	byID := byMessage(h.Host)
	for _, id := range []string{"slow", "bystander"} {
		invs := byID[id]
		if len(invs) != 2 {
			t.Errorf("%s: %d deliveries, want 2", id, len(invs))
			continue
		}
		first, second := invs[0], invs[1]
		if first.Settlement != hostsim.SettlementAbandon || !errors.Is(first.Err, hostsim.ErrFunctionTimeout) {
			t.Errorf("%s first delivery: %s, %v; want abandoned by the timeout", id, first.Settlement, first.Err)
		}
		if second.DeliveryCount != 2 || second.Settlement != hostsim.SettlementComplete || second.Err != nil {
			t.Errorf("%s second delivery:%s", id, summary(second))
		}
	}
	if inv := byID["bystander"]; len(inv) > 0 && !strings.Contains(fmt.Sprint(inv[0].Err), "handler restarted") {
		t.Errorf("bystander failed with %v, want the restart", inv[0].Err)
	}
	if st := queueStats(t, b); st.Completed != 2 {
		t.Errorf("queue stats = %+v", st)
	}
}

// KillHandler abandons the in-flight message; it is redelivered to the new
// process.
func TestServiceBusKillHandler(t *testing.T) {
	t.Parallel()
	h, b := queueHost(t, fakeservicebus.QueueConfig{}, hostsim.Options{}, 0)
	send(t, b, jsonMessage("k", `{"sleep":"30s","sleepUntilDelivery":2}`))
	eventually(t, 30*time.Second, "message in flight", func() bool {
		st := queueStats(t, b)
		return st.Locked == 1
	})
	time.Sleep(200 * time.Millisecond)
	h.KillHandler()
	waitIdle(t, h.Host, 60*time.Second)
	invs := byMessage(h.Host)["k"]
	if len(invs) != 2 || invs[0].Settlement != hostsim.SettlementAbandon || invs[1].Settlement != hostsim.SettlementComplete || invs[1].DeliveryCount != 2 {
		t.Errorf("deliveries:%s", summary(invs...))
	}
	if h.Restarts() != 1 {
		t.Errorf("Restarts = %d", h.Restarts())
	}
}

// Up to MaxConcurrentCalls (16 by default) invocations of one function run
// at once, never more.
func TestServiceBusConcurrency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		hostJSON int // extensions.serviceBus.maxConcurrentCalls; 0 = unset
		messages int
		want     int
	}{
		{"default 16", 0, 20, 16},
		{"host.json 3", 3, 7, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, b := queueHost(t, fakeservicebus.QueueConfig{}, hostsim.Options{}, tt.hostJSON)
			var msgs []*azservicebus.Message
			for i := range tt.messages {
				msgs = append(msgs, jsonMessage(fmt.Sprintf("c-%d", i), `{"sleep":"2s"}`))
			}
			send(t, b, msgs...)
			waitIdle(t, h.Host, 90*time.Second)
			maxSeen := 0
			n := 0
			for _, inv := range h.Invocations() {
				if inv.Trigger != hostsim.TriggerServiceBus {
					continue
				}
				n++
				if inv.Err != nil || inv.Settlement != hostsim.SettlementComplete {
					t.Errorf("%s: %s %v", inv.MessageID, inv.Settlement, inv.Err)
				}
				maxSeen = max(maxSeen, decodeEnvelopeEcho(t, inv.Body).Echo.Inflight)
			}
			if n != tt.messages {
				t.Errorf("%d invocations, want %d", n, tt.messages)
			}
			if maxSeen != tt.want {
				t.Errorf("max concurrent invocations at the handler = %d, want %d", maxSeen, tt.want)
			}
		})
	}
}

// The host renews the message lock while the handler runs longer than the
// queue's lock duration, so the message is completed once.
func TestServiceBusLockRenewal(t *testing.T) {
	t.Parallel()
	h, b := queueHost(t, fakeservicebus.QueueConfig{LockDuration: time.Second}, hostsim.Options{}, 0)
	send(t, b, jsonMessage("long", `{"sleep":"3s"}`))
	waitIdle(t, h.Host, 60*time.Second)
	invs := byMessage(h.Host)["long"]
	if len(invs) != 1 || invs[0].Settlement != hostsim.SettlementComplete || invs[0].Err != nil {
		t.Errorf("want one completed delivery, got:%s", summary(invs...))
	}
	if st := queueStats(t, b); st.Completed != 1 {
		t.Errorf("queue stats = %+v", st)
	}
}

// Timer and Service Bus functions share the handler.
func TestServiceBusAndTimerTogether(t *testing.T) {
	t.Parallel()
	h, b := queueHost(t, fakeservicebus.QueueConfig{}, hostsim.Options{}, 0)
	send(t, b, jsonMessage("t-1", `{"orderId":1}`))
	if _, err := h.InvokeTimer(context.Background(), "rotate", false); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, h.Host, 30*time.Second)
	if invs := byMessage(h.Host)["t-1"]; len(invs) != 1 || invs[0].Err != nil {
		t.Errorf("queue invocations:%s", summary(invs...))
	}
}
