package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const timerEnvelope = `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"rotate-tokens"}}}`

// TestRotationRun: how the timer function answers the host for each way
// a run can go: rotation only with Key Vault delivery, the ledger sweep
// after it (or alone), and nothing at all for an envelope it refuses.
func TestRotationRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		keyVault   bool
		envelope   string
		rotateErr  error
		sweepErr   error
		status     int
		logs       []string // nil: a refusal
		wantRotate bool
		wantSweep  bool
	}{
		// Refused with 200: a timer retry would get the same envelope.
		{"an envelope the host would not send", true, `{"Data":`, nil, nil, 200, nil, false, false},
		{"no timer binding", true, `{"Data":{"a":{},"b":{}}}`, nil, nil, 200, nil, false, false},
		{"KEY_VAULT_URI unset: the sweep alone", false, timerEnvelope, nil, nil, 200, []string{}, false, true},
		{"already running here", true, timerEnvelope, tokens.ErrRotationRunning, nil, 200, []string{"rotation already running"}, true, false},
		{"the vault cannot be listed", true, timerEnvelope, failWith(tokens.CodeUpstreamUnavailable, "Key Vault is throttling", 5*time.Second), nil, 503,
			[]string{"rotation failed: Key Vault is throttling"}, true, false},
		{"the vault refuses", true, timerEnvelope, failWith(tokens.CodeUpstreamError, "give the identity Key Vault Secrets Officer", 0), nil, 502,
			[]string{"rotation failed: give the identity Key Vault Secrets Officer"}, true, false},
		{"an unexpected failure", true, timerEnvelope, errors.New(secretCause), nil, 500, []string{"rotation failed: internal error"}, true, false},
		{"nothing due", true, timerEnvelope, nil, nil, 200, []string{}, true, true},
		{"the sweep fails, the run still completes", true, timerEnvelope, nil, failWith(tokens.CodeUpstreamUnavailable, "the ledger is throttling", time.Second), 200,
			[]string{"ledger sweep failed: the ledger is throttling"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions()
			opts.Limits.KeyVault = tt.keyVault
			var rotated tokens.RotateOptions
			var swept []tokens.SweepOptions
			svc := &stubService{}
			if tt.wantRotate {
				svc.rotate = func(o tokens.RotateOptions) ([]tokens.Outcome, error) {
					rotated = o
					return nil, tt.rotateErr
				}
			}
			if tt.wantSweep {
				svc.sweep = func(o tokens.SweepOptions) ([]tokens.Outcome, error) {
					swept = append(swept, o)
					return nil, tt.sweepErr
				}
			}
			r := newRig(t, svc, opts) // a call not wanted fails the test
			status, logs := r.invoke("/rotate-tokens", []byte(tt.envelope))
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			if tt.logs == nil && (len(logs) != 1 || !strings.HasPrefix(logs[0], "refused: ")) {
				t.Errorf("reply logs %q, want a refusal", logs)
			}
			if d := cmp.Diff(tt.logs, logs); tt.logs != nil && d != "" {
				t.Errorf("reply logs (-want +got):\n%s", d)
			}
			if tt.wantRotate && (rotated.Before != 7*24*time.Hour || rotated.DefaultLifetime != 24*time.Hour || rotated.Queue == nil || !rotated.Queue.IsQueue()) {
				t.Errorf("Rotate options %+v", rotated)
			}
			if d := cmp.Diff(swept, []tokens.SweepOptions{{RotateBefore: 7 * 24 * time.Hour}}); tt.wantSweep && d != "" {
				t.Errorf("Sweep options (-got +want):\n%s", d)
			}
			for i, ok := range r.svc.budgeted {
				if !ok {
					t.Errorf("call %d of the run has no deadline", i)
				}
			}
			if len(r.pub.outcomes()) != 0 {
				t.Errorf("published %+v", r.pub.outcomes())
			}
		})
	}
}

