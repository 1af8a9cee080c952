package handler

import (
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
		err = tokens.FieldError(tokens.CodeInvalidRequest, "action", fmt.Sprintf("action %q is not one of create, revoke", clip(*action, 40)))
	}
	if action != nil {
		cmd.action = clip(*action, 40)
	}
	return cmd, err
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// settle answers the host for a queue invocation that failed, following
// the contract: a failure that can never succeed publishes Failed and
// completes; a transient one fails the invocation so Service Bus redelivers,
// except on the last delivery, which publishes Failed first.
func (s *Server) settle(w http.ResponseWriter, r *http.Request, log *slog.Logger, msg queueMessage, o tokens.Outcome, err error) {
	e := tokens.AsError(err)
	o.Type, o.Err = tokens.Failed, e
	last := msg.DeliveryCount >= s.opts.MaxDeliveryCount
	if !e.Code.Transient() || last {
		if perr := s.publishOutcome(r, o); perr != nil {
			// The failure could not be reported: keep the message, so a
			// redelivery tries again (and the last one dead-letters it,
			// where an operator sees it). Completing it would lose it.
			log.Error("publish failed result", "error", perr.Error())
			reply(w, http.StatusServiceUnavailable, "failed, and the Failed result could not be published; Service Bus will redeliver")
			return
		}
		if !e.Code.Transient() {
			reply(w, http.StatusOK, fmt.Sprintf("failed permanently: %s: %s", e.Code, e.Message))
			return
		}
	}
	reply(w, statusOf(e.Code), fmt.Sprintf("failed, Service Bus will redeliver (delivery %d of %d): %s: %s", msg.DeliveryCount, s.opts.MaxDeliveryCount, e.Code, e.Message))
}

func (s *Server) tokenRequests(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	msg, err := s.readMessage(w, r)
	if err != nil {
		s.badEnvelope(w, r, log, start, msg, err)
		return
	}
	log = log.With("message_id", msg.MessageID, "delivery_count", msg.DeliveryCount, "caller", "queue")
	reqID := messageRequestID(msg)
	cmd, err := decodeCommand(msg.Body, s.opts.Limits)
	o := tokens.Outcome{RequestID: reqID, CorrelationID: msg.MessageID, RequestedBy: "queue"}
	if cmd.create.RequestID != "" {
		reqID = cmd.create.RequestID
	} else if cmd.revoke.RequestID != "" {
		reqID = cmd.revoke.RequestID
	}
	o.RequestID = reqID
	log = log.With("request_id", reqID, "action", cmd.action)
	if err != nil {
		o.Workspace = workspaceText(cmd.create.Workspace)
		if o.Workspace == "" {
			o.Workspace = workspaceText(cmd.revoke.Workspace)
		}
		logOutcome(log, start, audit.TokenRefused, "command refused", err)
		s.settle(w, r, log, msg, o, err)
		return
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
		o.Workspace = req.Workspace.String()
		log = log.With("workspace", o.Workspace)
		if !s.canDeliver() {
			err := &tokens.Error{Code: tokens.CodeDeliveryNotConfigured,
				Message: "a queued create needs somewhere to deliver the token: set KEY_VAULT_URI, or RESULTS_INCLUDE_TOKEN_VALUE=true"}
			logOutcome(log, start, audit.TokenRefused, "create refused", err)
			s.settle(w, r, log, msg, o, err)
			return
		}
		res, err := s.svc.Create(ctx, queueCaller, req, tokens.CreateOptions{ReissueUndelivered: msg.DeliveryCount > 1})
		if err != nil {
			s.notReadyOrSettle(w, r, log, start, msg, o, err, s.opts.TokenRequestsQueue)
			return
		}
		o.Type, o.TokenID, o.Record = tokens.Created, res.Record.TokenID, &res.Record
		if !s.deliverResult(w, r, log, start, o, "create") {
			return
		}
		logOutcome(log, start, createdEvent(res.Issued), "create done", nil, append([]any{"token_id", res.Record.TokenID, "issued", res.Issued, "revoked_undelivered", len(res.Revoked)}, append(expiryAttrs(res.Record.ExpiresAt), scopeAttrs(res.Record.Scopes)...)...)...)
		reply(w, http.StatusOK, "token "+res.Record.TokenID+" ready for request "+reqID)
	case "revoke":
		req := cmd.revoke
		req.RequestID = reqID
		o.Workspace = workspaceText(req.Workspace)
		res, err := s.svc.Revoke(ctx, queueCaller, req)
		if err != nil {
			logOutcome(log, start, audit.TokenFailed, "revoke failed", err)
			s.settle(w, r, log, msg, o, err)
			return
		}
		o.Type, o.Workspace, o.TokenID, o.Revoke = tokens.Revoked, res.Workspace.String(), res.TokenID, &res
		if err := s.publishOutcome(r, o); err != nil {
			logOutcome(log, start, audit.TokenFailed, "revoke not reported", upstream.Unavailable("Azure Service Bus", 0, err), "token_id", res.TokenID)
			reply(w, http.StatusServiceUnavailable, "revoked, but could not publish the result; Service Bus will redeliver")
			return
		}
		logOutcome(log, start, audit.TokenRevoked, "revoke done", nil, "token_id", res.TokenID, "status", string(res.Status))
		reply(w, http.StatusOK, "token "+res.TokenID+" "+string(res.Status))
	}
}

