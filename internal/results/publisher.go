// Package results publishes outcomes to the results queue as CloudEvents
// 1.0 (structured JSON) with the azservicebus SDK: one long-lived client
// and sender per queue, closed on shutdown.
//
// Each message's id is deterministic, so a republished outcome (a retried
// invocation) has the same MessageId and Service Bus duplicate detection
// drops the copy. The token value travels only when the service is told it
// may (RESULTS_INCLUDE_TOKEN_VALUE with inline delivery).
package results

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/internal/api"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// ContentType of every result message.
const ContentType = "application/cloudevents+json; charset=utf-8"

// Options configure a Publisher.
type Options struct {
	// Namespace (fully qualified) with Credential, or ConnectionString.
	Namespace        string
	Credential       azcore.TokenCredential
	ConnectionString string
	Queue            string
	// IncludeTokenValue puts inline token values into Created and Rotated
	// results (RESULTS_INCLUDE_TOKEN_VALUE).
	IncludeTokenValue bool
	Now               func() time.Time
}

// Publisher sends results. It is safe for concurrent use.
type Publisher struct {
	newSender    func(queue string) (sender, error)
	closeClient  func(context.Context) error
	queue        string
	includeValue bool
	now          func() time.Time

	mu      sync.Mutex
	senders map[string]sender
}

// sender is what the publisher uses of an *azservicebus.Sender (one per
// queue, made by newSender), so tests can record the messages.
type sender interface {
	SendMessage(ctx context.Context, msg *azservicebus.Message, opts *azservicebus.SendMessageOptions) error
	Close(ctx context.Context) error
}

var _ sender = (*azservicebus.Sender)(nil)

// New returns a Publisher. The SDK connects lazily, on the first send, so
// this makes no network call.
func New(opts Options) (*Publisher, error) {
	co := &azservicebus.ClientOptions{RetryOptions: azservicebus.RetryOptions{MaxRetries: 5, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 5 * time.Second}}
	var c *azservicebus.Client
	var err error
	if opts.ConnectionString != "" {
		c, err = azservicebus.NewClientFromConnectionString(opts.ConnectionString, co)
	} else {
		c, err = azservicebus.NewClient(opts.Namespace, opts.Credential, co)
	}
	if err != nil {
		// The SDK's error can quote the connection string; say only what failed.
		return nil, errors.New("results: the Service Bus connection settings are not usable")
	}
	newSender := func(queue string) (sender, error) {
		s, err := c.NewSender(queue, nil)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return newPublisher(opts, newSender, c.Close), nil
}

func newPublisher(opts Options, newSender func(string) (sender, error), closeClient func(context.Context) error) *Publisher {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Publisher{newSender: newSender, closeClient: closeClient, queue: opts.Queue, includeValue: opts.IncludeTokenValue,
		now: opts.Now, senders: map[string]sender{}}
}

func (p *Publisher) sender(queue string) (sender, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.senders[queue]; ok {
		return s, nil
	}
	s, err := p.newSender(queue)
	if err != nil {
		return nil, fmt.Errorf("results: sender for %s: %w", queue, err)
	}
	p.senders[queue] = s
	return s, nil
}

// Event is a CloudEvents 1.0 envelope in structured JSON mode.
type Event struct {
	SpecVersion     string `json:"specversion"`
	Type            string `json:"type"`
	Source          string `json:"source"`
	Subject         string `json:"subject,omitempty"`
	ID              string `json:"id"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            any    `json:"data"`
}

// EventID is the deterministic id of an outcome: from the request id and
// the type, for Created and Expiring also the token id, and for a lasting
// Failed its error code. A redelivered request that
// found its first token republishes the same id (and is dropped as a
// duplicate); one that had to revoke an undelivered token and issue another
// publishes a new id, so the replacement is not mistaken for a copy.
func EventID(o tokens.Outcome) string {
	key := o.RequestID + "\x00" + string(o.Type)
	switch {
	case o.Type == tokens.Created || o.Type == tokens.Expiring:
		key += "\x00" + o.TokenID
	case o.Type == tokens.Failed && o.Err != nil && o.Err.Code != tokens.CodeUpstreamUnavailable:
		// A request id that fails twice for different reasons (a 503, then
		// a 502 on the retry) reports both; the same failure republished
		// is still one. Transient failures share one id: a consumer learns
		// of the first, and the eventual outcome says the rest.
		key += "\x00" + string(o.Err.Code)
	}
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Build renders an outcome as a CloudEvent.
func (p *Publisher) Build(o tokens.Outcome) Event {
	ev := Event{SpecVersion: "1.0", Type: string(o.Type), Source: o.Workspace, Subject: o.TokenID, ID: EventID(o),
		Time: p.now().UTC().Format(time.RFC3339Nano), DataContentType: "application/json"}
	if ev.Source == "" {
		ev.Source = "/"
	}
	switch {
	case o.Record != nil:
		rec := api.NewRecord(*o.Record, p.includeValue)
		rec.RequestedBy = o.RequestedBy
		ev.Data = rec
	case o.Revoke != nil:
		rv := api.NewRevoke(*o.Revoke)
		rv.RequestedBy = o.RequestedBy
		ev.Data = rv
	case o.Err != nil:
		ev.Data = api.Failure{RequestID: o.RequestID, WorkspaceResourceID: o.Workspace, TokenID: o.TokenID,
			RequestedBy: o.RequestedBy, Error: api.NewError(o.Err).Error}
	default:
		ev.Data = struct{}{}
	}
	return ev
}

// Publish sends one outcome to the results queue.
func (p *Publisher) Publish(ctx context.Context, o tokens.Outcome) error {
	ev := p.Build(o)
	body, err := api.Marshal(ev)
	if err != nil {
		return fmt.Errorf("results: encode: %w", err)
	}
	s, err := p.sender(p.queue)
	if err != nil {
		return err
	}
	msg := &azservicebus.Message{
		Body:          body,
		ContentType:   ptr(ContentType),
		MessageID:     ptr(ev.ID),
		Subject:       ptr(ev.Type),
		CorrelationID: ptr(o.CorrelationID),
	}
	if o.CorrelationID == "" {
		msg.CorrelationID = nil
	}
	if err := s.SendMessage(ctx, msg, nil); err != nil {
		return fmt.Errorf("results: send %s: %w", ev.Type, err)
	}
	return nil
}

// Schedule sends body to queue for delivery at a later time: how a message
// for a workspace that is not ready yet waits without burning deliveries.
func (p *Publisher) Schedule(ctx context.Context, queue string, body []byte, messageID string, props map[string]any, at time.Time) error {
	s, err := p.sender(queue)
	if err != nil {
		return err
	}
	msg := &azservicebus.Message{Body: body, ContentType: ptr("application/json"), MessageID: ptr(messageID),
		ApplicationProperties: props, ScheduledEnqueueTime: &at}
	if err := s.SendMessage(ctx, msg, nil); err != nil {
		return fmt.Errorf("results: schedule on %s: %w", queue, err)
	}
	return nil
}

// Close closes the senders and the client.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, s := range p.senders {
		errs = append(errs, s.Close(ctx))
	}
	errs = append(errs, p.closeClient(ctx))
	return errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }
