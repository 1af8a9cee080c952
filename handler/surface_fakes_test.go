package handler

// Fakes and helpers for the tests that drive the handler only through its
// HTTP surface (New(...).ServeHTTP), as the Functions host does.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const (
	// secretValue is the token value the stub service issues; no reply,
	// log line or published outcome may carry it unless the contract says so.
	secretValue = "dapi-5ecret-value-0f3a"
	// secretCause is in every error's Err: for logs only, never in a reply.
	secretCause = "cause-for-the-log-only"
	surfaceWS   = "/subscriptions/6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/dbw"
)

// stubService is a tokens service whose answers the test chooses, one
// func per method; a method the test did not expect fails it. It records
// what each call was given.
type stubService struct {
	t      *testing.T
	create func(tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error)
	revoke func(tokens.RevokeRequest) (tokens.RevokeResult, error)
	list   func(tokens.WorkspaceID) ([]tokens.TokenSummary, error)
	inv    func(tokens.InventoryQuery) (tokens.InventoryPage, error)
	ensure func(tokens.WorkspaceID, tokens.EnsureOptions) (tokens.CreateResult, error)
	rotate func(tokens.RotateOptions) ([]tokens.Outcome, error)
	sweep  func(tokens.SweepOptions) ([]tokens.Outcome, error)

	mu        sync.Mutex
	callers   []tokens.Caller
	creates   []tokens.CreateRequest
	createOps []tokens.CreateOptions
	revokes   []tokens.RevokeRequest
	ensures   []tokens.EnsureOptions
	withdrawn []tokens.Record
	budgeted  []bool // whether each call's context had a deadline
}

// unexpected fails the test for a call it did not stub, and answers it
// with an error.
func unexpected[R any](s *stubService, method string) (R, error) {
	s.t.Error("unexpected " + method)
	var zero R
	return zero, errors.New("unexpected")
}

// record notes a call's caller and whether its context had a deadline,
// and runs note (if any) to keep what else the method records of it, all
// under one lock, so the lists stay in step.
func (s *stubService) record(ctx context.Context, by tokens.Caller, note func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callers = append(s.callers, by)
	_, ok := ctx.Deadline()
	s.budgeted = append(s.budgeted, ok)
	if note != nil {
		note()
	}
}

func (s *stubService) Create(ctx context.Context, by tokens.Caller, req tokens.CreateRequest, o tokens.CreateOptions) (tokens.CreateResult, error) {
	s.record(ctx, by, func() { s.creates, s.createOps = append(s.creates, req), append(s.createOps, o) })
	if s.create == nil {
		return unexpected[tokens.CreateResult](s, "Create")
	}
	return s.create(req, o)
}

func (s *stubService) Revoke(ctx context.Context, by tokens.Caller, req tokens.RevokeRequest) (tokens.RevokeResult, error) {
	s.record(ctx, by, func() { s.revokes = append(s.revokes, req) })
	if s.revoke == nil {
		return unexpected[tokens.RevokeResult](s, "Revoke")
	}
	return s.revoke(req)
}

func (s *stubService) List(ctx context.Context, by tokens.Caller, id tokens.WorkspaceID) ([]tokens.TokenSummary, error) {
	s.record(ctx, by, nil)
	if s.list == nil {
		return unexpected[[]tokens.TokenSummary](s, "List")
	}
	return s.list(id)
}

func (s *stubService) Inventory(ctx context.Context, by tokens.Caller, q tokens.InventoryQuery) (tokens.InventoryPage, error) {
	s.record(ctx, by, nil)
	if s.inv == nil {
		return unexpected[tokens.InventoryPage](s, "Inventory")
	}
	return s.inv(q)
}

func (s *stubService) EnsureLive(ctx context.Context, by tokens.Caller, id tokens.WorkspaceID, o tokens.EnsureOptions) (tokens.CreateResult, error) {
	s.record(ctx, by, func() { s.ensures = append(s.ensures, o) })
	if s.ensure == nil {
		return unexpected[tokens.CreateResult](s, "EnsureLive")
	}
	return s.ensure(id, o)
}

