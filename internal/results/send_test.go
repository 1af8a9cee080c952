package results

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const (
	wsText    = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/ws1"
	value     = "dapi-secret-value-4f1e"
	published = "2026-11-28T10:00:00.5Z"
)

// recorder is a fake Service Bus: one sender per queue, each recording
// what it was given, failing when told to.
type recorder struct {
	mu      sync.Mutex
	sent    map[string][]*azservicebus.Message // by queue
	made    []string                           // queues a sender was made for, in order
	closed  []string
	sendErr error
	makeErr error
	client  int // Close calls on the client
}

type recSender struct {
	r     *recorder
	queue string
}

func (s recSender) SendMessage(_ context.Context, m *azservicebus.Message, _ *azservicebus.SendMessageOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.r.sendErr != nil {
		return s.r.sendErr
	}
	s.r.sent[s.queue] = append(s.r.sent[s.queue], m)
	return nil
}

func (s recSender) Close(context.Context) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.closed = append(s.r.closed, s.queue)
	return nil
}

func newRecorded(t *testing.T, includeValue bool) (*Publisher, *recorder) {
	t.Helper()
	r := &recorder{sent: map[string][]*azservicebus.Message{}}
	p := newPublisher(Options{Queue: "token-results", IncludeTokenValue: includeValue,
		Now: func() time.Time { return time.Date(2026, 11, 28, 11, 0, 0, 500_000_000, time.FixedZone("CET", 3600)) }},
		func(queue string) (sender, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.makeErr != nil {
				return nil, r.makeErr
			}
			r.made = append(r.made, queue)
			return recSender{r: r, queue: queue}, nil
		},
		func(context.Context) error { r.client++; return nil })
	return p, r
}

