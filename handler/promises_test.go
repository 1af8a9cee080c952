package handler

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// fakeService answers every call with the configured error or outcome.
type fakeService struct {
	mu        sync.Mutex
	createErr error
	created   tokens.CreateResult
	rotate    func(ctx context.Context) ([]tokens.Outcome, error)
	withdrawn []tokens.Record
}

func (f *fakeService) Create(context.Context, tokens.Caller, tokens.CreateRequest, tokens.CreateOptions) (tokens.CreateResult, error) {
	return f.created, f.createErr
}

func (f *fakeService) Revoke(context.Context, tokens.Caller, tokens.RevokeRequest) (tokens.RevokeResult, error) {
	return tokens.RevokeResult{}, nil
}

func (f *fakeService) List(context.Context, tokens.Caller, tokens.WorkspaceID) ([]tokens.TokenSummary, error) {
	return nil, nil
}

func (f *fakeService) Inventory(context.Context, tokens.Caller, tokens.InventoryQuery) (tokens.InventoryPage, error) {
	return tokens.InventoryPage{}, nil
}

func (f *fakeService) EnsureLive(context.Context, tokens.Caller, tokens.WorkspaceID, tokens.EnsureOptions) (tokens.CreateResult, error) {
	return f.created, f.createErr
}

func (f *fakeService) Rotate(ctx context.Context, _ tokens.RotateOptions) ([]tokens.Outcome, error) {
	return f.rotate(ctx)
}

func (f *fakeService) Sweep(context.Context, tokens.SweepOptions) ([]tokens.Outcome, error) {
	return nil, nil
}

func (f *fakeService) Withdraw(_ context.Context, rec tokens.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.withdrawn = append(f.withdrawn, rec)
	return nil
}

// schedulingPublisher records scheduled copies; Publish succeeds unless fail.
type schedulingPublisher struct {
	fakePublisher
	scheduled []map[string]any
}

func (p *schedulingPublisher) Schedule(_ context.Context, _ string, _ []byte, _ string, props map[string]any, _ time.Time) error {
	p.scheduled = append(p.scheduled, props)
	return nil
}

const testWorkspace = "/subscriptions/6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/dbw"

// A sender can set any application property, including the service's own
// retry counter: no value of it may crash the handler, and the copy it
// schedules carries the service's count, not the sender's.
func TestForgedRetryAttemptNeverPanics(t *testing.T) {
	t.Parallel()
	notReady := &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Message: "provisioning"}
	cases := []struct {
		props       string
		wantAttempt int64 // of the scheduled copy; 0: gives up, nothing scheduled
	}{
		{`{"dtb-attempt": -3}`, 1},
		{`{"dtb-attempt": -9223372036854775808}`, 1},
		{`{"dtb-attempt": 1e300}`, 0},
		{`{"dtb-attempt": 2.5}`, 1},
		{`{"dtb-attempt": "7"}`, 1},
		{`{"dtb-attempt": {"n": 1}}`, 1},
		{`{"dtb-attempt": 3, "custom": {"nested": true}, "tag": "keep"}`, 4},
	}
	for _, c := range cases {
		pub := &schedulingPublisher{}
		h := New(slog.New(slog.DiscardHandler), &fakeService{createErr: notReady}, pub,
			Options{Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}, TokenRequestsQueue: "token-requests", WorkspaceEventsQueue: "workspace-events"})
		body := `{"action":"create","workspaceResourceId":"` + testWorkspace + `"}`
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token-requests", bytes.NewReader(envelopeWithProperties(t, body, c.props))))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", c.props, rec.Code, rec.Body)
			continue
		}
		switch {
		case c.wantAttempt == 0 && len(pub.scheduled) != 0:
			t.Errorf("%s: scheduled %v; want to give up", c.props, pub.scheduled)
		case c.wantAttempt > 0 && (len(pub.scheduled) != 1 || pub.scheduled[0][propAttempt] != c.wantAttempt):
			t.Errorf("%s: scheduled %v; want attempt %d", c.props, pub.scheduled, c.wantAttempt)
		case c.wantAttempt > 0:
			if _, copied := pub.scheduled[0]["custom"]; copied {
				t.Errorf("%s: a map property was copied to the rescheduled message", c.props)
			}
		}
	}
}

// The server's write timeout is sized for one operation; a rotation run
// can take minutes and its reply must still reach the host.
func TestRotationReplyOutlivesTheWriteTimeout(t *testing.T) {
	t.Parallel()
	svc := &fakeService{rotate: func(ctx context.Context) ([]tokens.Outcome, error) {
		time.Sleep(600 * time.Millisecond)
		return nil, nil
	}}
	h := New(slog.New(slog.DiscardHandler), svc, nil, Options{RetryBudget: time.Second,
		Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.WriteTimeout = 200 * time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/rotate-tokens", "application/json", strings.NewReader(`{"Data":{"timer":{}},"Metadata":{}}`))
	if err != nil {
		t.Fatalf("the rotation's reply was lost: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("rotation reply: %d %s %v", resp.StatusCode, b, err)
	}
}

// With inline delivery the value travels only in the result: when that
// cannot be published the token is revoked at once, on the last delivery
// too (no redelivery would do it), and the invocation fails.
func TestUndeliverableInlineTokenIsWithdrawn(t *testing.T) {
	t.Parallel()
	id, _ := tokens.ParseWorkspaceID(testWorkspace)
	for _, delivery := range []int{1, 3} {
		svc := &fakeService{created: tokens.CreateResult{Issued: true, Record: tokens.Record{Workspace: id, TokenID: "t1", Value: tokens.NewSecret("dapi-x")}}}
		pub := &fakePublisher{fail: true}
		h := New(slog.New(slog.DiscardHandler), svc, pub, Options{MaxDeliveryCount: 3,
			Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour}})
		rec := httptest.NewRecorder()
		body := `{"action":"create","workspaceResourceId":"` + testWorkspace + `"}`
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token-requests", bytes.NewReader(envelope(t, body, delivery))))
		if rec.Code != http.StatusServiceUnavailable || len(svc.withdrawn) != 1 || svc.withdrawn[0].TokenID != "t1" {
			t.Errorf("delivery %d: %d %s; withdrawn %v", delivery, rec.Code, rec.Body, svc.withdrawn)
		}
		if strings.Contains(rec.Body.String(), "dapi") {
			t.Errorf("the reply holds the token value: %s", rec.Body)
		}
	}
}
