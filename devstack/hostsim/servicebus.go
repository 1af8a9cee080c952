package hostsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// sbFunction is a running serviceBusTrigger function.
type sbFunction struct {
	fn     *function
	entity string // "queue" or "topic/Subscriptions/sub", for messages
	recv   *azservicebus.Receiver
	peeker *azservicebus.Receiver // a second receiver only for WaitIdle's peeks
	slots  chan struct{}          // MaxConcurrentCalls
	peekMu sync.Mutex
}

// checkServiceBusFunctions rejects trigger settings the simulator cannot honour.
func (h *Host) checkServiceBusFunctions() error {
	var errs []error
	for _, fn := range h.functions {
		if fn.Kind != TriggerServiceBus {
			continue
		}
		t := fn.Trigger
		if t.QueueName == "" && (t.TopicName == "" || t.SubscriptionName == "") {
			errs = append(errs, fmt.Errorf("function %s: serviceBusTrigger needs queueName or topicName and subscriptionName", fn.Name))
		}
		if strings.EqualFold(t.Cardinality, "many") {
			errs = append(errs, fmt.Errorf("function %s: cardinality many is not supported by the simulator", fn.Name))
		}
		if t.IsSessions {
			errs = append(errs, fmt.Errorf("function %s: session-enabled triggers are not supported by the simulator", fn.Name))
		}
	}
	return errors.Join(errs...)
}

func (h *Host) serviceBusConnectionString(fn *function) string {
	if h.opts.ServiceBusConnectionString != "" {
		return h.opts.ServiceBusConnectionString
	}
	name := fn.Trigger.Connection
	if name == "" {
		name = "AzureWebJobsServiceBus"
	}
	for _, k := range []string{name, "ConnectionStrings:" + name, "CUSTOMCONNSTR_" + name} {
		if v, ok := h.settings(k); ok && strings.Contains(v, "Endpoint=") {
			return v
		}
	}
	return ""
}

func (h *Host) startServiceBus(ctx context.Context) error {
	var sbFns []*function
	for _, fn := range h.functions {
		if fn.Kind == TriggerServiceBus {
			sbFns = append(sbFns, fn)
		}
	}
	if len(sbFns) == 0 {
		return nil
	}
	connStr := ""
	for _, fn := range sbFns {
		cs := h.serviceBusConnectionString(fn)
		if cs == "" {
			h.logf("hostsim: no Service Bus connection string; function %s is not started", fn.Name)
			continue
		}
		if connStr != "" && cs != connStr {
			return fmt.Errorf("function %s: only one Service Bus namespace is supported", fn.Name)
		}
		connStr = cs
	}
	if connStr == "" {
		return nil
	}
	if err := dialNamespace(ctx, connStr); err != nil {
		return err
	}
	client, err := azservicebus.NewClientFromConnectionString(connStr, nil)
	if err != nil {
		return fmt.Errorf("service bus client: %w", err)
	}
	h.sbClient = client
	loopCtx, cancel := context.WithCancel(context.Background())
	h.recvCancel = cancel
	for _, fn := range sbFns {
		if h.serviceBusConnectionString(fn) == "" {
			continue
		}
		sf := &sbFunction{fn: fn, slots: make(chan struct{}, h.maxCalls)}
		opts := &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModePeekLock}
		if fn.Trigger.QueueName != "" {
			sf.entity = fn.Trigger.QueueName
			sf.recv, err = client.NewReceiverForQueue(fn.Trigger.QueueName, opts)
			if err == nil {
				sf.peeker, err = client.NewReceiverForQueue(fn.Trigger.QueueName, opts)
			}
		} else {
			sf.entity = fn.Trigger.TopicName + "/Subscriptions/" + fn.Trigger.SubscriptionName
			sf.recv, err = client.NewReceiverForSubscription(fn.Trigger.TopicName, fn.Trigger.SubscriptionName, opts)
			if err == nil {
				sf.peeker, err = client.NewReceiverForSubscription(fn.Trigger.TopicName, fn.Trigger.SubscriptionName, opts)
			}
		}
		if err != nil {
			return fmt.Errorf("function %s: receiver for %s: %w", fn.Name, sf.entity, err)
		}
		h.sbFuncs = append(h.sbFuncs, sf)
		// Fail fast when the namespace or entity is unreachable.
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = sf.pending(pctx)
		pcancel()
		if err != nil {
			return fmt.Errorf("function %s: cannot reach %s: %w", fn.Name, sf.entity, err)
		}
		h.recvWG.Add(1)
		go h.receiveLoop(loopCtx, sf)
		h.logf("hostsim: function %s listening on %s (maxConcurrentCalls %d)", fn.Name, sf.entity, h.maxCalls)
	}
	return nil
}

// dialNamespace checks that the connection string's endpoint accepts TCP
// connections, so that Start fails with the network error rather than after
// the SDK's retries.
func dialNamespace(ctx context.Context, connStr string) error {
	var endpoint string
	emulator := false
	for _, part := range strings.Split(connStr, ";") {
		k, v, _ := strings.Cut(part, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "endpoint":
			endpoint = strings.TrimSpace(v)
		case "usedevelopmentemulator":
			emulator = strings.EqualFold(strings.TrimSpace(v), "true")
		}
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("service bus connection string: bad Endpoint %q", endpoint)
	}
	port := u.Port()
	if port == "" {
		port = "5671"
		if emulator {
			port = "5672"
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return fmt.Errorf("service bus namespace unreachable: %w", err)
	}
	return conn.Close()
}

// receiveLoop keeps up to maxConcurrentCalls messages in flight.
func (h *Host) receiveLoop(ctx context.Context, sf *sbFunction) {
	defer h.recvWG.Done()
	backoff := 100 * time.Millisecond
	for {
		select {
		case sf.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
	fill:
		for free < cap(sf.slots) {
			select {
			case sf.slots <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		msgs, err := sf.recv.ReceiveMessages(ctx, free, nil)
		for i := len(msgs); i < free; i++ {
			<-sf.slots
		}
		for _, m := range msgs {
			h.beginInvocation()
			h.invWG.Add(1)
			go h.processMessage(sf, m)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.logf("hostsim: receive from %s: %v (retrying in %s)", sf.entity, err, backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// processMessage invokes the function for one message and settles it:
// Complete on success, Abandon on any failure.
func (h *Host) processMessage(sf *sbFunction, m *azservicebus.ReceivedMessage) {
	defer h.invWG.Done()
	defer func() { <-sf.slots }()
	fn := sf.fn
	now := time.Now()
	msg := MessageFromReceived(m)
	inv := Invocation{
		ID: kit.GUID(), Function: fn.Name, Trigger: TriggerServiceBus, Start: now,
		MessageID: msg.MessageID, DeliveryCount: msg.DeliveryCount,
	}
	msg.RandGUID = kit.GUID()
	payload, err := buildServiceBusEnvelope(msg, fn.Trigger.Name, fn.Name, now, strings.EqualFold(fn.Trigger.DataType, "binary"))
	inv.Request = payload
	h.logf("hostsim: Executing 'Functions.%s' (Reason='New ServiceBus message detected on '%s'.', Id=%s, MessageId=%s, DeliveryCount=%d)",
		fn.Name, sf.entity, inv.ID, msg.MessageID, msg.DeliveryCount)

	if err == nil {
		renewCtx, stopRenew := context.WithCancel(context.Background())
		renewDone := make(chan struct{})
		go h.renewLock(renewCtx, sf, m, now, renewDone)
		err = h.runInvocation(context.Background(), &inv, func(ctx context.Context, w *worker) error {
			return h.postEnvelope(ctx, w, fn, &inv, payload)
		})
		stopRenew()
		<-renewDone
	}
	inv.Err = err

	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err == nil {
		inv.Settlement = SettlementComplete
		if serr := sf.recv.CompleteMessage(sctx, m, nil); serr != nil {
			inv.Err = fmt.Errorf("complete message %s: %w", msg.MessageID, serr)
		}
	} else {
		inv.Settlement = SettlementAbandon
		if serr := sf.recv.AbandonMessage(sctx, m, nil); serr != nil {
			inv.Err = errors.Join(err, fmt.Errorf("abandon message %s: %w", msg.MessageID, serr))
		}
	}
	inv.Duration = time.Since(inv.Start)
	h.endInvocation(inv)
}

// renewLock renews the message lock at half its remaining time until done,
// for at most maxAutoLockRenewalDuration (Service Bus extension behaviour).
func (h *Host) renewLock(ctx context.Context, sf *sbFunction, m *azservicebus.ReceivedMessage, start time.Time, done chan<- struct{}) {
	defer close(done)
	if h.lockRenewal <= 0 {
		return
	}
	for {
		if m.LockedUntil == nil {
			return
		}
		wait := max(time.Until(*m.LockedUntil)/2, 50*time.Millisecond)
		if time.Since(start)+wait > h.lockRenewal {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := sf.recv.RenewMessageLock(ctx, m, nil); err != nil {
			if ctx.Err() == nil {
				h.logf("hostsim: renew lock of message %s: %v", m.MessageID, err)
			}
			return
		}
	}
}

// pending reports whether the entity still has a message to deliver.
func (sf *sbFunction) pending(ctx context.Context) (bool, error) {
	sf.peekMu.Lock()
	defer sf.peekMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	from := int64(0)
	msgs, err := sf.peeker.PeekMessages(ctx, 1, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
	if err != nil {
		return false, err
	}
	return len(msgs) > 0, nil
}
