package handler

import (
	"log/slog"
	"net/http"

	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// caller reads the principal App Service Authentication forwarded. The
// transport authenticates; the token service authorizes (tokens.Authorizer).
//
// The headers are believed only when the platform vouches for them
// (Options.TrustCallerHeaders): without App Service Authentication nothing
// strips client-sent copies, so the caller is unknown (nil) and neither
// results nor audit lines name anyone. With a policy, a request without a
// principal, or with headers that do not hold together, is
// Unauthenticated; without one, unreadable headers are ignored.
func (s *Server) caller(r *http.Request, log *slog.Logger) (tokens.Caller, error) {
	if !s.opts.TrustCallerHeaders {
		return nil, nil
	}
	pr, err := authz.PrincipalFromHeaders(r.Header)
	if s.opts.Policy == nil {
		if err != nil {
			log.Warn("ignoring unreadable client principal headers (no AUTHZ_POLICY)", "error", err.Error())
			return nil, nil
		}
		if pr == nil {
			return nil, nil // no typed nil in the interface
		}
		return pr, nil
	}
	if err != nil {
		return nil, &tokens.Error{Code: tokens.CodeUnauthenticated, Message: "the caller's identity headers are not valid: " + err.Error(), Err: err}
	}
	if pr == nil {
		return nil, &tokens.Error{Code: tokens.CodeUnauthenticated,
			Message: "the caller is not authenticated: call through App Service Authentication with a Microsoft Entra token"}
	}
	return pr, nil
}

// queueCaller is who queue commands, workspace events and rotations act as.
var queueCaller tokens.Caller = authz.Queue()

// auditAttrs are the caller's fields on the one audit line per invocation.
func auditAttrs(by tokens.Caller) []any {
	switch pr, _ := by.(*authz.Principal); {
	case by == nil:
		return []any{"caller", "unknown"}
	case by.IsQueue():
		return []any{"caller", "queue"}
	case pr != nil:
		return []any{"caller", "principal", "caller_object_id", pr.ObjectID, "caller_app_id", pr.AppID}
	}
	return []any{"caller", by.String()}
}

// requestedBy is the caller as result messages name it ("" when unknown).
func requestedBy(by tokens.Caller) string {
	if by == nil {
		return ""
	}
	return by.String()
}
