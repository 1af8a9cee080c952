package handler

import (
	"context"
	"log/slog"
	"time"

	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// auditHandler adds to every audit line (a record with an "event"
// attribute) the upstream calls the invocation made since its previous
// audit line, as "calls". Everything else passes through unchanged.
type auditHandler struct {
	slog.Handler
	stats *upstream.Stats
}

func (h auditHandler) Handle(ctx context.Context, r slog.Record) error {
	isAudit := false
	r.Attrs(func(a slog.Attr) bool {
		isAudit = a.Key == "event"
		return !isAudit
	})
	if isAudit {
		if calls := h.stats.Drain(); calls != nil {
			r = r.Clone()
			r.AddAttrs(slog.Any("calls", calls))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h auditHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return auditHandler{Handler: h.Handler.WithAttrs(as), stats: h.stats}
}

func (h auditHandler) WithGroup(name string) slog.Handler {
	return auditHandler{Handler: h.Handler.WithGroup(name), stats: h.stats}
}

// errorAttrs are a failure's fields on its audit line.
func errorAttrs(e *tokens.Error) []any {
	attrs := []any{"code", string(e.Code), "error", e.Message}
	if e.Err != nil {
		attrs = append(attrs, "cause", e.Err.Error())
	}
	if e.Upstream != "" {
		attrs = append(attrs, "upstream", e.Upstream)
	}
	if e.PermissionDenied {
		attrs = append(attrs, "permission_denied", true)
	}
	return attrs
}

// expiryAttrs say when a token expires; nothing for one that never does.
func expiryAttrs(expires time.Time) []any {
	if expires.IsZero() {
		return nil
	}
	return []any{"expires_at", expires.UTC().Format(time.RFC3339)}
}

// scopeAttrs names a token's scopes on its audit line (nothing for an
// unscoped token): which privilege each issued token got.
func scopeAttrs(s tokens.Scopes) []any {
	var out []any
	if len(s.List) > 0 {
		out = append(out, "scopes", s.String())
	}
	if s.Autoscope {
		out = append(out, "autoscope", true)
	}
	return out
}

// createdEvent is the event of a successful create: a new token, or the
// one an earlier attempt issued.
func createdEvent(issued bool) audit.Event {
	if issued {
		return audit.TokenIssued
	}
	return audit.TokenReused
}
