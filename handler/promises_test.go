package handler

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

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
		r := newRig(t, createAnswering(tokens.CreateResult{}, notReady), Options{Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true},
			TokenRequestsQueue: "token-requests", WorkspaceEventsQueue: "workspace-events"})
		status, logs := r.invoke("/token-requests", envelopeWithProperties(t, createCommand(""), c.props))
		if status != http.StatusOK {
			t.Errorf("%s: %d %q", c.props, status, logs)
			continue
		}
		scheduled := r.pub.scheduled
		switch {
		case c.wantAttempt == 0 && len(scheduled) != 0:
			t.Errorf("%s: scheduled %v; want to give up", c.props, scheduled)
		case c.wantAttempt > 0 && (len(scheduled) != 1 || scheduled[0].Props[propAttempt] != c.wantAttempt):
			t.Errorf("%s: scheduled %v; want attempt %d", c.props, scheduled, c.wantAttempt)
		case c.wantAttempt > 0:
			if _, copied := scheduled[0].Props["custom"]; copied {
				t.Errorf("%s: a map property was copied to the rescheduled message", c.props)
			}
		}
	}
}

// The server's write timeout is sized for one operation; a rotation run
// can take minutes and its reply must still reach the host.
func TestRotationReplyOutlivesTheWriteTimeout(t *testing.T) {
	t.Parallel()
	r := newRig(t, &stubService{
		rotate: func(tokens.RotateOptions) ([]tokens.Outcome, error) {
			time.Sleep(600 * time.Millisecond)
			return nil, nil
		},
		sweep: func(tokens.SweepOptions) ([]tokens.Outcome, error) { return nil, nil },
	}, Options{RetryBudget: time.Second, Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour, KeyVault: true}})
	srv := httptest.NewUnstartedServer(r.h)
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
	created := tokens.CreateResult{Issued: true, Record: tokens.Record{Workspace: workspaceID(t), TokenID: "t1", Value: tokens.NewSecret(secretValue)}}
	for _, delivery := range []int{1, 3} {
		r := newRig(t, createAnswering(created, nil), Options{MaxDeliveryCount: 3, Limits: tokens.Limits{DefaultLifetime: time.Hour, MaxLifetime: time.Hour}})
		r.pub.publishErr = errors.New("service bus unavailable")
		rec := r.do(http.MethodPost, "/token-requests", envelope(t, createCommand(""), delivery), nil, false)
		if rec.Code != http.StatusServiceUnavailable || len(r.svc.withdrawn) != 1 || r.svc.withdrawn[0].TokenID != "t1" {
			t.Errorf("delivery %d: %d %s; withdrawn %v", delivery, rec.Code, rec.Body, r.svc.withdrawn)
		}
		if strings.Contains(rec.Body.String(), "dapi") {
			t.Errorf("the reply holds the token value: %s", rec.Body)
		}
	}
}