func (s *stubService) Rotate(ctx context.Context, o tokens.RotateOptions) ([]tokens.Outcome, error) {
	s.record(ctx, o.Queue, nil)
	if s.rotate == nil {
		return unexpected[[]tokens.Outcome](s, "Rotate")
	}
	return s.rotate(o)
}

func (s *stubService) Sweep(ctx context.Context, o tokens.SweepOptions) ([]tokens.Outcome, error) {
	s.record(ctx, nil, nil)
	if s.sweep == nil {
		return unexpected[[]tokens.Outcome](s, "Sweep")
	}
	return s.sweep(o)
}

func (s *stubService) Withdraw(_ context.Context, rec tokens.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withdrawn = append(s.withdrawn, rec)
	return nil
}

// createAnswering is a stubService whose Create answers res, err; any
// other call fails the test.
func createAnswering(res tokens.CreateResult, err error) *stubService {
	return &stubService{create: func(tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error) { return res, err }}
}

func (s *stubService) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.callers)
}

// scheduledMessage is one Schedule call.
type scheduledMessage struct {
	Queue, MessageID string
	Body             string
	Props            map[string]any
	At               time.Time
}

// recPublisher records what the handler publishes and schedules; each can
// be made to fail.
type recPublisher struct {
	mu          sync.Mutex
	published   []tokens.Outcome
	scheduled   []scheduledMessage
	publishErr  error
	scheduleErr error
}

func (p *recPublisher) Publish(_ context.Context, o tokens.Outcome) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.publishErr != nil {
		return p.publishErr
	}
	p.published = append(p.published, o)
	return nil
}

func (p *recPublisher) Schedule(_ context.Context, queue string, body []byte, id string, props map[string]any, at time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.scheduleErr != nil {
		return p.scheduleErr
	}
	p.scheduled = append(p.scheduled, scheduledMessage{Queue: queue, MessageID: id, Body: string(body), Props: props, At: at})
	return nil
}

func (p *recPublisher) outcomes() []tokens.Outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]tokens.Outcome(nil), p.published...)
}

// rig is one handler with its fakes and its log.
type rig struct {
	t   *testing.T
	h   http.Handler
	svc *stubService
	pub *recPublisher
	log *kit.Buffer
}

var testNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// baseOptions are the settings of a typical deployment: inline delivery,
// results published, a 10-delivery queue.
func baseOptions() Options {
	return Options{Limits: tokens.Limits{DefaultLifetime: 24 * time.Hour, MaxLifetime: 90 * 24 * time.Hour},
		RetryBudget: 30 * time.Second, RotateBefore: 7 * 24 * time.Hour, MaxDeliveryCount: 10,
		TokenRequestsQueue: "token-requests", WorkspaceEventsQueue: "workspace-events",
		NotReadyAttempts: 10, NotReadyBackoff: 30 * time.Second, Now: func() time.Time { return testNow }}
}

func newRig(t *testing.T, svc *stubService, opts Options) *rig {
	t.Helper()
	svc.t = t
	r := &rig{t: t, svc: svc, pub: &recPublisher{}, log: &kit.Buffer{}}
	r.h = New(slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})), svc, r.pub, opts)
	t.Cleanup(func() {
		if s := r.log.String(); strings.Contains(s, secretValue) {
			t.Errorf("the log holds the token value:\n%s", s)
		}
	})
	return r
}