// TestRotationOutcomesArePublished: every outcome of a run, rotation's and
// the sweep's, is a result, also when some failed or a publish fails; the
// run still completes.
func TestRotationOutcomesArePublished(t *testing.T) {
	t.Parallel()
	due := &tokens.StoredToken{TokenID: "old-1", Name: "s", URI: "https://v.vault.azure.net/secrets/s/01", ExpiresAt: testNow.Add(time.Hour)}
	rotated := issued(t, true, "").Record
	rotated.SecretURI = "https://v.vault.azure.net/secrets/s/02"
	expiring := issued(t, false, "").Record
	outcomes := []tokens.Outcome{
		{Type: tokens.Rotated, RequestID: "rot-1", Workspace: surfaceWS, TokenID: "tok-1", Record: &rotated, Rotating: due},
		{Type: tokens.Revoked, RequestID: "ret-1", Workspace: surfaceWS, TokenID: "old-0",
			Revoke: &tokens.RevokeResult{TokenID: "old-0", Status: tokens.StatusRevoked, SecretURI: "https://v.vault.azure.net/secrets/s/00"}},
		{Type: tokens.Failed, RequestID: "rot-2", Workspace: surfaceWS, Rotating: due, Err: failWith(tokens.CodeUpstreamError, "Databricks refused", 0)},
		{Type: tokens.Failed, RequestID: "ret-2", Workspace: surfaceWS, TokenID: "old-9", Err: failWith(tokens.CodeUpstreamUnavailable, "throttled", time.Second)},
	}
	sweptOut := []tokens.Outcome{{Type: tokens.Expiring, RequestID: "r1", Workspace: surfaceWS, TokenID: "tok-1", Record: &expiring}}
	for _, publishFails := range []bool{false, true} {
		t.Run(fmt.Sprint("publish fails: ", publishFails), func(t *testing.T) {
			t.Parallel()
			opts := baseOptions()
			opts.Limits.KeyVault = true
			r := newRig(t, &stubService{
				rotate: func(tokens.RotateOptions) ([]tokens.Outcome, error) { return outcomes, nil },
				sweep:  func(tokens.SweepOptions) ([]tokens.Outcome, error) { return sweptOut, nil },
			}, opts)
			if publishFails {
				r.pub.publishErr = errors.New("service bus is down")
			}
			status, logs := r.invoke("/rotate-tokens", []byte(timerEnvelope))
			want := []string{
				"Databricks.Token.Rotated " + surfaceWS + " tok-1",
				"Databricks.Token.Revoked " + surfaceWS + " old-0",
				"Databricks.Token.Failed " + surfaceWS + " ",
				"Databricks.Token.Failed " + surfaceWS + " old-9",
				"Databricks.Token.Expiring " + surfaceWS + " tok-1",
			}
			if d := cmp.Diff(want, logs); status != 200 || d != "" {
				t.Errorf("%d, logs (-want +got):\n%s", status, d)
			}
			all := append(append([]tokens.Outcome(nil), outcomes...), sweptOut...)
			if publishFails {
				if n := strings.Count(r.log.String(), "service bus is down"); n != len(all) {
					t.Errorf("%d publish failures logged, want %d", n, len(all))
				}
				return
			}
			r.checkPublished(all, secretsByValue, ignoreErrCause)
			// A token left inside its window without a successor is said
			// so, the failed rotation's and the inline one alike.
			if n := strings.Count(r.log.String(), `"event":"token.expiring"`); n != 2 {
				t.Errorf("%d token.expiring lines, want 2:\n%s", n, r.log)
			}
		})
	}
}

// deadlinePublisher is a Service Bus that never answers: each Publish
// notes its deadline and fails as soon as it is asked.
type deadlinePublisher struct {
	recPublisher
	deadlines []time.Time
}

func (p *deadlinePublisher) Publish(ctx context.Context, _ tokens.Outcome) error {
	d, _ := ctx.Deadline()
	p.mu.Lock()
	p.deadlines = append(p.deadlines, d)
	p.mu.Unlock()
	return context.DeadlineExceeded
}

// TestTimerResultsShareOneDeadline: a timer run's results are published
// under one deadline, not one each, so a Service Bus that does not answer
// holds the reply for publishTimeout at most, however many results there
// are (one each would pass the host's functionTimeout and get the handler
// restarted).
func TestTimerResultsShareOneDeadline(t *testing.T) {
	t.Parallel()
	opts := keyVaultOptions()
	rec := issued(t, false, "").Record
	var outs []tokens.Outcome
	for i := range 5 {
		outs = append(outs, tokens.Outcome{Type: tokens.Expiring, RequestID: fmt.Sprint("r", i), Workspace: surfaceWS, TokenID: fmt.Sprint("t", i), Record: &rec})
	}
	pub := &deadlinePublisher{}
	svc := &stubService{
		rotate: func(tokens.RotateOptions) ([]tokens.Outcome, error) { return nil, nil },
		sweep:  func(tokens.SweepOptions) ([]tokens.Outcome, error) { return outs, nil },
	}
	h := New(slog.New(slog.NewJSONHandler(io.Discard, nil)), svc, pub, opts)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/rotate-tokens", strings.NewReader(timerEnvelope)))
	if len(pub.deadlines) != len(outs) {
		t.Fatalf("%d publishes; want %d", len(pub.deadlines), len(outs))
	}
	for _, d := range pub.deadlines {
		if d.IsZero() || !d.Equal(pub.deadlines[0]) {
			t.Errorf("publish deadlines %v; want one deadline for the run", pub.deadlines)
			break
		}
	}
}
