package fakeservicebus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/go-amqp"

	"github.com/contoso/databricks-token-broker/devstack/fakeservicebus"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

var (
	sharedOnce sync.Once
	shared     *fakeservicebus.Broker
	sharedErr  error
	sharedLog  = &kit.Buffer{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		_ = shared.Close()
	}
	if os.Getenv("DEVSTACK_SB_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "broker log:\n%s", sharedLog.String())
	}
	os.Exit(code)
}

// requireNode fails when Node.js or the broker's packages are missing: these tests run the broker in node.
func requireNode(t *testing.T) {
	t.Helper()
	kittest.Require(t, fakeservicebus.Project.Available())
}

func sharedBroker(t *testing.T) *fakeservicebus.Broker {
	t.Helper()
	requireNode(t)
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shared, sharedErr = fakeservicebus.Start(ctx, fakeservicebus.Options{
			Stderr: sharedLog,
			Debug:  os.Getenv("DEVSTACK_SB_DEBUG") != "",
		})
	})
	if sharedErr != nil {
		t.Fatalf("starting broker: %v", sharedErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log := sharedLog.String()
			t.Logf("broker log (tail):\n%s", log[max(0, len(log)-6000):])
		}
	})
	return shared
}

var queueSeq atomic.Int64

// newQueue creates a queue of this test's own on the shared broker (unique across -count runs).
// onQueue is how most tests begin: the shared broker, a client of it, a
// context that ends after d, and a fresh queue configured as cfg.
func onQueue(t *testing.T, d time.Duration, cfg fakeservicebus.QueueConfig) (*fakeservicebus.Broker, *azservicebus.Client, context.Context, string) {
	t.Helper()
	b := sharedBroker(t)
	return b, newClient(t, b), testCtx(t, d), newQueue(t, b, cfg)
}