// do sends one request and checks what every answer must be: JSON, with
// neither the token value (unless allowed) nor an error's cause in it.
func (r *rig) do(method, target string, body []byte, header http.Header, valueAllowed bool) *httptest.ResponseRecorder {
	r.t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		r.t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	if method != http.MethodHead && !json.Valid(rec.Body.Bytes()) {
		r.t.Errorf("%s %s: the body is not JSON: %s", method, target, rec.Body)
	}
	if s := rec.Body.String(); strings.Contains(s, secretCause) || (!valueAllowed && strings.Contains(s, secretValue)) {
		r.t.Errorf("%s %s: the reply shows an error's cause or the token value: %s", method, target, s)
	}
	return rec
}

// invoke posts a host envelope to a queue or timer function and returns
// the status and the reply's Logs.
func (r *rig) invoke(path string, envelope []byte) (int, []string) {
	r.t.Helper()
	rec := r.do(http.MethodPost, path, envelope, nil, false)
	var reply struct {
		Outputs map[string]any
		Logs    []string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || reply.Outputs == nil {
		r.t.Errorf("POST %s: not the host's reply object: %s", path, rec.Body)
	}
	return rec.Code, reply.Logs
}

// checkPublished checks that the handler published exactly want, in order.
func (r *rig) checkPublished(want []tokens.Outcome, opts ...cmp.Option) {
	r.t.Helper()
	if d := cmp.Diff(want, r.pub.outcomes(), opts...); d != "" {
		r.t.Errorf("published (-want +got):\n%s", d)
	}
}

// envelope builds the host's envelope around a queue message body, as
// the host does: the body encoded twice, MessageId m1, on the given
// delivery (any count, the tenth too).
func envelope(t *testing.T, body string, delivery int) []byte {
	t.Helper()
	once, _ := json.Marshal(body)
	twice, _ := json.Marshal(string(once))
	msgID, _ := json.Marshal(`"m1"`)
	b, _ := json.Marshal(map[string]any{
		"Data":     map[string]json.RawMessage{"message": twice},
		"Metadata": map[string]any{"MessageId": json.RawMessage(msgID), "DeliveryCount": json.RawMessage(`"` + strconv.Itoa(delivery) + `"`)},
	})
	return b
}

// envelopeWithProperties is envelope() with application properties set by
// the sender, as the host passes them in Metadata.
func envelopeWithProperties(t *testing.T, body string, props string) []byte {
	t.Helper()
	var inv map[string]any
	if err := json.Unmarshal(envelope(t, body, 1), &inv); err != nil {
		t.Fatal(err)
	}
	inv["Metadata"].(map[string]any)["ApplicationProperties"] = json.RawMessage(props)
	b, _ := json.Marshal(inv)
	return b
}

// apiError decodes the contract's error body.
type apiError struct {
	Error struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Target  string          `json:"target,omitempty"`
		Details []tokens.Detail `json:"details,omitempty"`
	} `json:"error"`
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) apiError {
	t.Helper()
	var e apiError
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Code == "" {
		t.Errorf("not the contract's error body (%v)", err)
	}
	return e
}

func workspaceID(t *testing.T) tokens.WorkspaceID {
	t.Helper()
	id, err := tokens.ParseWorkspaceID(surfaceWS)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// issued is a create result for the stub to answer with.
func issued(t *testing.T, isNew bool, value string) tokens.CreateResult {
	created := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	rec := tokens.Record{RequestID: "r1", Workspace: workspaceID(t), WorkspaceURL: "https://adb-1.2.azuredatabricks.net", TokenID: "tok-1",
		Comment: "nightly ETL", CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour)}
	if value != "" {
		rec.Value = tokens.NewSecret(value)
	}
	return tokens.CreateResult{Record: rec, Issued: isNew}
}

// secretsByValue lets cmp compare records, whose Secret hides its value.
var secretsByValue = cmp.Comparer(func(a, b tokens.Secret) bool { return a.Reveal() == b.Reveal() })

// failWith is a service error whose cause must stay in the log.
func failWith(code tokens.Code, msg string, retryAfter time.Duration) *tokens.Error {
	return &tokens.Error{Code: code, Message: msg, RetryAfter: retryAfter, Err: errors.New(secretCause)}
}
