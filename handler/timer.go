package handler

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// maxRotationRun bounds one rotation run, under the shortest function
// timeout (Consumption's 5 minutes).
const maxRotationRun = 4 * time.Minute

// rotateTokens is the timer function: it renews every Key Vault-held token
// inside the rotation window and retires superseded ones, publishing one
// result per outcome. Without KEY_VAULT_URI there is nothing it holds.
func (s *Server) rotateTokens(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	body, err := readBody(w, r, maxEnvelope)
	if err == nil {
		_, _, err = decodeEnvelope(body, "timer")
	}
	if err != nil {
		logOutcome(log, start, "timer envelope refused", err)
		reply(w, http.StatusOK, "refused: "+tokens.AsError(err).Message)
		return
	}
	if !s.opts.Limits.KeyVault {
		logOutcome(log, start, "rotation skipped: KEY_VAULT_URI is not set", nil)
		reply(w, http.StatusOK, "rotation skipped: KEY_VAULT_URI is not set")
		return
	}
	// A run outlasts the server's WriteTimeout, which is sized for one
	// operation: lift it for this reply, or the host gets no answer (the
	// Functions host's functionTimeout is the bound that matters here).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	ctx, cancel := upstream.WithBudget(r.Context(), min(8*s.opts.RetryBudget, maxRotationRun))
	defer cancel()
	outcomes, err := s.svc.Rotate(ctx, tokens.RotateOptions{Before: s.opts.RotateBefore, DefaultLifetime: s.opts.Limits.DefaultLifetime, Queue: queueCaller})
	if errors.Is(err, tokens.ErrRotationRunning) {
		logOutcome(log, start, "rotation already running in this instance; this run does nothing", nil)
		reply(w, http.StatusOK, "rotation already running")
		return
	}
	if err != nil {
		// The vault could not be listed: fail the invocation, so the
		// timer's retry policy (or the next schedule) tries again.
		logOutcome(log, start, "rotation failed", err)
		reply(w, statusOf(tokens.AsError(err).Code), "rotation failed: "+tokens.AsError(err).Message)
		return
	}
	logs := make([]string, 0, len(outcomes))
	failed := 0
	for _, o := range outcomes {
		s.publish(r, log, o)
		attrs := []any{"type", string(o.Type), "request_id", o.RequestID, "workspace", o.Workspace, "token_id", o.TokenID}
		if o.Record != nil {
			attrs = append(attrs, "secret_uri", o.Record.SecretURI)
		}
		var oerr error
		if o.Err != nil {
			failed++
			oerr = o.Err
		}
		logOutcome(log, start, "rotation outcome", oerr, attrs...)
		logs = append(logs, fmt.Sprintf("%s %s %s", o.Type, o.Workspace, o.TokenID))
	}
	logOutcome(log, start, "rotation done", nil, "outcomes", len(outcomes), "failed", failed)
	reply(w, http.StatusOK, logs...)
}