func newQueue(t *testing.T, b *fakeservicebus.Broker, cfg fakeservicebus.QueueConfig) string {
	t.Helper()
	cfg.Name = fmt.Sprintf("%s-%d", cfg.Name, queueSeq.Add(1))
	if err := b.CreateQueue(testCtx(t, 5*time.Second), cfg); err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	return cfg.Name
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, b *fakeservicebus.Broker) *azservicebus.Client {
	t.Helper()
	c, err := azservicebus.NewClientFromConnectionString(b.ConnectionString(), nil)
	if err != nil {
		t.Fatalf("NewClientFromConnectionString: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func newSender(t *testing.T, c *azservicebus.Client, queue string) *azservicebus.Sender {
	t.Helper()
	s, err := c.NewSender(queue, nil)
	if err != nil {
		t.Fatalf("NewSender: %v", err)
	}
	return s
}

func newReceiver(t *testing.T, c *azservicebus.Client, queue string, opts *azservicebus.ReceiverOptions) *azservicebus.Receiver {
	t.Helper()
	r, err := c.NewReceiverForQueue(queue, opts)
	if err != nil {
		t.Fatalf("NewReceiverForQueue: %v", err)
	}
	return r
}

func send(t *testing.T, ctx context.Context, s *azservicebus.Sender, m *azservicebus.Message) {
	t.Helper()
	if err := s.SendMessage(ctx, m, nil); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
}

func complete(t *testing.T, ctx context.Context, r *azservicebus.Receiver, m *azservicebus.ReceivedMessage) {
	t.Helper()
	if err := r.CompleteMessage(ctx, m, nil); err != nil {
		t.Fatalf("CompleteMessage: %v", err)
	}
}

// receiveN receives exactly n messages within d.
func receiveN(t *testing.T, r *azservicebus.Receiver, n int, d time.Duration) []*azservicebus.ReceivedMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []*azservicebus.ReceivedMessage
	for len(out) < n {
		msgs, err := r.ReceiveMessages(ctx, n-len(out), nil)
		if err != nil {
			t.Fatalf("ReceiveMessages: got %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, msgs...)
	}
	if len(out) != n {
		t.Fatalf("received %d messages, want %d", len(out), n)
	}
	return out
}

// receiveNone asserts that nothing arrives within d.
func receiveNone(t *testing.T, r *azservicebus.Receiver, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	msgs, err := r.ReceiveMessages(ctx, 1, nil)
	if len(msgs) > 0 {
		t.Fatalf("expected no message, got %q (delivery count %d)", msgs[0].Body, msgs[0].DeliveryCount)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReceiveMessages: %v", err)
	}
}

func stats(t *testing.T, b *fakeservicebus.Broker, queue string) fakeservicebus.QueueStats {
	t.Helper()
	all, err := b.Stats(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	s, ok := all[queue]
	if !ok {
		t.Fatalf("Stats has no queue %q: %v", queue, all)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func TestSendReceiveComplete(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "basic"})

	before := time.Now()
	send(t, ctx, newSender(t, c, q), &azservicebus.Message{Body: []byte("hello"), MessageID: ptr("m-1")})
	r := newReceiver(t, c, q, nil)
	m := receiveN(t, r, 1, 10*time.Second)[0]

	if string(m.Body) != "hello" || m.MessageID != "m-1" {
		t.Fatalf("got body %q id %q", m.Body, m.MessageID)
	}
	if m.DeliveryCount != 1 {
		t.Errorf("DeliveryCount = %d, want 1", m.DeliveryCount)
	}
	if m.SequenceNumber == nil || *m.SequenceNumber < 1 {
		t.Errorf("SequenceNumber = %v", m.SequenceNumber)
	}
	if m.EnqueuedTime == nil || m.EnqueuedTime.Before(before.Add(-time.Second)) || m.EnqueuedTime.After(time.Now().Add(time.Second)) {
		t.Errorf("EnqueuedTime = %v", m.EnqueuedTime)
	}
	if m.LockedUntil == nil || m.LockedUntil.Before(time.Now().Add(20*time.Second)) {
		t.Errorf("LockedUntil = %v, want about now+30s", m.LockedUntil)
	}
	if m.LockToken == ([16]byte{}) {
		t.Error("LockToken is zero")
	}
	if s := stats(t, b, q); s.Locked != 1 || s.Active != 0 {
		t.Errorf("stats while locked: %+v", s)
	}
	complete(t, ctx, r, m)
	if s := stats(t, b, q); s.Locked != 0 || s.Active != 0 || s.Completed != 1 || s.TotalSent != 1 {
		t.Errorf("stats after complete: %+v", s)
	}
	receiveNone(t, r, 200*time.Millisecond)
}

func TestAbandonRedeliversWithIncrementedCount(t *testing.T) {
	t.Parallel()
	_, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "abandon"})

	send(t, ctx, newSender(t, c, q), &azservicebus.Message{Body: []byte("again"), MessageID: ptr("ab-1"), ApplicationProperties: map[string]any{"origin": "test"}})
	r := newReceiver(t, c, q, nil)
	first := receiveN(t, r, 1, 10*time.Second)[0]
	if first.DeliveryCount != 1 {
		t.Fatalf("first DeliveryCount = %d", first.DeliveryCount)
	}
	modify := &azservicebus.AbandonMessageOptions{PropertiesToModify: map[string]any{"lastError": "timeout", "attempt": int64(1)}}
	if err := r.AbandonMessage(ctx, first, modify); err != nil {
		t.Fatalf("AbandonMessage: %v", err)
	}
	second := receiveN(t, r, 1, 10*time.Second)[0]
	if second.DeliveryCount != 2 {
		t.Errorf("DeliveryCount after abandon = %d, want 2", second.DeliveryCount)
	}
	if second.ApplicationProperties["lastError"] != "timeout" || second.ApplicationProperties["attempt"] != int64(1) ||
		second.ApplicationProperties["origin"] != "test" {
		t.Errorf("application properties after abandon with PropertiesToModify: %v", second.ApplicationProperties)
	}
	if second.MessageID != "ab-1" || *second.SequenceNumber != *first.SequenceNumber || second.LockToken == first.LockToken {
		t.Errorf("redelivery: id %q seq %d (was %d), lock token reused: %v", second.MessageID, *second.SequenceNumber, *first.SequenceNumber, second.LockToken == first.LockToken)
	}
	complete(t, ctx, r, second)
}

func TestMaxDeliveryCountMovesToDeadLetter(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 20*time.Second, fakeservicebus.QueueConfig{Name: "maxdc", MaxDeliveryCount: 3})

	send(t, ctx, newSender(t, c, q), &azservicebus.Message{
		Body: []byte("poison"), MessageID: ptr("p-1"), ApplicationProperties: map[string]any{"tenant": "t1"},
	})
	r := newReceiver(t, c, q, nil)
	for i := 1; i <= 3; i++ {
		m := receiveN(t, r, 1, 10*time.Second)[0]
		if int(m.DeliveryCount) != i {
			t.Fatalf("attempt %d: DeliveryCount = %d", i, m.DeliveryCount)
		}
		if err := r.AbandonMessage(ctx, m, nil); err != nil {
			t.Fatalf("AbandonMessage: %v", err)
		}
	}
	receiveNone(t, r, 200*time.Millisecond)
	if s := stats(t, b, q); s.DeadLettered != 1 || s.Active != 0 {
		t.Errorf("stats: %+v", s)
	}

	dlq := newReceiver(t, c, q, &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
	m := receiveN(t, dlq, 1, 10*time.Second)[0]
	if m.MessageID != "p-1" || string(m.Body) != "poison" {
		t.Fatalf("dead-lettered message: id %q body %q", m.MessageID, m.Body)
	}
	if m.DeadLetterReason == nil || *m.DeadLetterReason != "MaxDeliveryCountExceeded" {
		t.Errorf("DeadLetterReason = %v", m.DeadLetterReason)
	}
	if m.DeadLetterErrorDescription == nil || !strings.Contains(*m.DeadLetterErrorDescription, "3") {
		t.Errorf("DeadLetterErrorDescription = %v", m.DeadLetterErrorDescription)
	}
	if m.DeadLetterSource == nil || *m.DeadLetterSource != q {
		t.Errorf("DeadLetterSource = %v", m.DeadLetterSource)
	}
	if m.ApplicationProperties["tenant"] != "t1" {
		t.Errorf("application properties lost: %v", m.ApplicationProperties)
	}

	sums, err := b.Messages(ctx, q, true)
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if len(sums) != 1 || sums[0].MessageID != "p-1" || sums[0].DeadLetterReason != "MaxDeliveryCountExceeded" || sums[0].Body != "poison" {
		t.Errorf("admin dead-letter listing: %+v", sums)
	}
	complete(t, ctx, dlq, m)
	if s := stats(t, b, q); s.DeadLettered != 0 {
		t.Errorf("stats after DLQ complete: %+v", s)
	}
}

func TestExplicitDeadLetter(t *testing.T) {
	t.Parallel()
	_, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "dlq-explicit"})

	send(t, ctx, newSender(t, c, q), &azservicebus.Message{Body: []byte("bad"), MessageID: ptr("x-1"), ApplicationProperties: map[string]any{"n": int64(5)}})
	r := newReceiver(t, c, q, nil)
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if err := r.DeadLetterMessage(ctx, m, &azservicebus.DeadLetterOptions{Reason: ptr("InvalidToken"), ErrorDescription: ptr("token request malformed")}); err != nil {
		t.Fatalf("DeadLetterMessage: %v", err)
	}
	dlq := newReceiver(t, c, q, &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
	d := receiveN(t, dlq, 1, 10*time.Second)[0]
	if d.DeadLetterReason == nil || *d.DeadLetterReason != "InvalidToken" || d.DeadLetterErrorDescription == nil || *d.DeadLetterErrorDescription != "token request malformed" {
		t.Errorf("reason %v description %v", d.DeadLetterReason, d.DeadLetterErrorDescription)
	}
	if v, ok := d.ApplicationProperties["n"].(int64); !ok || v != 5 {
		t.Errorf("application property n = %#v", d.ApplicationProperties["n"])
	}
	complete(t, ctx, dlq, d)
}

func TestLockRenewalAndExpiry(t *testing.T) {
	t.Parallel()
	_, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "lockexp", LockDuration: 800 * time.Millisecond})

	send(t, ctx, newSender(t, c, q), &azservicebus.Message{Body: []byte("slow"), MessageID: ptr("l-1")})
	r := newReceiver(t, c, q, nil)
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if until := time.Until(*m.LockedUntil); until > time.Second || until < 300*time.Millisecond {
		t.Errorf("LockedUntil in %v, want about 800ms", until)
	}

	time.Sleep(400 * time.Millisecond)
	old := *m.LockedUntil
	if err := r.RenewMessageLock(ctx, m, nil); err != nil {
		t.Fatalf("RenewMessageLock: %v", err)
	}
	if !m.LockedUntil.After(old) {
		t.Errorf("LockedUntil not extended: %v -> %v", old, *m.LockedUntil)
	}
	// Past the original expiry, the renewed lock still holds.
	receiveNone(t, r, 600*time.Millisecond)

	// Then it runs out, and the message comes back with one more delivery.
	again := receiveN(t, r, 1, 10*time.Second)[0]
	if again.DeliveryCount != 2 || again.MessageID != "l-1" {
		t.Errorf("redelivery after lock expiry: DeliveryCount %d id %q", again.DeliveryCount, again.MessageID)
	}
	var sbErr *azservicebus.Error
	if err := r.CompleteMessage(ctx, m, nil); !errors.As(err, &sbErr) || sbErr.Code != azservicebus.CodeLockLost {
		t.Errorf("completing with the expired lock: got %v, want CodeLockLost", err)
	}
	complete(t, ctx, r, again)
}

