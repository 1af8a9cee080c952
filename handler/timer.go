package handler

import (
	"log/slog"
	"net/http"
	"time"
)

// rotateTokens is the timer function. Rotation renews Key Vault-held
// tokens; without KEY_VAULT_URI there is nothing it can hold, so it says so.
func (s *Server) rotateTokens(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	if _, _, err := decodeEnvelope(mustRead(w, r), "timer"); err != nil {
		logOutcome(log, start, "timer envelope refused", err)
		reply(w, http.StatusOK, "refused: "+err.Error())
		return
	}
	logOutcome(log, start, "rotation skipped: KEY_VAULT_URI is not set", nil)
	reply(w, http.StatusOK, "rotation skipped: KEY_VAULT_URI is not set")
}

func mustRead(w http.ResponseWriter, r *http.Request) []byte {
	b, _ := readBody(w, r, maxEnvelope)
	return b
}