// deliverResult publishes the Created result of a queued create or event.
// If the publish fails, the invocation fails (503) so Service Bus
// redelivers. With Key Vault the value is safe in the vault and the
// redelivery finds it. Inline, the value travelled only in this result and
// is lost: the token is revoked now, whatever the delivery count (on the
// last delivery there is no redelivery to do it), and the redelivery
// issues another. It reports whether the result got out.
func (s *Server) deliverResult(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, o tokens.Outcome, what string) bool {
	perr := s.publishOutcome(r, o)
	if perr == nil {
		return true
	}
	cause := upstream.Unavailable("Azure Service Bus", 0, perr)
	if o.Record.Value.IsZero() {
		logOutcome(log, start, audit.TokenFailed, what+" not reported", cause, "token_id", o.TokenID)
		reply(w, http.StatusServiceUnavailable, "issued a token but could not publish the result; Service Bus will redeliver")
		return false
	}
	if werr := s.svc.Withdraw(r.Context(), *o.Record); werr != nil {
		logOutcome(log, start, audit.TokenFailed, what+" not delivered, and revoking the undelivered token failed", cause, "token_id", o.TokenID, "revoke_error", tokens.AsError(werr).Message)
		reply(w, http.StatusServiceUnavailable, "issued a token but could not publish the result, nor revoke the token; Service Bus will redeliver, and the redelivery revokes it")
		return false
	}
	logOutcome(log, start, audit.TokenFailed, what+" not delivered; the token was revoked", cause, "token_id", o.TokenID)
	reply(w, http.StatusServiceUnavailable, "could not publish the result that carried the token, so the token was revoked; Service Bus will redeliver")
	return false
}

// canDeliver reports whether a queued create has somewhere to put the value.
func (s *Server) canDeliver() bool {
	return s.opts.Limits.KeyVault || (s.opts.ResultsIncludeTokenValue && s.pub != nil)
}

func (s *Server) workspaceEvents(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	start := time.Now()
	msg, err := s.readMessage(w, r)
	if err != nil {
		s.badEnvelope(w, r, log, start, msg, err)
		return
	}
	log = log.With("message_id", msg.MessageID, "delivery_count", msg.DeliveryCount, "caller", "queue")
	ev, err := events.Decode(msg.Body)
	o := tokens.Outcome{RequestID: messageRequestID(msg), CorrelationID: msg.MessageID, RequestedBy: "queue"}
	if err != nil {
		err = &tokens.Error{Code: tokens.CodeInvalidRequest, Message: "the message is not an Event Grid or CloudEvents 1.0 event", Err: err}
		logOutcome(log, start, audit.TokenRefused, "event refused", err)
		s.settle(w, r, log, msg, o, err)
		return
	}
	log = log.With("event_id", ev.ID, "event_type", ev.Type)
	if !ev.IsWorkspaceWrite() {
		logOutcome(log, start, audit.MessageIgnored, "event ignored", nil, "operation", ev.OperationName)
		reply(w, http.StatusOK, "ignored event "+ev.ID+" ("+ev.Type+")")
		return
	}
	if _, given := msg.Properties[propRequestID]; !given {
		o.RequestID = eventRequestID(ev.ID)
	}
	id, perr := tokens.ParseWorkspaceID(ev.Resource())
	if perr != nil {
		err := &tokens.Error{Code: tokens.CodeInvalidRequest, Target: "data.resourceUri", Message: "the event's resource is not a Databricks workspace id: " + perr.Error()}
		logOutcome(log, start, audit.TokenRefused, "event refused", err)
		s.settle(w, r, log, msg, o, err)
		return
	}
	o.Workspace = id.String()
	log = log.With("request_id", o.RequestID, "workspace", o.Workspace, "action", "create")
	if !s.canDeliver() {
		err := &tokens.Error{Code: tokens.CodeDeliveryNotConfigured,
			Message: "workspace events need somewhere to deliver the token: set KEY_VAULT_URI, or RESULTS_INCLUDE_TOKEN_VALUE=true"}
		logOutcome(log, start, audit.TokenRefused, "event refused", err)
		s.settle(w, r, log, msg, o, err)
		return
	}
	ctx, cancel := s.budget(r.Context())
	defer cancel()
	res, err := s.svc.EnsureLive(ctx, queueCaller, id, tokens.EnsureOptions{RequestID: o.RequestID, Lifetime: s.opts.Limits.DefaultLifetime,
		RotateBefore: s.opts.RotateBefore, ReissueUndelivered: msg.DeliveryCount > 1, Scopes: tokens.Scopes{List: s.opts.EventTokenScopes}})
	if err != nil {
		s.notReadyOrSettle(w, r, log, start, msg, o, err, s.opts.WorkspaceEventsQueue)
		return
	}
	if !res.Issued {
		logOutcome(log, start, audit.TokenReused, "event: workspace already has a live token", nil)
		reply(w, http.StatusOK, "workspace already has a live managed token")
		return
	}
	o.Type, o.TokenID, o.Record = tokens.Created, res.Record.TokenID, &res.Record
	if !s.deliverResult(w, r, log, start, o, "event token") {
		return
	}
	logOutcome(log, start, audit.TokenIssued, "event: token issued", nil, append([]any{"token_id", res.Record.TokenID, "revoked_undelivered", len(res.Revoked)}, append(expiryAttrs(res.Record.ExpiresAt), scopeAttrs(res.Record.Scopes)...)...)...)
	reply(w, http.StatusOK, "issued token "+res.Record.TokenID+" for workspace event "+ev.ID)
}

// notReadyOrSettle handles a failed queue operation. A workspace that is
// still being provisioned is waited for by rescheduling the message with
// a growing delay (and completing this delivery), rather than burning the
// queue's deliveries in a minute; everything else settles as usual.
func (s *Server) notReadyOrSettle(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, msg queueMessage, o tokens.Outcome, err error, queue string) {
	e := tokens.AsError(err)
	if e.Code != tokens.CodeWorkspaceNotReady || s.pub == nil || queue == "" {
		ev, _ := failure(err, "operation")
		logOutcome(log, start, ev, "operation failed", err)
		s.settle(w, r, log, msg, o, err)
		return
	}
	attempt, ok := retryAttempt(msg.Properties[propAttempt], s.opts.NotReadyAttempts)
	if !ok {
		log.Warn("ignoring an unusable "+propAttempt+" message property", "value", clip(fmt.Sprint(msg.Properties[propAttempt]), 40))
	}
	if attempt+1 >= s.opts.NotReadyAttempts {
		final := &tokens.Error{Code: tokens.CodeWorkspaceNotReady, Message: e.Message + fmt.Sprintf("; gave up after %d attempts", attempt+1), Err: e.Err}
		logOutcome(log, start, audit.TokenFailed, "workspace never became ready", final)
		o.Type, o.Err = tokens.Failed, final
		if perr := s.publishOutcome(r, o); perr != nil {
			reply(w, http.StatusServiceUnavailable, "could not publish the failure; Service Bus will redeliver")
			return
		}
		reply(w, http.StatusOK, "gave up waiting for the workspace")
		return
	}
	delay := notReadyDelay(s.opts.NotReadyBackoff, attempt)
	props := map[string]any{propAttempt: int64(attempt + 1), propRequestID: o.RequestID}
	for k, v := range msg.Properties {
		if _, ours := props[k]; !ours && scalar(v) {
			props[k] = v // the sender's own properties travel with the copy
		}
	}
	next := fmt.Sprintf("%s/retry-%d", o.RequestID, attempt+1)
	ctx, cancel := upstream.Detached(r.Context(), 15*time.Second)
	defer cancel()
	if serr := s.pub.Schedule(ctx, queue, msg.Body, next, props, s.opts.Now().Add(delay)); serr != nil {
		logOutcome(log, start, audit.TokenFailed, "could not reschedule; Service Bus will redeliver", err, "schedule_error", serr.Error())
		reply(w, http.StatusServiceUnavailable, "workspace not ready and the retry could not be scheduled")
		return
	}
	logOutcome(log, start, audit.MessageRescheduled, "workspace not ready; rescheduled", nil, "attempt", attempt+1, "delay_s", int(delay.Seconds()))
	reply(w, http.StatusOK, fmt.Sprintf("workspace not ready; retry %d scheduled in %s", attempt+1, delay))
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
	if v, ok := msg.Properties[propRequestID].(string); ok && tokens.ValidRequestID(v) == nil {
		return v
	}
	if tokens.ValidRequestID(msg.MessageID) == nil {
		return msg.MessageID
	}
	return hashID("msg-", msg.MessageID)
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

func (s *Server) readMessage(w http.ResponseWriter, r *http.Request) (queueMessage, error) {
	body, err := readBody(w, r, maxEnvelope)
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

// badEnvelope completes a message whose envelope or body cannot be read at
// all: redelivery cannot change it.
func (s *Server) badEnvelope(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, msg queueMessage, err error) {
	logOutcome(log, start, audit.TokenRefused, "message refused", err, "message_id", msg.MessageID, "caller", "queue")
	o := tokens.Outcome{Type: tokens.Failed, RequestID: messageRequestID(msg), CorrelationID: msg.MessageID, Err: tokens.AsError(err)}
	if msg.MessageID == "" {
		o.RequestID = hashID("inv-", r.Header.Get("X-Azure-Functions-InvocationId"))
	}
	if perr := s.publishOutcome(r, o); perr != nil {
		log.Error("publish failed result", "error", perr.Error())
	}
	reply(w, http.StatusOK, "refused: "+tokens.AsError(err).Message)
}

// publishOutcome publishes on a context of its own: the outcome must get
// out even when the invocation's budget is spent or its caller went away.
func (s *Server) publishOutcome(r *http.Request, o tokens.Outcome) error {
	if s.pub == nil {
		return nil
	}
	ctx, cancel := upstream.Detached(r.Context(), publishTimeout)
	defer cancel()
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

func (s *Server) publishFailure(r *http.Request, log *slog.Logger, requestID, workspace, correlationID, by string, err error) {
	e := tokens.AsError(err)
	s.publish(r, log, tokens.Outcome{Type: tokens.Failed, RequestID: requestID, Workspace: workspace, CorrelationID: correlationID, RequestedBy: by, Err: e})
}