func TestDuplicateDetection(t *testing.T) {
	t.Parallel()
	b := sharedBroker(t)
	c := newClient(t, b)
	ctx := testCtx(t, 15*time.Second)

	dedupe := newQueue(t, b, fakeservicebus.QueueConfig{Name: "dedupe", DuplicateDetectionWindow: time.Minute})
	nodedupe := newQueue(t, b, fakeservicebus.QueueConfig{Name: "nodedupe"})

	// With a window, the second message with the same MessageID is dropped silently.
	s := newSender(t, c, dedupe)
	send(t, ctx, s, &azservicebus.Message{Body: []byte("first"), MessageID: ptr("dup-1")})
	send(t, ctx, s, &azservicebus.Message{Body: []byte("second"), MessageID: ptr("dup-1")})
	send(t, ctx, s, &azservicebus.Message{Body: []byte("other"), MessageID: ptr("dup-2")})
	r := newReceiver(t, c, dedupe, nil)
	got := receiveN(t, r, 2, 10*time.Second)
	if string(got[0].Body) != "first" || string(got[1].Body) != "other" {
		t.Errorf("bodies %q, %q", got[0].Body, got[1].Body)
	}
	receiveNone(t, r, 200*time.Millisecond)
	if st := stats(t, b, dedupe); st.DuplicatesDropped != 1 || st.TotalSent != 3 {
		t.Errorf("stats: %+v", st)
	}

	// Without a window, both are kept.
	s2 := newSender(t, c, nodedupe)
	send(t, ctx, s2, &azservicebus.Message{Body: []byte("a"), MessageID: ptr("same")})
	send(t, ctx, s2, &azservicebus.Message{Body: []byte("b"), MessageID: ptr("same")})
	receiveN(t, newReceiver(t, c, nodedupe, nil), 2, 10*time.Second)
}

