package handler

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// maxRotationRun bounds one rotation run, under the shortest function
// timeout (Consumption's 5 minutes).
const maxRotationRun = 4 * time.Minute

// rotateTokens is the timer function: it renews every Key Vault-held token
// inside the rotation window and retires superseded ones, then sweeps the
// ledger, publishing one result per outcome.
func (s *Server) rotateTokens(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	log = log.With("caller", "timer")
	body, err := readBody(r, maxEnvelope)
	if err == nil {
		_, _, err = decodeEnvelope(body, "timer")
	}
	if err != nil {
		logOutcome(log, start, audit.RotationSkipped, "timer envelope refused", err, "reason", "bad-envelope")
		reply(w, http.StatusOK, "refused: "+tokens.AsError(err).Message)
		return
	}
	// A run outlasts the server's WriteTimeout, which is sized for one
	// operation: lift it for this reply, or the host gets no answer (the
	// Functions host's functionTimeout is the bound that matters here).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	ctx, cancel := upstream.WithBudget(r.Context(), min(8*s.opts.RetryBudget, maxRotationRun))
	defer cancel()
	var outcomes []tokens.Outcome
	rotated := false
	if !s.opts.Limits.KeyVault {
		logOutcome(log, start, audit.RotationSkipped, "rotation skipped: KEY_VAULT_URI is not set", nil, "reason", "no-key-vault")
	} else {
		outs, err := s.svc.Rotate(ctx, tokens.RotateOptions{Before: s.opts.RotateBefore, DefaultLifetime: s.opts.Limits.DefaultLifetime, MaxLifetime: s.opts.Limits.MaxLifetime, Queue: queueCaller})
		if errors.Is(err, tokens.ErrRotationRunning) {
			logOutcome(log, start, audit.RotationSkipped, "rotation already running in this instance; this run does nothing", nil, "reason", "already-running")
			reply(w, http.StatusOK, "rotation already running")
			return
		}
		if err != nil {
			// The vault could not be listed: fail the invocation, so the
			// timer's retry policy (or the next schedule) tries again.
			logOutcome(log, start, audit.RotationFailed, "rotation failed", err)
			reply(w, statusOf(tokens.AsError(err).Code), "rotation failed: "+tokens.AsError(err).Message)
			return
		}
		outcomes, rotated = outs, true
	}
	// The sweep keeps the ledger true (tokens revoked elsewhere, claims of
	// holders that died) and says which inline tokens are expiring. It
	// runs with or without Key Vault.
	swept, serr := s.svc.Sweep(ctx, tokens.SweepOptions{RotateBefore: s.opts.RotateBefore})
	outcomes = append(outcomes, swept...)
	logs := make([]string, 0, len(outcomes)+1)
	failed := 0
	// One deadline for all of the run's results, not one each: a Service
	// Bus that does not answer must not hold the reply past the host's
	// functionTimeout, which restarts the whole handler (every in-flight
	// invocation with it).
	pctx, pcancel := upstream.Detached(r.Context(), publishTimeout)
	defer pcancel()
	for _, o := range outcomes {
		if err := s.publishIn(pctx, o); err != nil {
			log.Error("publish result", "type", string(o.Type), "error", err.Error())
		}
		if o.Err != nil {
			failed++
		}
		logRotationOutcome(log, start, o, s.opts.Now())
		logs = append(logs, fmt.Sprintf("%s %s %s", o.Type, o.Workspace, o.TokenID))
	}
	if serr != nil {
		logOutcome(log, start, audit.TokenFailed, "ledger sweep failed", serr)
		logs = append(logs, "ledger sweep failed: "+tokens.AsError(serr).Message)
	}
	if rotated {
		logOutcome(log, start, audit.RotationCompleted, "rotation done", nil, "outcomes", len(outcomes), "failed", failed)
	}
	reply(w, http.StatusOK, logs...)
}

// logRotationOutcome writes the audit line of one rotation outcome, and
// for a token whose rotation failed a token.expiring line too: it stays
// the secret's latest version, inside its rotation window, with no
// successor, and every run says so until one exists.
func logRotationOutcome(log *slog.Logger, start time.Time, o tokens.Outcome, now time.Time) {
	attrs := []any{"type", string(o.Type), "request_id", o.RequestID, "workspace", o.Workspace}
	var ev audit.Event
	switch {
	case o.Type == tokens.Rotated:
		ev = audit.TokenRotated
		attrs = append(attrs, "token_id", o.TokenID)
		if o.Rotating != nil {
			attrs = append(attrs, "replaces_token_id", o.Rotating.TokenID)
		}
		if o.Record != nil {
			attrs = append(append(append(attrs, "secret_uri", o.Record.SecretURI), expiryAttrs(o.Record.ExpiresAt)...), scopeAttrs(o.Record.Scopes)...)
		}
	case o.Type == tokens.Expiring:
		ev = audit.TokenExpiring
		attrs = append(append(attrs, "token_id", o.TokenID, "delivery", "inline"), expiryAttrs(o.Record.ExpiresAt)...)
	case o.Type == tokens.Revoked:
		ev = audit.TokenRevoked
		attrs = append(attrs, "token_id", o.TokenID)
		if o.Revoke != nil {
			attrs = append(attrs, "status", string(o.Revoke.Status), "secret_uri", o.Revoke.SecretURI)
		}
	case o.Rotating != nil:
		ev = audit.TokenRotationFailed
		attrs = append(append(attrs, "token_id", o.Rotating.TokenID, "secret_uri", o.Rotating.URI), expiryAttrs(o.Rotating.ExpiresAt)...)
	default: // a superseded version that could not be retired
		ev = audit.TokenFailed
		attrs = append(attrs, "token_id", o.TokenID)
	}
	var err error
	if o.Err != nil {
		err = o.Err
	}
	logOutcome(log, start, ev, "rotation outcome", err, attrs...)
	if ev != audit.TokenRotationFailed {
		return
	}
	v := o.Rotating
	logOutcome(log, start, audit.TokenExpiring, "token inside its rotation window has no successor", nil,
		append([]any{"workspace", o.Workspace, "token_id", v.TokenID, "secret_name", v.Name, "secret_uri", v.URI,
			"expires_in_s", int64(v.ExpiresAt.Sub(now).Seconds())}, expiryAttrs(v.ExpiresAt)...)...)
}