func workspace(t *testing.T) tokens.WorkspaceID {
	t.Helper()
	ws, err := tokens.ParseWorkspaceID(wsText)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func record(t *testing.T, withValue bool) *tokens.Record {
	created := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	rec := &tokens.Record{RequestID: "r1", Workspace: workspace(t), WorkspaceURL: "https://adb-1.2.azuredatabricks.net",
		TokenID: "t1", Comment: "nightly ETL", CreatedAt: created, ExpiresAt: created.Add(time.Hour)}
	if withValue {
		rec.Value = tokens.NewSecret(value)
	}
	return rec
}

// sentMessage is what a consumer of the results queue reads.
type sentMessage struct {
	MessageID, ContentType, Subject string
	CorrelationID                   *string
	Body                            map[string]any
}

func read(t *testing.T, m *azservicebus.Message) sentMessage {
	t.Helper()
	got := sentMessage{MessageID: deref(m.MessageID), ContentType: deref(m.ContentType), Subject: deref(m.Subject), CorrelationID: m.CorrelationID}
	if err := json.Unmarshal(m.Body, &got.Body); err != nil {
		t.Fatalf("body %s: %v", m.Body, err)
	}
	if m.ScheduledEnqueueTime != nil || m.ApplicationProperties != nil {
		t.Errorf("a result was scheduled or carries properties: %v %v", m.ScheduledEnqueueTime, m.ApplicationProperties)
	}
	return got
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestPublish: each outcome type goes out as one CloudEvent with the
// contract's envelope, Service Bus properties and data.
func TestPublish(t *testing.T) {
	t.Parallel()
	envelope := func(typ, id, subject string, data map[string]any) map[string]any {
		ev := map[string]any{"specversion": "1.0", "type": typ, "source": wsText, "id": id, "time": published,
			"datacontenttype": "application/json", "data": data}
		if subject != "" {
			ev["subject"] = subject
		}
		return ev
	}
	recordData := map[string]any{"requestId": "r1", "workspaceResourceId": wsText, "workspaceUrl": "https://adb-1.2.azuredatabricks.net",
		"tokenId": "t1", "comment": "nightly ETL", "createdAt": "2026-11-28T10:00:00Z", "expiresAt": "2026-11-28T11:00:00Z"}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	created := tokens.Outcome{Type: tokens.Created, RequestID: "r1", Workspace: wsText, TokenID: "t1", CorrelationID: "msg-1", Record: record(t, true)}
	const idFromOutcome = "set from EventID below"
	tests := []struct {
		name         string
		includeValue bool
		o            tokens.Outcome
		want         sentMessage
	}{
		{"created, value withheld", false, created,
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Created", CorrelationID: ptr("msg-1"),
				Body: envelope("Databricks.Token.Created", idFromOutcome, "t1", recordData)}},
		{"created, value allowed", true, created,
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Created", CorrelationID: ptr("msg-1"),
				Body: envelope("Databricks.Token.Created", idFromOutcome, "t1", with(recordData, "tokenValue", value))}},
		{"created with Key Vault delivery, value allowed", true,
			tokens.Outcome{Type: tokens.Created, RequestID: "r1", Workspace: wsText, TokenID: "t1", RequestedBy: "logic-app",
				Record: func() *tokens.Record {
					r := record(t, false)
					r.SecretURI = "https://v.vault.azure.net/secrets/s/0123"
					r.ExpiresAt = time.Time{}
					return r
				}()},
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Created",
				Body: envelope("Databricks.Token.Created", idFromOutcome, "t1",
					with(recordData, "secretUri", "https://v.vault.azure.net/secrets/s/0123", "expiresAt", nil, "requestedBy", "logic-app"))}},
		{"rotated", true,
			tokens.Outcome{Type: tokens.Rotated, RequestID: "rot-1", Workspace: wsText, TokenID: "t1", Record: record(t, true)},
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Rotated",
				Body: envelope("Databricks.Token.Rotated", idFromOutcome, "t1", with(recordData, "tokenValue", value))}},
		{"revoked", false,
			tokens.Outcome{Type: tokens.Revoked, RequestID: "r2", Workspace: wsText, TokenID: "t1", CorrelationID: "req-http-2", RequestedBy: "automation",
				Revoke: &tokens.RevokeResult{RequestID: "r2", Workspace: workspace(t), TokenID: "t1", Status: tokens.StatusNotFound}},
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Revoked", CorrelationID: ptr("req-http-2"),
				Body: envelope("Databricks.Token.Revoked", idFromOutcome, "t1",
					map[string]any{"tokenId": "t1", "status": "notFound", "requestId": "r2", "workspaceResourceId": wsText, "requestedBy": "automation"})}},
		{"failed", true,
			tokens.Outcome{Type: tokens.Failed, RequestID: "r3", Workspace: wsText, CorrelationID: "msg-3", RequestedBy: "automation",
				Err: &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the request is invalid", Target: "lifetimeSeconds",
					Details: []tokens.Detail{{Code: "InvalidField", Target: "lifetimeSeconds", Message: "lifetimeSeconds must be at least 1"}},
					Err:     errors.New("cause for the log only")}},
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Failed", CorrelationID: ptr("msg-3"),
				Body: envelope("Databricks.Token.Failed", idFromOutcome, "",
					map[string]any{"requestId": "r3", "workspaceResourceId": wsText, "requestedBy": "automation",
						"error": map[string]any{"code": "InvalidRequest", "message": "the request is invalid", "target": "lifetimeSeconds",
							"details": []any{map[string]any{"code": "InvalidField", "target": "lifetimeSeconds", "message": "lifetimeSeconds must be at least 1"}}}})}},
		{"failed before the workspace was known", false,
			tokens.Outcome{Type: tokens.Failed, RequestID: "r4", Err: tokens.Errorf(tokens.CodeUpstreamUnavailable, "try later")},
			sentMessage{MessageID: idFromOutcome, ContentType: ContentType, Subject: "Databricks.Token.Failed",
				Body: func() map[string]any {
					ev := envelope("Databricks.Token.Failed", idFromOutcome, "",
						map[string]any{"requestId": "r4", "error": map[string]any{"code": "UpstreamUnavailable", "message": "try later"}})
					ev["source"] = "/"
					return ev
				}()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, r := newRecorded(t, tt.includeValue)
			if err := p.Publish(t.Context(), tt.o); err != nil {
				t.Fatal(err)
			}
			if len(r.sent["token-results"]) != 1 || len(r.sent) != 1 {
				t.Fatalf("sent %v; want one message on token-results", r.sent)
			}
			msg := r.sent["token-results"][0]
			// The id is the outcome's (TestEventIDs); here, that it is both
			// the MessageId and the event's id.
			tt.want.MessageID, tt.want.Body["id"] = EventID(tt.o), EventID(tt.o)
			if d := cmp.Diff(tt.want, read(t, msg)); d != "" {
				t.Errorf("message (-want +got):\n%s", d)
			}
			if has := strings.Contains(string(msg.Body), value); has != (tt.want.Body["data"].(map[string]any)["tokenValue"] != nil) {
				t.Errorf("the token value is in the body: %v", has)
			}
			if strings.Contains(string(msg.Body), "cause for the log only") {
				t.Error("the error's cause went into the result")
			}
		})
	}
}

