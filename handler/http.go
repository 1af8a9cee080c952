package handler

import (
	"cmp"
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

// readBody reads at most max bytes; a larger body is RequestTooLarge. (The
// invocation wrapper has already bounded the body with the ResponseWriter,
// so the server closes a connection whose body was cut.)
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, tokens.Errorf(tokens.CodeRequestTooLarge, "the request body is %d bytes; the limit is %d", r.ContentLength, max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, max))
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
		if verr := tokens.CallerRequestID(h); verr != nil {
			return "", false, tokens.FieldError(tokens.CodeInvalidRequest, headerRequestID, headerRequestID+" "+verr.Error())
		}
		return h, true, nil
	}
	return uuid.NewString(), false, nil
}

// httpOutcome is what an HTTP function did. HTTP functions return it;
// httpFunction, the one place that answers, logs the audit line,
// publishes the result (a Created or Revoked one, or Failed for a create
// or revoke that failed) and renders the answer or the error.
type httpOutcome struct {
	log   *slog.Logger
	event audit.Event
	msg   string
	attrs []any
	// result is published when its Type is set; for a failure of a create
	// or revoke, its request id and workspace name the Failed result.
	result tokens.Outcome
	err    error
	status int
	body   any
	header http.Header
}

type httpFunc func(r *http.Request, log *slog.Logger) httpOutcome

func (s *Server) httpFunction(fn httpFunc) invocationFunc {
	return func(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
		start := time.Now()
		h := fn(r, log)
		if h.log != nil {
			log = h.log
		}
		if h.err != nil {
			if h.result.RequestID != "" {
				o := h.result
				o.Type, o.Err, o.Record, o.Revoke = tokens.Failed, tokens.AsError(h.err), nil, nil
				s.publish(r, log, o)
			}
			logOutcome(log, start, h.event, h.msg, h.err, h.attrs...)
			writeError(w, h.err)
			return
		}
		if h.result.Type != "" {
			s.publish(r, log, h.result)
		}
		logOutcome(log, start, h.event, h.msg, nil, h.attrs...)
		for k, vs := range h.header {
			w.Header()[k] = vs
		}
		writeJSON(w, h.status, h.body)
	}
}

// failedAs is the outcome of an operation that failed, its audit event
// named from the error.
func (h httpOutcome) failedAs(action string, err error, attrs ...any) httpOutcome {
	h.event, h.msg = failure(err, action)
	h.err, h.attrs = err, attrs
	return h
}

// refused is the outcome of a request turned away before the service was
// asked (bad input, no caller identity).
func (h httpOutcome) refused(action string, err error, attrs ...any) httpOutcome {
	h.event, h.msg, h.err, h.attrs = audit.TokenRefused, action+" refused", err, attrs
	return h
}

// call is who asked for an operation over HTTP, and under which request id.
type call struct {
	id      string
	idGiven bool // the caller chose id (body or header)
	by      tokens.Caller
	// err is the first problem: the body's (decodeErr), the request id's
	// header, or the caller's identity.
	err error
}

// begin reads the request id and the caller of a POST whose body decoded
// with decodeErr, and starts its outcome: the log line and the result
// carry both, and the workspace the body named.
func (s *Server) begin(r *http.Request, log *slog.Logger, action, bodyID string, ws tokens.WorkspaceID, decodeErr error) (httpOutcome, call) {
	var h httpOutcome
	c := call{err: decodeErr}
	var idErr, callerErr error
	c.id, c.idGiven, idErr = requestID(bodyID, r)
	c.by, callerErr = s.caller(r, log)
	if c.err == nil {
		c.err = cmp.Or(idErr, callerErr)
	}
	h.log = log.With(append([]any{"request_id", c.id, "action", action}, auditAttrs(c.by)...)...)
	h.result = tokens.Outcome{RequestID: c.id, Workspace: workspaceText(ws), CorrelationID: c.id, RequestedBy: requestedBy(c.by)}
	return h, c
}

