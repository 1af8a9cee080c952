package handler

import (
	"log/slog"
	"net/http"

	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// caller reads the principal App Service Authentication forwarded. With a
// policy, a request without one, or with headers that do not hold
// together, is Unauthenticated. Without a policy the principal is only
// recorded (requestedBy, audit lines), and unreadable headers are ignored.
func (s *Server) caller(r *http.Request, log *slog.Logger) (*authz.Principal, error) {
	pr, err := authz.PrincipalFromHeaders(r.Header)
	if s.opts.Policy == nil {
		if err != nil {
			log.Warn("ignoring unreadable client principal headers (no AUTHZ_POLICY)", "error", err.Error())
			return nil, nil
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

// authorize applies the policy to an HTTP caller.
func (s *Server) authorize(pr *authz.Principal, action string, ws tokens.WorkspaceID) (authz.Decision, error) {
	if s.opts.Policy == nil {
		return authz.Decision{Allowed: true, Rule: -1}, nil
	}
	d := s.opts.Policy.Decide(pr, action, ws)
	if !d.Allowed {
		return d, &tokens.Error{Code: tokens.CodeNotAuthorized, Target: "workspaceResourceId", Message: authz.DeniedMessage(action, ws)}
	}
	return d, nil
}

// authorizeQueue applies the policy to a queue command or event. Queue
// messages carry no caller: the queue's RBAC is the control, and the
// policy restricts them only when it has rules for the principal "queue".
func (s *Server) authorizeQueue(action string, ws tokens.WorkspaceID) error {
	if !s.opts.Policy.HasQueueRules() {
		return nil
	}
	if d := s.opts.Policy.Decide(authz.Queue(), action, ws); !d.Allowed {
		return &tokens.Error{Code: tokens.CodeNotAuthorized, Target: "workspaceResourceId", Message: authz.DeniedMessage(action, ws)}
	}
	return nil
}

// capLifetime applies a rule's maximum lifetime: a default lifetime is
// shortened to it; an explicit longer one is refused.
func capLifetime(req *tokens.CreateRequest, d authz.Decision) error {
	if d.MaxLifetime <= 0 || req.Lifetime <= d.MaxLifetime {
		return nil
	}
	if !req.LifetimeGiven {
		req.Lifetime = d.MaxLifetime
		return nil
	}
	msg := authz.LifetimeDeniedMessage(d.MaxLifetime, req.Workspace)
	return tokens.FieldError(tokens.CodeNotAuthorized, "lifetimeSeconds", msg)
}

// auditAttrs are the caller's fields on the one audit line per invocation.
func auditAttrs(pr *authz.Principal) []any {
	if pr == nil {
		return []any{"caller", "anonymous"}
	}
	if pr.IsQueue() {
		return []any{"caller", "queue"}
	}
	return []any{"caller", "principal", "caller_object_id", pr.ObjectID, "caller_app_id", pr.AppID}
}

// principalOf is the caller as far as the headers tell, for the audit line
// of a request refused before its caller was checked.
func principalOf(r *http.Request) *authz.Principal {
	pr, _ := authz.PrincipalFromHeaders(r.Header)
	return pr
}

// requestedBy is the caller as result messages name it.
func requestedBy(pr *authz.Principal) string {
	if pr == nil {
		return ""
	}
	return pr.String()
}