// TestEventIDs: the id is a UUID-shaped digest of request id and type (and,
// for Created, the token id), so a republished outcome is a duplicate to
// Service Bus and a replacement token is not.
func TestEventIDs(t *testing.T) {
	t.Parallel()
	p, r := newRecorded(t, false)
	created := tokens.Outcome{Type: tokens.Created, RequestID: "r1", Workspace: wsText, TokenID: "t1", Record: record(t, false)}
	replacement := created
	replacement.TokenID, replacement.Record = "t2", record(t, false)
	replacement.Record.TokenID = "t2"
	revoked := tokens.Outcome{Type: tokens.Revoked, RequestID: "r1", Workspace: wsText, TokenID: "t1", Revoke: &tokens.RevokeResult{TokenID: "t1", Status: tokens.StatusRevoked}}
	revokedOther := revoked
	revokedOther.TokenID, revokedOther.Revoke = "t9", &tokens.RevokeResult{TokenID: "t9", Status: tokens.StatusRevoked}
	for _, o := range []tokens.Outcome{created, created, replacement, revoked, revokedOther} {
		if err := p.Publish(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, m := range r.sent["token-results"] {
		ids = append(ids, *m.MessageID)
	}
	if ids[0] != ids[1] {
		t.Errorf("the same Created outcome got two MessageIds: %s %s", ids[0], ids[1])
	}
	if ids[0] == ids[2] {
		t.Errorf("a replacement token's Created shares the first one's MessageId %s", ids[0])
	}
	if ids[3] != ids[4] {
		t.Errorf("Revoked ids depend on more than request id and type: %s %s", ids[3], ids[4])
	}
	if ids[0] == ids[3] {
		t.Error("Created and Revoked of one request share an id")
	}
	for _, id := range ids {
		if len(id) != 36 || strings.Count(id, "-") != 4 {
			t.Errorf("id %q is not UUID-shaped", id)
		}
	}
	// Failed: the same failure republished is one result, a different
	// lasting failure of the same request another; transient ones share one.
	failed := func(code tokens.Code, tokenID string) string {
		return EventID(tokens.Outcome{Type: tokens.Failed, RequestID: "r1", TokenID: tokenID, Err: tokens.Errorf(code, "x")})
	}
	for _, tt := range []struct {
		name string
		a, b string
		same bool
	}{
		{"the same failure, another token id", failed(tokens.CodeUpstreamError, "t1"), failed(tokens.CodeUpstreamError, ""), true},
		{"two lasting failures", failed(tokens.CodeUpstreamError, ""), failed(tokens.CodeWorkspaceNotFound, ""), false},
		{"transient, then lasting", failed(tokens.CodeUpstreamUnavailable, ""), failed(tokens.CodeUpstreamError, ""), false},
		{"Expiring names its token", EventID(tokens.Outcome{Type: tokens.Expiring, RequestID: "r1", TokenID: "t1"}),
			EventID(tokens.Outcome{Type: tokens.Expiring, RequestID: "r1", TokenID: "t2"}), false},
	} {
		if (tt.a == tt.b) != tt.same {
			t.Errorf("%s: ids %s and %s; same = %v, want %v", tt.name, tt.a, tt.b, tt.a == tt.b, tt.same)
		}
	}
	if made := r.made; len(made) != 1 {
		t.Errorf("senders made for %v; want one, reused", made)
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	p, r := newRecorded(t, true)
	at := time.Date(2026, 11, 28, 10, 5, 0, 0, time.UTC)
	body := []byte(`{"action":"create","workspaceResourceId":"` + wsText + `"}`)
	props := map[string]any{"notReadyAttempt": int64(2), "firstSeen": "2026-11-28T10:00:00Z"}
	if err := p.Schedule(t.Context(), "token-requests", body, "msg-1-retry-2", props, at); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(t.Context(), tokens.Outcome{Type: tokens.Failed, RequestID: "r", Err: tokens.Errorf(tokens.CodeInternal, "x")}); err != nil {
		t.Fatal(err)
	}
	want := &azservicebus.Message{Body: body, ContentType: ptr("application/json"), MessageID: ptr("msg-1-retry-2"),
		ApplicationProperties: props, ScheduledEnqueueTime: &at}
	if d := cmp.Diff([]*azservicebus.Message{want}, r.sent["token-requests"]); d != "" {
		t.Errorf("scheduled (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"token-requests", "token-results"}, r.made); d != "" {
		t.Errorf("one sender per queue (-want +got):\n%s", d)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.closed) != 2 || r.client != 1 {
		t.Errorf("Close closed senders %v and the client %d times", r.closed, r.client)
	}
}

// TestSendErrors: a failed send is wrapped with what was being sent, keeps
// the SDK's error for errors.Is, and carries no secret.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	cause := &azservicebus.Error{Code: azservicebus.CodeUnauthorizedAccess}
	for _, tt := range []struct {
		name      string
		broken    func(*recorder)
		call      func(*Publisher) error
		wantStart string
	}{
		{"publish", func(r *recorder) { r.sendErr = cause }, func(p *Publisher) error {
			return p.Publish(t.Context(), tokens.Outcome{Type: tokens.Created, RequestID: "r1", TokenID: "t1", Record: record(t, true)})
		}, "results: send Databricks.Token.Created: "},
		{"schedule", func(r *recorder) { r.sendErr = cause }, func(p *Publisher) error {
			return p.Schedule(t.Context(), "token-requests", []byte("{}"), "m", nil, time.Now())
		}, "results: schedule on token-requests: "},
		{"no sender", func(r *recorder) { r.makeErr = cause }, func(p *Publisher) error {
			return p.Publish(t.Context(), tokens.Outcome{Type: tokens.Failed, RequestID: "r1", Err: tokens.Errorf(tokens.CodeInternal, "x")})
		}, "results: sender for token-results: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, r := newRecorded(t, true)
			tt.broken(r)
			err := tt.call(p)
			if !errors.Is(err, cause) || !strings.HasPrefix(err.Error(), tt.wantStart) {
				t.Errorf("error %q; want it to start %q and wrap the SDK's", err, tt.wantStart)
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("the error carries the token value: %v", err)
			}
		})
	}
}

// TestNewHidesTheConnectionString: the SDK's complaint about a connection
// string can quote it; New says only that the settings are unusable.
func TestNewHidesTheConnectionString(t *testing.T) {
	t.Parallel()
	const key = "c2VjcmV0LWtleS12YWx1ZQ=="
	for _, cs := range []string{
		"Endpoint=sb://bus.servicebus.windows.net/;SharedAccessKey=" + key,           // no key name
		"SharedAccessKeyName=send;SharedAccessKey=" + key,                            // no endpoint
		"Endpoint=://bad url;SharedAccessKeyName=send;SharedAccessKey=" + key + ";x", // not a URL
	} {
		_, err := New(Options{ConnectionString: cs, Queue: "token-results"})
		if err == nil {
			t.Errorf("New accepted %q", cs)
			continue
		}
		if strings.Contains(err.Error(), key) || err.Error() != "results: the Service Bus connection settings are not usable" {
			t.Errorf("New(%q) = %q", cs, err)
		}
	}
	// A usable one connects lazily: nothing to close but the client.
	p, err := New(Options{ConnectionString: "Endpoint=sb://bus.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + key, Queue: "token-results"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Errorf("Close before any send: %v", err)
	}
	if _, err := New(Options{Namespace: "bus.servicebus.windows.net", Credential: &azfake.TokenCredential{}, Queue: "token-results"}); err != nil {
		t.Errorf("New(namespace and credential): %v", err)
	}
}