func TestScheduledMessages(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "scheduled"})

	s := newSender(t, c, q)
	at := time.Now().Add(2 * time.Second)
	seqs, err := s.ScheduleMessages(ctx, []*azservicebus.Message{{Body: []byte("via-management"), MessageID: ptr("s-1")}}, at, nil)
	if err != nil || len(seqs) != 1 || seqs[0] < 1 {
		t.Fatalf("ScheduleMessages: %v %v", seqs, err)
	}
	send(t, ctx, s, &azservicebus.Message{Body: []byte("via-annotation"), MessageID: ptr("s-2"), ScheduledEnqueueTime: &at})
	cancelled, err := s.ScheduleMessages(ctx, []*azservicebus.Message{{Body: []byte("cancelled"), MessageID: ptr("s-3")}}, at.Add(-time.Second), nil)
	if err != nil {
		t.Fatalf("ScheduleMessages: %v", err)
	}
	if err := s.CancelScheduledMessages(ctx, cancelled, nil); err != nil {
		t.Fatalf("CancelScheduledMessages: %v", err)
	}
	if st := stats(t, b, q); st.Scheduled != 2 || st.Active != 0 {
		t.Errorf("stats before the time: %+v", st)
	}

	r := newReceiver(t, c, q, nil)
	peeked, err := r.PeekMessages(ctx, 10, nil)
	if err != nil || len(peeked) != 2 || peeked[0].State != azservicebus.MessageStateScheduled {
		t.Fatalf("PeekMessages: %d messages, err %v", len(peeked), err)
	}
	receiveNone(t, r, time.Until(at)-300*time.Millisecond)

	got := receiveN(t, r, 2, 10*time.Second)
	// The wire carries milliseconds: a time within the scheduled
	// millisecond is on time.
	if now := time.Now(); now.Before(at.Truncate(time.Millisecond)) {
		t.Errorf("scheduled messages arrived %v early", at.Sub(now))
	}
	bodies := []string{string(got[0].Body), string(got[1].Body)}
	sort.Strings(bodies)
	if bodies[0] != "via-annotation" || bodies[1] != "via-management" {
		t.Errorf("bodies: %v", bodies)
	}
	for _, m := range got {
		if m.ScheduledEnqueueTime == nil || m.ScheduledEnqueueTime.Sub(at).Abs() > time.Millisecond {
			t.Errorf("ScheduledEnqueueTime = %v, want %v", m.ScheduledEnqueueTime, at)
		}
		complete(t, ctx, r, m)
	}
	receiveNone(t, r, 200*time.Millisecond)
}

func TestBatchSend(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "batch"})

	s := newSender(t, c, q)
	batch, err := s.NewMessageBatch(ctx, nil)
	if err != nil {
		t.Fatalf("NewMessageBatch: %v", err)
	}
	if batch.NumBytes() == 0 && batch.NumMessages() != 0 {
		t.Fatalf("unexpected empty batch state")
	}
	for i := 0; i < 5; i++ {
		err := batch.AddMessage(&azservicebus.Message{
			Body:                  []byte(fmt.Sprintf("item-%d", i)),
			ApplicationProperties: map[string]any{"index": int64(i)},
		}, nil)
		if err != nil {
			t.Fatalf("AddMessage: %v", err)
		}
	}
	if err := s.SendMessageBatch(ctx, batch, nil); err != nil {
		t.Fatalf("SendMessageBatch: %v", err)
	}
	r := newReceiver(t, c, q, nil)
	got := receiveN(t, r, 5, 10*time.Second)
	for i, m := range got {
		if string(m.Body) != fmt.Sprintf("item-%d", i) || m.ApplicationProperties["index"] != int64(i) || m.MessageID == "" {
			t.Errorf("message %d: body %q props %v id %q", i, m.Body, m.ApplicationProperties, m.MessageID)
		}
		if i > 0 && *m.SequenceNumber <= *got[i-1].SequenceNumber {
			t.Errorf("sequence numbers not increasing: %d after %d", *m.SequenceNumber, *got[i-1].SequenceNumber)
		}
		complete(t, ctx, r, m)
	}
	if st := stats(t, b, q); st.TotalSent != 5 || st.Completed != 5 {
		t.Errorf("stats: %+v", st)
	}
}

func TestPropertiesRoundTrip(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "props"})

	stamp := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	props := map[string]any{
		"s":   "text",
		"i64": int64(1) << 40,
		"neg": int64(-7),
		"b":   true,
		"f":   2.5,
		"i32": int32(42),
		"t":   stamp,
	}
	send(t, ctx, newSender(t, c, q), &azservicebus.Message{
		Body:                  []byte(`{"workspace":"w1"}`),
		MessageID:             ptr("req-123"),
		CorrelationID:         ptr("corr-9"),
		Subject:               ptr("token-request"),
		ContentType:           ptr("application/json"),
		To:                    ptr("broker"),
		ReplyTo:               ptr("replies"),
		TimeToLive:            ptr(10 * time.Minute),
		ApplicationProperties: props,
	})

	check := func(where string, m *azservicebus.ReceivedMessage) {
		t.Helper()
		if m.MessageID != "req-123" || deref(m.CorrelationID) != "corr-9" || deref(m.Subject) != "token-request" ||
			deref(m.ContentType) != "application/json" || deref(m.To) != "broker" || deref(m.ReplyTo) != "replies" {
			t.Errorf("%s: properties id=%q corr=%q subject=%q ct=%q to=%q replyTo=%q", where, m.MessageID, deref(m.CorrelationID),
				deref(m.Subject), deref(m.ContentType), deref(m.To), deref(m.ReplyTo))
		}
		if m.TimeToLive == nil || *m.TimeToLive != 10*time.Minute {
			t.Errorf("%s: TimeToLive = %v", where, m.TimeToLive)
		}
		if string(m.Body) != `{"workspace":"w1"}` {
			t.Errorf("%s: body %q", where, m.Body)
		}
		for k, want := range props {
			got := m.ApplicationProperties[k]
			if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
				t.Errorf("%s: property %s has type %T, want %T", where, k, got, want)
				continue
			}
			if tt, ok := got.(time.Time); ok {
				if !tt.Equal(stamp) {
					t.Errorf("%s: property t = %v", where, tt)
				}
			} else if got != want {
				t.Errorf("%s: property %s = %v, want %v", where, k, got, want)
			}
		}
	}

	r := newReceiver(t, c, q, nil)
	peeked, err := r.PeekMessages(ctx, 5, nil)
	if err != nil || len(peeked) != 1 {
		t.Fatalf("PeekMessages: %d, %v", len(peeked), err)
	}
	check("peeked", peeked[0])
	if peeked[0].SequenceNumber == nil {
		t.Fatal("peeked message without SequenceNumber")
	}
	m := receiveN(t, r, 1, 10*time.Second)[0]
	check("received", m)
	if *m.SequenceNumber != *peeked[0].SequenceNumber {
		t.Errorf("sequence number %d, peeked %d", *m.SequenceNumber, *peeked[0].SequenceNumber)
	}

	sums, err := b.Messages(ctx, q, false)
	if err != nil || len(sums) != 1 {
		t.Fatalf("Messages: %v %v", sums, err)
	}
	sm := sums[0]
	if sm.MessageID != "req-123" || sm.CorrelationID != "corr-9" || sm.Subject != "token-request" || sm.ContentType != "application/json" ||
		sm.Body != `{"workspace":"w1"}` || sm.State != "locked" || sm.DeliveryCount != 1 || sm.ApplicationProperties["s"] != "text" ||
		sm.ApplicationProperties["b"] != true {
		t.Errorf("admin summary: %+v", sm)
	}
	complete(t, ctx, r, m)
}

func TestLargeMessages(t *testing.T) {
	t.Parallel()
	_, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "large"})

	body := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16) // 200 KiB: several AMQP frames each way
	s := newSender(t, c, q)
	send(t, ctx, s, &azservicebus.Message{Body: body})
	m := receiveN(t, newReceiver(t, c, q, nil), 1, 10*time.Second)[0]
	if !bytes.Equal(m.Body, body) {
		t.Errorf("body of %d bytes came back as %d bytes", len(body), len(m.Body))
	}
	// Above the Standard tier's 256 KiB the SDK refuses to send, as it would against Azure.
	err := s.SendMessage(ctx, &azservicebus.Message{Body: make([]byte, 300<<10)}, nil)
	if !errors.Is(err, azservicebus.ErrMessageTooLarge) {
		t.Errorf("sending 300 KiB: got %v, want ErrMessageTooLarge", err)
	}
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestDeferAndReceiveDeferred(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "defer"})

	send(t, ctx, newSender(t, c, q), &azservicebus.Message{Body: []byte("later"), MessageID: ptr("d-1")})
	r := newReceiver(t, c, q, nil)
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if err := r.DeferMessage(ctx, m, nil); err != nil {
		t.Fatalf("DeferMessage: %v", err)
	}
	receiveNone(t, r, 200*time.Millisecond)
	if st := stats(t, b, q); st.Deferred != 1 {
		t.Errorf("stats: %+v", st)
	}
	got, err := r.ReceiveDeferredMessages(ctx, []int64{*m.SequenceNumber}, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("ReceiveDeferredMessages: %d, %v", len(got), err)
	}
	if got[0].State != azservicebus.MessageStateDeferred || string(got[0].Body) != "later" || got[0].LockToken == ([16]byte{}) {
		t.Errorf("deferred message: state %v body %q", got[0].State, got[0].Body)
	}
	complete(t, ctx, r, got[0]) // a deferred message is settled on the management link
	if st := stats(t, b, q); st.Deferred != 0 || st.Completed != 1 {
		t.Errorf("stats after complete: %+v", st)
	}
}

