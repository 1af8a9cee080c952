package handler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/internal/events"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// Application properties the service sets on a message it reschedules
// (a workspace not ready yet): the attempt number, and the original
// request id, since the copy has a MessageId of its own.
const (
	propAttempt   = "dtb-attempt"
	propRequestID = "dtb-request-id"
)

// queueCommand is what a token-requests message asks for.
type queueCommand struct {
	action string
	create tokens.CreateRequest
	revoke tokens.RevokeRequest
}

// decodeCommand reads a token-requests body: {"action":"create",…} or
// {"action":"revoke",…}.
func decodeCommand(body []byte, lim tokens.Limits) (queueCommand, error) {
	var head struct {
		Action json.RawMessage `json:"action"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		e := tokens.FieldError(tokens.CodeInvalidRequest, "body", "the message body is not a JSON object")
		e.Err = err
		return queueCommand{}, e
	}
	var action *string
	if len(head.Action) > 0 && string(head.Action) != "null" {
		var a string
		if json.Unmarshal(head.Action, &a) != nil {
			return queueCommand{}, tokens.FieldError(tokens.CodeInvalidRequest, "action", `action must be the string "create" or "revoke"`)
		}
		action = &a
	}
	var cmd queueCommand
	var err error
	switch {
	case action == nil:
		err = tokens.FieldError(tokens.CodeInvalidRequest, "action", `action is required ("create" or "revoke")`)
	case *action == "create":
		cmd.create, err = tokens.DecodeCreate(body, lim, "action")
	case *action == "revoke":
		cmd.revoke, err = tokens.DecodeRevoke(body, "action")
	default:
		err = tokens.FieldError(tokens.CodeInvalidRequest, "action", fmt.Sprintf("action %q is not one of create, revoke", tokens.Clip(*action, 40)))
	}
	if action != nil {
		cmd.action = tokens.Clip(*action, 40)
	}
	return cmd, err
}

func (s *Server) tokenRequests(r *http.Request, log *slog.Logger, msg queueMessage) queueOutcome {
	reqID := messageRequestID(msg)
	cmd, err := decodeCommand(msg.Body, s.opts.Limits)
	if cmd.create.RequestID != "" {
		reqID = cmd.create.RequestID
	} else if cmd.revoke.RequestID != "" {
		reqID = cmd.revoke.RequestID
	}
	q := queueOutcome{log: log.With("request_id", reqID, "action", cmd.action),
		result: tokens.Outcome{RequestID: reqID, CorrelationID: msg.MessageID, RequestedBy: "queue"}}
	if err != nil {
		q.result.Workspace = workspaceText(cmd.create.Workspace)
		if q.result.Workspace == "" {
			q.result.Workspace = workspaceText(cmd.revoke.Workspace)
		}
		return q.failed(audit.TokenRefused, "command refused", err)
	}
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	switch cmd.action {
	case "create":
		req := cmd.create
		// An earlier attempt can exist only if the caller chose the id (a
		// resent command), the message was delivered before, or it is a
		// rescheduled copy; only then is it worth listing the workspace's
		// tokens first. A first delivery named by its MessageId costs one call.
		_, rescheduled := msg.Properties[propRequestID]
		req.RequestID, req.RequestIDGiven = reqID, req.RequestIDGiven || msg.DeliveryCount > 1 || rescheduled
		q.result.Workspace = req.Workspace.String()
		q.log = q.log.With("workspace", q.result.Workspace)
		res, err := s.svc.Create(ctx, queueCaller, req, tokens.CreateOptions{ReissueUndelivered: msg.DeliveryCount > 1,
			Holder: msg.holder(s.opts.TokenRequestsQueue)})
		if err != nil {
			return s.retryLater(r, msg, q, err, s.opts.TokenRequestsQueue)
		}
		q.result.Type, q.result.TokenID, q.result.Record = tokens.Created, res.Record.TokenID, &res.Record
		return q.published(createdEvent(res.Issued), "create done", "token "+res.Record.TokenID+" ready for request "+reqID,
			append([]any{"token_id", res.Record.TokenID, "issued", res.Issued, "revoked_undelivered", len(res.Revoked)}, append(expiryAttrs(res.Record.ExpiresAt), scopeAttrs(res.Record.Scopes)...)...)...)
	default: // "revoke"
		req := cmd.revoke
		req.RequestID = reqID
		q.result.Workspace = workspaceText(req.Workspace)
		res, err := s.svc.Revoke(ctx, queueCaller, req)
		if tokens.CodeOf(err) == tokens.CodeWorkspaceNotReady {
			// Rescheduled like a create: redelivering at once would spend
			// the deliveries while the workspace is being updated.
			return s.retryLater(r, msg, q, err, s.opts.TokenRequestsQueue)
		}
		if err != nil {
			ev, _ := failure(err, "revoke")
			return q.failed(ev, "revoke failed", err)
		}
		q.result.Type, q.result.Workspace, q.result.TokenID, q.result.Revoke = tokens.Revoked, res.Workspace.String(), res.TokenID, &res
		return q.published(audit.TokenRevoked, "revoke done", "token "+res.TokenID+" "+string(res.Status),
			"token_id", res.TokenID, "status", string(res.Status))
	}
}

func (s *Server) workspaceEvents(r *http.Request, log *slog.Logger, msg queueMessage) queueOutcome {
	ev, err := events.Decode(msg.Body)
	q := queueOutcome{log: log, result: tokens.Outcome{RequestID: messageRequestID(msg), CorrelationID: msg.MessageID, RequestedBy: "queue"}}
	if err != nil {
		err = &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the message is not an Event Grid or CloudEvents 1.0 event", Err: err}
		return q.failed(audit.TokenRefused, "event refused", err)
	}
	q.log = q.log.With("event_id", ev.ID, "event_type", ev.Type)
	if !ev.IsWorkspaceWrite() {
		return q.done(audit.MessageIgnored, "event ignored", "ignored event "+ev.ID+" ("+ev.Type+")", "operation", ev.OperationName)
	}
	// From the event's own id, on a rescheduled copy too (it carries the
	// same event): no property a sender sets can change it.
	q.result.RequestID = eventRequestID(ev.ID)
	id, perr := tokens.ParseWorkspaceID(ev.Resource())
	if perr != nil {
		err := &tokens.Error{Code: tokens.CodeInvalidRequest, Target: "data.resourceUri", Message: "the event's resource is not a Databricks workspace id: " + perr.Error()}
		return q.failed(audit.TokenRefused, "event refused", err)
	}
	q.result.Workspace = id.String()
	q.log = q.log.With("request_id", q.result.RequestID, "workspace", q.result.Workspace, "action", "create")
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	res, err := s.svc.EnsureLive(ctx, queueCaller, id, tokens.EnsureOptions{RequestID: q.result.RequestID, Lifetime: s.opts.Limits.DefaultLifetime,
		RotateBefore: s.opts.RotateBefore, ReissueUndelivered: msg.DeliveryCount > 1, Holder: msg.holder(s.opts.WorkspaceEventsQueue), Scopes: tokens.Scopes{List: s.opts.EventTokenScopes}})
	if err != nil {
		return s.retryLater(r, msg, q, err, s.opts.WorkspaceEventsQueue)
	}
	if !res.Issued {
		return q.done(audit.TokenReused, "event: workspace already has a live token", "workspace already has a live managed token")
	}
	q.result.Type, q.result.TokenID, q.result.Record = tokens.Created, res.Record.TokenID, &res.Record
	return q.published(audit.TokenIssued, "event: token issued", "issued token "+res.Record.TokenID+" for workspace event "+ev.ID,
		append([]any{"token_id", res.Record.TokenID, "revoked_undelivered", len(res.Revoked)}, append(expiryAttrs(res.Record.ExpiresAt), scopeAttrs(res.Record.Scopes)...)...)...)
}

// retryLater turns a failed queue operation into its outcome. A workspace
// that is still being provisioned is waited for by rescheduling the
// message with a growing delay (and completing this delivery), rather than
// burning the queue's deliveries in a minute; after NotReadyAttempts the
// wait ends with a Failed result. Everything else is the failure itself.
func (s *Server) retryLater(r *http.Request, msg queueMessage, q queueOutcome, err error, queue string) queueOutcome {
	e := tokens.AsError(err)
	if e.Code != tokens.CodeWorkspaceNotReady || s.pub == nil || queue == "" {
		ev, _ := failure(err, "operation")
		return q.failed(ev, "operation failed", err)
	}
	attempt, ok := retryAttempt(msg.Properties[propAttempt], s.opts.NotReadyAttempts)
	if !ok {
		q.log.Warn("ignoring an unusable "+propAttempt+" message property", "value", tokens.Clip(fmt.Sprint(msg.Properties[propAttempt]), 40))
	}
	if attempt+1 >= s.opts.NotReadyAttempts {
		final := &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Message: e.Message + fmt.Sprintf("; gave up after %d attempts", attempt+1), Err: e.Err}
		q = q.failed(audit.TokenFailed, "workspace never became ready", final)
		q.final = true
		return q
	}
	delay := notReadyDelay(s.opts.NotReadyBackoff, attempt)
	props := map[string]any{propAttempt: int64(attempt + 1), propRequestID: q.result.RequestID}
	for k, v := range msg.Properties {
		if _, ours := props[k]; !ours && scalar(v) {
			props[k] = v // the sender's own properties travel with the copy
		}
	}
	next := fmt.Sprintf("%s/retry-%d", q.result.RequestID, attempt+1)
	ctx, cancel := upstream.Detached(r.Context(), publishTimeout)
	defer cancel()
	if serr := s.pub.Schedule(ctx, queue, msg.Body, next, props, s.opts.Now().Add(delay)); serr != nil {
		cause := upstream.Unavailable("Azure Service Bus", 0, serr)
		cause.Message = "the workspace is not ready and its retry could not be scheduled: " + cause.Message
		return q.failed(audit.TokenFailed, "could not reschedule", cause, "not_ready", e.Message)
	}
	return q.done(audit.MessageRescheduled, "workspace not ready; rescheduled", fmt.Sprintf("workspace not ready; retry %d scheduled in %s", attempt+1, delay),
		"attempt", attempt+1, "delay_s", int(delay.Seconds()))
}

// maxNotReadyDelay bounds the wait between two tries of a workspace that
// is still being provisioned.
const maxNotReadyDelay = 15 * time.Minute

// notReadyDelay is backoff doubled attempt times, at most maxNotReadyDelay.
func notReadyDelay(backoff time.Duration, attempt int) time.Duration {
	d := backoff
	for i := 0; i < attempt && d < maxNotReadyDelay; i++ {
		d *= 2
	}
	return min(d, maxNotReadyDelay)
}

// retryAttempt reads the attempt number the service set on a rescheduled
// copy. Any sender can set application properties, so the value is input:
// anything but a whole number in [0, max) is unusable (ok false). A number
// past the last attempt counts as the last (the message gives up rather
// than wait); anything else counts as 0, as if absent. Either way the
// handler never crashes on it, and the copy it schedules carries the
// service's own count, never the sender's.
func retryAttempt(v any, max int) (attempt int, ok bool) {
	var n float64
	switch x := v.(type) {
	case nil:
		return 0, true
	case float64:
		n = x
	case int64:
		n = float64(x)
	case int:
		n = float64(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0, false
		}
		n = f
	default:
		return 0, false
	}
	switch {
	case math.IsNaN(n) || n != math.Trunc(n) || n < 0:
		return 0, false
	case n >= float64(max):
		return max - 1, false
	}
	return int(n), true
}

// scalar reports whether v is a value Service Bus application properties
// carry as such (a sender's map or list is not copied to a rescheduled copy).
func scalar(v any) bool {
	switch v.(type) {
	case string, bool, float64, int64, int, json.Number:
		return true
	}
	return false
}

// messageRequestID is a command's request id when its body has none: the
// original id of a rescheduled copy, else the MessageId.
func messageRequestID(msg queueMessage) string {
	if v, ok := msg.Properties[propRequestID].(string); ok && tokens.CallerRequestID(v) == nil {
		return v
	}
	if tokens.CallerRequestID(msg.MessageID) == nil {
		return msg.MessageID
	}
	return hashID("msg-", msg.MessageID) // outside the alphabet, or one of the service's own forms
}

// eventRequestID derives a request id from an Event Grid event id (a GUID
// in practice, but not guaranteed to fit the request-id alphabet).
func eventRequestID(eventID string) string {
	if tokens.ValidRequestID("evt-"+eventID) == nil {
		return "evt-" + eventID
	}
	return hashID("evt-", eventID)
}

func hashID(prefix, s string) string {
	sum := sha256.Sum256([]byte(s))
	return prefix + hex.EncodeToString(sum[:12])
}

func (s *Server) readMessage(r *http.Request) (queueMessage, error) {
	body, err := readBody(r, maxEnvelope)
	if err != nil {
		return queueMessage{}, err
	}
	msg, err := decodeServiceBus(body, "message")
	if err != nil {
		return queueMessage{}, &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the invocation envelope is not the Functions host's", Err: err}
	}
	if len(msg.Body) > MaxBody {
		return msg, tokens.Errorf(tokens.CodeRequestTooLarge, "the message body is %d bytes; the limit is %d", len(msg.Body), MaxBody)
	}
	return msg, nil
}

// badEnvelope is the outcome of a message whose envelope or body cannot be
// read at all (too large, not the host's): redelivery cannot change it, so
// it fails for good, and settles like any other failure: its Failed result
// is published before the message completes, or the host is told 503.
func badEnvelope(r *http.Request, msg queueMessage, err error) queueOutcome {
	o := tokens.Outcome{RequestID: messageRequestID(msg), CorrelationID: msg.MessageID}
	if msg.MessageID == "" {
		o.RequestID = hashID("inv-", r.Header.Get("X-Azure-Functions-InvocationId"))
	}
	q := queueOutcome{result: o, final: true}
	return q.failed(audit.TokenRefused, "message refused", err)
}

// publishOutcome publishes on a context of its own: the outcome must get
// out even when the invocation's budget is spent or its caller went away.
func (s *Server) publishOutcome(r *http.Request, o tokens.Outcome) error {
	ctx, cancel := upstream.Detached(r.Context(), publishTimeout)
	defer cancel()
	return s.publishIn(ctx, o)
}

// publishIn publishes o within ctx.
func (s *Server) publishIn(ctx context.Context, o tokens.Outcome) error {
	if s.pub == nil {
		return nil
	}
	began := time.Now()
	err := s.pub.Publish(ctx, o)
	upstream.Record(ctx, upstream.ServiceServiceBus, time.Since(began), 0)
	return err
}

// publish is publishOutcome for HTTP functions, whose caller already has
// the answer: a failure to publish is logged, not returned.
func (s *Server) publish(r *http.Request, log *slog.Logger, o tokens.Outcome) {
	if err := s.publishOutcome(r, o); err != nil {
		log.Error("publish result", "type", string(o.Type), "error", err.Error())
	}
}
