package handler

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// The settlement table: every error code on the first, a middle and the
// last delivery, with the Failed result's publish succeeding and failing.
// Permanent failures publish Failed and complete; transient ones fail the
// invocation so Service Bus redelivers, and the last delivery publishes
// Failed first; a Failed result that cannot be published never completes.
func TestSettlementTable(t *testing.T) {
	t.Parallel()
	const maxDeliveries = 10
	codes := []tokens.Code{
		tokens.CodeInvalidRequest, tokens.CodeUnauthenticated, tokens.CodeNotAuthorized, tokens.CodeWorkspaceNotAllowed,
		tokens.CodeWorkspaceNotFound, tokens.CodeTokenQuotaExceeded, tokens.CodeRequestTooLarge, tokens.CodeUpstreamError,
		tokens.CodeDeliveryNotConfigured, tokens.CodeUpstreamUnavailable, tokens.CodeWorkspaceNotReady, tokens.CodeInternal,
	}
	body := `{"action":"create","workspaceResourceId":"` + testWorkspace + `"}`
	for _, code := range codes {
		for _, delivery := range []int{1, 5, maxDeliveries} {
			for _, publishFails := range []bool{false, true} {
				last := delivery == maxDeliveries
				wantPublished, wantStatus := false, statusOf(code)
				switch {
				case !code.Transient() && !publishFails:
					wantPublished, wantStatus = true, http.StatusOK
				case !code.Transient():
					wantStatus = http.StatusServiceUnavailable
				case last && !publishFails:
					wantPublished = true
				case last:
					wantStatus = http.StatusServiceUnavailable
				}
				pub := &fakePublisher{fail: publishFails}
				svc := &fakeService{createErr: &tokens.Error{Code: code, Message: "it failed"}}
				h := New(slog.New(slog.DiscardHandler), svc, pub, Options{MaxDeliveryCount: maxDeliveries,
					Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token-requests", bytes.NewReader(envelope(t, body, delivery))))
				published := len(pub.got) == 1 && pub.got[0].Type == tokens.Failed && pub.got[0].Err.Code == code
				if rec.Code != wantStatus || published != wantPublished || len(pub.got) > 1 {
					t.Errorf("%s, delivery %d of %d, publish fails %v: %d, Failed published %v (%d results); want %d, %v",
						code, delivery, maxDeliveries, publishFails, rec.Code, published, len(pub.got), wantStatus, wantPublished)
				}
				if complete := rec.Code < 300; complete && !published {
					t.Errorf("%s, delivery %d: the message completes without its Failed result", code, delivery)
				}
			}
		}
	}
}

// Successes: the result goes out before the message completes; if it
// cannot, the invocation fails so Service Bus redelivers (the value is in
// Key Vault here, so nothing is withdrawn).
func TestSettlementOfSuccesses(t *testing.T) {
	t.Parallel()
	id, _ := tokens.ParseWorkspaceID(testWorkspace)
	for _, publishFails := range []bool{false, true} {
		pub := &fakePublisher{fail: publishFails}
		svc := &fakeService{created: tokens.CreateResult{Issued: true, Record: tokens.Record{Workspace: id, TokenID: "t1", SecretURI: "https://kv/secrets/s/v"}}}
		h := New(slog.New(slog.DiscardHandler), svc, pub, Options{Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token-requests", bytes.NewReader(envelope(t, `{"action":"create","workspaceResourceId":"`+testWorkspace+`"}`, 1))))
		want := http.StatusOK
		if publishFails {
			want = http.StatusServiceUnavailable
		}
		if rec.Code != want || len(svc.withdrawn) != 0 || !publishFails && (len(pub.got) != 1 || pub.got[0].Type != tokens.Created) {
			t.Errorf("publish fails %v: %d, published %+v, withdrawn %v", publishFails, rec.Code, pub.got, svc.withdrawn)
		}
	}
}

// After NotReadyAttempts the wait for a provisioning workspace ends: the
// Failed result is published and the message completes, on any delivery.
func TestSettlementOfAnEndedWait(t *testing.T) {
	t.Parallel()
	pub := &schedulingPublisher{}
	svc := &fakeService{createErr: &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Message: "provisioning"}}
	h := New(slog.New(slog.DiscardHandler), svc, pub, Options{NotReadyAttempts: 3, TokenRequestsQueue: "token-requests",
		Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
	rec := httptest.NewRecorder()
	env := envelopeWithProperties(t, `{"action":"create","workspaceResourceId":"`+testWorkspace+`"}`, `{"dtb-attempt": 2, "dtb-request-id": "r1"}`)
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/token-requests", bytes.NewReader(env)))
	if rec.Code != http.StatusOK || len(pub.scheduled) != 0 || len(pub.got) != 1 || pub.got[0].Err.Code != tokens.CodeWorkspaceNotReady {
		t.Errorf("%d %s; scheduled %v, published %+v", rec.Code, rec.Body, pub.scheduled, pub.got)
	}
}