func (s *Server) createToken(r *http.Request, log *slog.Logger) httpOutcome {
	var h httpOutcome
	body, err := readBody(r, MaxBody)
	if err != nil {
		return h.refused("create", err)
	}
	req, err := tokens.DecodeCreate(body, s.opts.Limits)
	h, c := s.begin(r, log, "create", req.RequestID, req.Workspace, err)
	id, by := c.id, c.by
	req.RequestID, req.RequestIDGiven = id, c.idGiven
	if c.err != nil {
		return h.refused("create", c.err, "workspace", workspaceText(req.Workspace))
	}
	h.log = h.log.With("workspace", req.Workspace.String())
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	res, err := s.svc.Create(ctx, by, req, tokens.CreateOptions{})
	if err != nil {
		return h.failedAs("create", err)
	}
	// A value minted over HTTP goes to its caller only: never into a result,
	// whatever RESULTS_INCLUDE_TOKEN_VALUE says (that is for queued creates,
	// whose result is the only way the value travels).
	published := res.Record
	published.Value = tokens.Secret{}
	h.result.Type, h.result.TokenID, h.result.Record = tokens.Created, res.Record.TokenID, &published
	h.event, h.msg = createdEvent(res.Issued), "create done"
	h.attrs = append([]any{"token_id", res.Record.TokenID, "issued", res.Issued, "revoked_undelivered", len(res.Revoked)}, append(expiryAttrs(res.Record.ExpiresAt), scopeAttrs(res.Record.Scopes)...)...)
	h.status = http.StatusOK
	if res.Issued {
		h.status = http.StatusCreated
	}
	h.header = http.Header{"X-Ms-Request-Id": {id}}
	h.body = api.NewRecord(res.Record, true)
	return h
}

func (s *Server) revokeToken(r *http.Request, log *slog.Logger) httpOutcome {
	var h httpOutcome
	body, err := readBody(r, MaxBody)
	if err != nil {
		return h.refused("revoke", err)
	}
	req, err := tokens.DecodeRevoke(body)
	h, c := s.begin(r, log, "revoke", req.RequestID, req.Workspace, err)
	req.RequestID = c.id
	by := c.by
	if c.err != nil {
		return h.refused("revoke", c.err, "workspace", workspaceText(req.Workspace))
	}
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	res, err := s.svc.Revoke(ctx, by, req)
	if err != nil {
		return h.failedAs("revoke", err, "workspace", workspaceText(req.Workspace))
	}
	h.result.Type, h.result.Workspace, h.result.TokenID, h.result.Revoke = tokens.Revoked, res.Workspace.String(), res.TokenID, &res
	h.event, h.msg = audit.TokenRevoked, "revoke done"
	h.attrs = []any{"workspace", res.Workspace.String(), "token_id", res.TokenID, "status", string(res.Status)}
	h.status, h.body = http.StatusOK, api.RevokeResponse{TokenID: res.TokenID, Status: string(res.Status)}
	return h
}

func (s *Server) listTokens(r *http.Request, log *slog.Logger) httpOutcome {
	var h httpOutcome
	id, err := tokens.ParseListQuery(r.URL.Query().Get("workspaceResourceId"))
	by, perr := s.caller(r, log)
	if err == nil {
		err = perr
	}
	h.log = log.With(append([]any{"action", "list"}, auditAttrs(by)...)...)
	if err != nil {
		return h.refused("list", err)
	}
	h.log = h.log.With("workspace", id.String())
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	list, err := s.svc.List(ctx, by, id)
	if err != nil {
		return h.failedAs("list", err)
	}
	h.event, h.msg, h.attrs = audit.TokensListed, "list done", []any{"count", len(list)}
	h.status, h.body = http.StatusOK, api.NewList(list)
	return h
}

// inventory answers GET /api/tokens: a page of the ledger. The query is
// validated by the token service's rules, which also decides which rows
// the caller may see; this only authenticates. Nothing is published: an
// inventory changes nothing.
func (s *Server) inventory(r *http.Request, log *slog.Logger) httpOutcome {
	var h httpOutcome
	q, err := tokens.ParseInventoryQuery(r.URL.Query())
	by, perr := s.caller(r, log)
	if err == nil {
		err = perr
	}
	h.log = log.With(append([]any{"action", string(tokens.ActionInventory)}, auditAttrs(by)...)...)
	if q.Workspace != (tokens.WorkspaceID{}) {
		h.log = h.log.With("workspace", q.Workspace.String())
	}
	if err != nil {
		return h.refused("inventory", err)
	}
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	page, err := s.svc.Inventory(ctx, by, q)
	if err != nil {
		return h.failedAs("inventory", err)
	}
	h.event, h.msg = audit.TokensInventoried, "inventory done"
	h.attrs = []any{"count", len(page.Entries), "more", page.ContinuationToken != ""}
	h.status, h.body = http.StatusOK, api.NewInventory(page)
	return h
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
	case tokens.CodeNotAuthorized, tokens.CodeUnauthenticated, tokens.CodeDeliveryNotConfigured:
		return audit.TokenRefused, action + " refused"
	}
	return audit.TokenFailed, action + " failed"
}