func TestReceiveAndDelete(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "rad"})

	send(t, ctx, newSender(t, c, q), &azservicebus.Message{Body: []byte("once")})
	r := newReceiver(t, c, q, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
	m := receiveN(t, r, 1, 10*time.Second)[0]
	if string(m.Body) != "once" {
		t.Errorf("body %q", m.Body)
	}
	if st := stats(t, b, q); st.Active+st.Locked != 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestAdminPurge(t *testing.T) {
	t.Parallel()
	b, c, ctx, q := onQueue(t, 15*time.Second, fakeservicebus.QueueConfig{Name: "purge"})

	s := newSender(t, c, q)
	for i := 0; i < 3; i++ {
		send(t, ctx, s, &azservicebus.Message{Body: []byte("x")})
	}
	n, err := b.Purge(ctx, q)
	if err != nil || n != 3 {
		t.Fatalf("Purge: %d, %v", n, err)
	}
	if st := stats(t, b, q); st.Active != 0 {
		t.Errorf("stats: %+v", st)
	}
	if _, err := b.Messages(ctx, "no-such-queue", false); err == nil {
		t.Error("Messages on an unknown queue: no error")
	}
}

func TestConcurrentSendersAndReceivers(t *testing.T) {
	t.Parallel()
	b := sharedBroker(t)
	ctx := testCtx(t, 30*time.Second)
	q := newQueue(t, b, fakeservicebus.QueueConfig{Name: "concurrent"})
	const (
		senders   = 4
		perSender = 25
		receivers = 3
		total     = senders * perSender
	)
	// Two connections, so that the broker sees senders and receivers on both.
	clients := []*azservicebus.Client{newClient(t, b), newClient(t, b)}

	var wg sync.WaitGroup
	errs := make(chan error, senders+receivers)
	// Links are opened here, where a failure can stop the test; the
	// sending and receiving on them is what runs concurrently.
	for i := range senders {
		s := newSender(t, clients[i%2], q)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer s.Close(context.Background())
			for j := 0; j < perSender; j++ {
				id := fmt.Sprintf("s%d-%d", i, j)
				if err := s.SendMessage(ctx, &azservicebus.Message{Body: []byte(id), MessageID: &id}, nil); err != nil {
					errs <- fmt.Errorf("send %s: %w", id, err)
					return
				}
			}
		}(i)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	var closeDone sync.Once
	for i := range receivers {
		r := newReceiver(t, clients[i%2], q, nil)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer r.Close(context.Background())
			for {
				select {
				case <-done:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				msgs, err := r.ReceiveMessages(rctx, 10, nil)
				cancel()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					errs <- fmt.Errorf("receiver %d: %w", i, err)
					return
				}
				for _, m := range msgs {
					if err := r.CompleteMessage(ctx, m, nil); err != nil {
						errs <- fmt.Errorf("complete %s: %w", m.MessageID, err)
						return
					}
					mu.Lock()
					seen[m.MessageID]++
					n := len(seen)
					mu.Unlock()
					if n == total {
						closeDone.Do(func() { close(done) })
					}
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("receiver %d: %w", i, ctx.Err())
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != total {
		t.Errorf("received %d distinct messages, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s completed %d times", id, n)
		}
	}
	if st := stats(t, b, q); st.Completed != total || st.Active != 0 || st.Locked != 0 {
		t.Errorf("stats: %+v", st)
	}
}

// The broker answers management operations it does not implement with an error status
// instead of leaving the caller waiting; $cbs answers put-token with an int32 202.
func TestRequestResponseNodes(t *testing.T) {
	t.Parallel()
	b := sharedBroker(t)
	ctx := testCtx(t, 10*time.Second)

	conn, err := amqp.Dial(ctx, fmt.Sprintf("amqp://127.0.0.1:%d", b.AMQPPort()), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous()})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}

	call := func(node, op string, body any) *amqp.Message {
		t.Helper()
		replyTo := node + "-reply-" + op
		snd, err := sess.NewSender(ctx, node, nil)
		if err != nil {
			t.Fatalf("NewSender %s: %v", node, err)
		}
		defer snd.Close(ctx)
		rcv, err := sess.NewReceiver(ctx, node, &amqp.ReceiverOptions{
			TargetAddress:             replyTo,
			Credit:                    10,
			SettlementMode:            amqp.ReceiverSettleModeFirst.Ptr(),
			RequestedSenderSettleMode: amqp.SenderSettleModeSettled.Ptr(),
		})
		if err != nil {
			t.Fatalf("NewReceiver %s: %v", node, err)
		}
		defer rcv.Close(ctx)
		id := "req-" + op
		req := &amqp.Message{
			Properties:            &amqp.MessageProperties{MessageID: id, ReplyTo: &replyTo},
			ApplicationProperties: map[string]any{"operation": op},
			Value:                 body,
		}
		if err := snd.Send(ctx, req, nil); err != nil {
			t.Fatalf("Send: %v", err)
		}
		resp, err := rcv.Receive(ctx, nil)
		if err != nil {
			t.Fatalf("no response to %s on %s: %v", op, node, err)
		}
		if resp.Properties == nil || resp.Properties.CorrelationID != id {
			t.Errorf("response correlation-id: %+v", resp.Properties)
		}
		return resp
	}

	if code, ok := call("$cbs", "put-token", "SharedAccessSignature sr=x&sig=y&se=1&skn=k").ApplicationProperties["status-code"].(int32); !ok || code != 202 {
		t.Errorf("put-token status-code = %#v", code)
	}
	resp := call("basic/$management", "com.microsoft:get-session-state", map[string]any{"session-id": "s"})
	if code, ok := resp.ApplicationProperties["status-code"].(int32); !ok || code != 501 {
		t.Errorf("unsupported operation status-code = %#v", resp.ApplicationProperties["status-code"])
	}
}

func TestCloseStopsTheProcess(t *testing.T) {
	t.Parallel()
	requireNode(t)
	var logs kit.Buffer
	b, err := fakeservicebus.Start(testCtx(t, 20*time.Second), fakeservicebus.Options{
		Stderr: &logs,
		Queues: []fakeservicebus.QueueConfig{{Name: "token-requests", MaxDeliveryCount: 5, LockDuration: 10 * time.Second}},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid, port := b.PID(), b.AMQPPort()
	if !strings.Contains(b.ConnectionString(), fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;", port)) ||
		!strings.HasSuffix(b.ConnectionString(), ";UseDevelopmentEmulator=true;") {
		t.Errorf("ConnectionString = %s", b.ConnectionString())
	}
	all, err := b.Stats(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if _, ok := all["token-requests"]; !ok || len(all) != 1 {
		t.Errorf("configured queues: %v", all)
	}
	kittest.WantClosed(t, b)
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("broker process %d still exists after Close (kill -0: %v)", pid, err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after Close", port)
	}
	if !strings.Contains(logs.String(), "listening") {
		t.Errorf("Stderr did not get the broker log: %q", logs.String())
	}
}

func TestCloseReportsABrokerThatDied(t *testing.T) {
	t.Parallel()
	requireNode(t)
	b, err := fakeservicebus.Start(testCtx(t, 20*time.Second), fakeservicebus.Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := syscall.Kill(b.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the broker was killed")
	}
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Close after the broker died: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 10*time.Second)

	_, err := fakeservicebus.Start(ctx, fakeservicebus.Options{NodePath: "no-such-node-binary-for-devstack"})
	if !errors.Is(err, fakeservicebus.ErrNodeNotFound) {
		t.Errorf("missing node: got %v", err)
	}

	requireNode(t)
	empty := t.TempDir()
	if _, err := fakeservicebus.Start(ctx, fakeservicebus.Options{BrokerDir: empty}); err == nil || !strings.Contains(err.Error(), "broker.js") {
		t.Errorf("missing broker.js: got %v", err)
	}
	script, err := os.ReadFile(filepath.Join(fakeservicebus.Project.DefaultDir(), "broker.js"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, "broker.js"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = fakeservicebus.Start(ctx, fakeservicebus.Options{BrokerDir: empty})
	if !errors.Is(err, fakeservicebus.ErrDependenciesMissing) || !strings.Contains(err.Error(), "npm ci --prefix devstack/fakeservicebus/broker") {
		t.Errorf("missing node_modules: got %v", err)
	}
	if _, err := fakeservicebus.Start(ctx, fakeservicebus.Options{Queues: []fakeservicebus.QueueConfig{{Name: ""}}}); err == nil {
		t.Error("empty queue name accepted")
	}
}
