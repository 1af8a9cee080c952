package handler

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/contoso/databricks-token-broker/internal/api"
	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// readBody reads at most max bytes; a larger body is RequestTooLarge.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, tokens.Errorf(tokens.CodeRequestTooLarge, "the request body is %d bytes; the limit is %d", r.ContentLength, max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tokens.Errorf(tokens.CodeRequestTooLarge, "the request body is over the limit of %d bytes", max)
		}
		return nil, &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the request body could not be read", Err: err}
	}
	return b, nil
}

// headerRequestID is the idempotency key Azure SDKs and many clients send.
const headerRequestID = "x-ms-client-request-id"

// requestID picks the request id: the body's, else the header's, else a
// new one. given reports whether the caller chose it (so a repeat is
// possible and must find the first attempt's token).
func requestID(body string, r *http.Request) (id string, given bool, err error) {
	if body != "" {
		return body, true, nil
	}
	if h := r.Header.Get(headerRequestID); h != "" {
		if verr := tokens.ValidRequestID(h); verr != nil {
			return "", false, tokens.FieldError(tokens.CodeInvalidRequest, headerRequestID, headerRequestID+" "+verr.Error())
		}
		return h, true, nil
	}
	return uuid.NewString(), false, nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	body, err := readBody(w, r, MaxBody)
	if err != nil {
		logOutcome(log, start, audit.TokenRefused, "create refused", err)
		writeError(w, err)
		return
	}
	req, err := tokens.DecodeCreate(body, s.opts.Limits)
	id, given, idErr := requestID(req.RequestID, r)
	if err == nil {
		err = idErr
	}
	req.RequestID, req.RequestIDGiven = id, given
	by, perr := s.caller(r, log)
	log = log.With(append([]any{"request_id", id, "action", "create"}, auditAttrs(by)...)...)
	if err == nil {
		err = perr
	}
	if err != nil {
		s.publishFailure(r, log, id, workspaceText(req.Workspace), id, requestedBy(by), err)
		logOutcome(log, start, audit.TokenRefused, "create refused", err, "workspace", workspaceText(req.Workspace))
		writeError(w, err)
		return
	}
	log = log.With("workspace", req.Workspace.String())
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	res, err := s.svc.Create(ctx, by, req, tokens.CreateOptions{})
	if err != nil {
		s.publishFailure(r, log, id, req.Workspace.String(), id, requestedBy(by), err)
		ev, msg := failure(err, "create")
		logOutcome(log, start, ev, msg, err)
		writeError(w, err)
		return
	}
	// A value minted over HTTP goes to its caller only: never into a result,
	// whatever RESULTS_INCLUDE_TOKEN_VALUE says (that is for queued creates,
	// whose result is the only way the value travels).
	published := res.Record
	published.Value = tokens.Secret{}
	s.publish(r, log, tokens.Outcome{Type: tokens.Created, RequestID: id, Workspace: req.Workspace.String(),
		TokenID: res.Record.TokenID, CorrelationID: id, RequestedBy: requestedBy(by), Record: &published})
	status := http.StatusOK
	if res.Issued {
		status = http.StatusCreated
	}
	logOutcome(log, start, createdEvent(res.Issued), "create done", nil, append([]any{"token_id", res.Record.TokenID, "issued", res.Issued, "revoked_undelivered", len(res.Revoked)}, append(expiryAttrs(res.Record.ExpiresAt), scopeAttrs(res.Record.Scopes)...)...)...)
	w.Header().Set("x-ms-request-id", id)
	writeJSON(w, status, api.NewRecord(res.Record, true))
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	body, err := readBody(w, r, MaxBody)
	if err != nil {
		logOutcome(log, start, audit.TokenRefused, "revoke refused", err)
		writeError(w, err)
		return
	}
	req, err := tokens.DecodeRevoke(body)
	id, _, idErr := requestID(req.RequestID, r)
	if err == nil {
		err = idErr
	}
	req.RequestID = id
	by, perr := s.caller(r, log)
	log = log.With(append([]any{"request_id", id, "action", "revoke"}, auditAttrs(by)...)...)
	if err == nil {
		err = perr
	}
	if err != nil {
		s.publishFailure(r, log, id, workspaceText(req.Workspace), id, requestedBy(by), err)
		logOutcome(log, start, audit.TokenRefused, "revoke refused", err, "workspace", workspaceText(req.Workspace))
		writeError(w, err)
		return
	}
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	res, err := s.svc.Revoke(ctx, by, req)
	if err != nil {
		s.publishFailure(r, log, id, workspaceText(req.Workspace), id, requestedBy(by), err)
		ev, msg := failure(err, "revoke")
		logOutcome(log, start, ev, msg, err, "workspace", workspaceText(req.Workspace))
		writeError(w, err)
		return
	}
	s.publish(r, log, tokens.Outcome{Type: tokens.Revoked, RequestID: id, Workspace: res.Workspace.String(),
		TokenID: res.TokenID, CorrelationID: id, RequestedBy: requestedBy(by), Revoke: &res})
	logOutcome(log, start, audit.TokenRevoked, "revoke done", nil, "workspace", res.Workspace.String(), "token_id", res.TokenID, "status", string(res.Status))
	writeJSON(w, http.StatusOK, api.RevokeResponse{TokenID: res.TokenID, Status: string(res.Status)})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	q := r.URL.Query()
	id, err := tokens.ParseListQuery(q.Get("workspaceResourceId"))
	by, perr := s.caller(r, log)
	log = log.With(append([]any{"action", "list"}, auditAttrs(by)...)...)
	if err == nil {
		err = perr
	}
	if err != nil {
		logOutcome(log, start, audit.TokenRefused, "list refused", err)
		writeError(w, err)
		return
	}
	log = log.With("workspace", id.String())
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	list, err := s.svc.List(ctx, by, id)
	if err != nil {
		ev, msg := failure(err, "list")
		logOutcome(log, start, ev, msg, err)
		writeError(w, err)
		return
	}
	logOutcome(log, start, audit.TokensListed, "list done", nil, "count", len(list))
	writeJSON(w, http.StatusOK, api.NewList(list))
}

// workspaceText is the workspace as well as it is known, for a Failed
// result's source.
func workspaceText(id tokens.WorkspaceID) string {
	if id == (tokens.WorkspaceID{}) {
		return ""
	}
	return id.String()
}

// failure names a failed operation's audit event: a refusal by the policy
// (decided in the service, before any upstream call) is token.refused;
// anything else token.failed.
func failure(err error, action string) (audit.Event, string) {
	switch tokens.CodeOf(err) {
	case tokens.CodeNotAuthorized, tokens.CodeUnauthenticated:
		return audit.TokenRefused, action + " refused"
	}
	return audit.TokenFailed, action + " failed"
}
