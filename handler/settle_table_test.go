package handler

import (
	"errors"
	"net/http"
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
	body := createCommand("")
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
				r := newRig(t, createAnswering(tokens.CreateResult{}, &tokens.Error{Code: code, Message: "it failed"}),
					Options{MaxDeliveryCount: maxDeliveries, Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
				if publishFails {
					r.pub.publishErr = errors.New("service bus unavailable")
				}
				status, _ := r.invoke("/token-requests", envelope(t, body, delivery))
				out := r.pub.outcomes()
				published := len(out) == 1 && out[0].Type == tokens.Failed && out[0].Err.Code == code
				if status != wantStatus || published != wantPublished || len(out) > 1 {
					t.Errorf("%s, delivery %d of %d, publish fails %v: %d, Failed published %v (%d results); want %d, %v",
						code, delivery, maxDeliveries, publishFails, status, published, len(out), wantStatus, wantPublished)
				}
				if complete := status < 300; complete && !published {
					t.Errorf("%s, delivery %d: the message completes without its Failed result", code, delivery)
				}
			}
		}
	}
}

// A message that can never succeed completes only once its Failed result
// is out; if the result cannot be published, Service Bus must keep it.
// (invoke checks that every reply is the host's JSON object.)
func TestPermanentFailureCompletesOnlyOncePublished(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		r := newRig(t, &stubService{}, Options{Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour}})
		if fail {
			r.pub.publishErr = errors.New("service bus unavailable")
		}
		status, logs := r.invoke("/token-requests", envelope(t, `{"action":"mint"}`, 1))
		want := http.StatusOK
		if fail {
			want = http.StatusServiceUnavailable
		}
		if status != want {
			t.Errorf("publisher failing=%v: %d %q", fail, status, logs)
		}
		if out := r.pub.outcomes(); !fail && (len(out) != 1 || out[0].Type != tokens.Failed || out[0].CorrelationID != "m1") {
			t.Errorf("published %+v", out)
		}
	}
}

// Successes: the result goes out before the message completes; if it
// cannot, the invocation fails so Service Bus redelivers (the value is in
// Key Vault here, so nothing is withdrawn).
func TestSettlementOfSuccesses(t *testing.T) {
	t.Parallel()
	created := tokens.CreateResult{Issued: true, Record: tokens.Record{Workspace: workspaceID(t), TokenID: "t1", SecretURI: "https://kv/secrets/s/v"}}
	for _, publishFails := range []bool{false, true} {
		r := newRig(t, createAnswering(created, nil), Options{Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
		if publishFails {
			r.pub.publishErr = errors.New("service bus unavailable")
		}
		status, _ := r.invoke("/token-requests", envelope(t, createCommand(""), 1))
		want := http.StatusOK
		if publishFails {
			want = http.StatusServiceUnavailable
		}
		out := r.pub.outcomes()
		if status != want || len(r.svc.withdrawn) != 0 || !publishFails && (len(out) != 1 || out[0].Type != tokens.Created) {
			t.Errorf("publish fails %v: %d, published %+v, withdrawn %v", publishFails, status, out, r.svc.withdrawn)
		}
	}
}

// After NotReadyAttempts the wait for a provisioning workspace ends: the
// Failed result is published and the message completes, on any delivery.
func TestSettlementOfAnEndedWait(t *testing.T) {
	t.Parallel()
	notReady := &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Message: "provisioning"}
	r := newRig(t, createAnswering(tokens.CreateResult{}, notReady), Options{NotReadyAttempts: 3, TokenRequestsQueue: "token-requests",
		Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
	env := envelopeWithProperties(t, createCommand(""), `{"dtb-attempt": 2, "dtb-request-id": "r1"}`)
	status, logs := r.invoke("/token-requests", env)
	out := r.pub.outcomes()
	if status != http.StatusOK || len(r.pub.scheduled) != 0 || len(out) != 1 || out[0].Err.Code != tokens.CodeWorkspaceNotReady {
		t.Errorf("%d %q; scheduled %v, published %+v", status, logs, r.pub.scheduled, out)
	}
}
