package handler

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// queueOutcome is what a queue function did with one message. Queue
// functions return it and touch neither the reply nor the results queue;
// settleQueue, the one place that decides settlement, logs it, publishes
// what it carries and answers the host (2xx: the message completes; 5xx:
// Service Bus redelivers, and past its max delivery count dead-letters).
type queueOutcome struct {
	// log carries the message's fields (request id, workspace, …).
	log *slog.Logger
	// event, msg and attrs are the audit line.
	event audit.Event
	msg   string
	attrs []any
	// result is the outcome as it is published: a Created or Revoked
	// result when publish is set, or, with err, the request id, workspace
	// and correlation of the Failed result.
	result  tokens.Outcome
	publish bool
	// err is the failure. Its code decides, with the delivery count,
	// what happens (failureSettlement); final makes a transient failure
	// final (the wait for a workspace ended).
	err   error
	final bool
	// reply is the Logs line of a success.
	reply string
}

func (q queueOutcome) done(ev audit.Event, msg, reply string, attrs ...any) queueOutcome {
	q.event, q.msg, q.reply, q.attrs = ev, msg, reply, attrs
	return q
}

// published is done, with q.result to publish before the message completes.
func (q queueOutcome) published(ev audit.Event, msg, reply string, attrs ...any) queueOutcome {
	q = q.done(ev, msg, reply, attrs...)
	q.publish = true
	return q
}

func (q queueOutcome) failed(ev audit.Event, msg string, err error, attrs ...any) queueOutcome {
	q.event, q.msg, q.err, q.attrs = ev, msg, err, attrs
	return q
}

type queueFunc func(r *http.Request, log *slog.Logger, msg queueMessage) queueOutcome

// queueFunction adapts a queue function to the host's invocation: it reads
// the envelope, runs the function and settles what it returns.
func (s *Server) queueFunction(fn queueFunc) invocationFunc {
	return func(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
		start := time.Now()
		msg, err := s.readMessage(r)
		log = log.With("message_id", msg.MessageID, "delivery_count", msg.DeliveryCount, "caller", "queue")
		var q queueOutcome
		if err != nil {
			q = badEnvelope(r, msg, err)
		} else {
			q = fn(r, log, msg)
		}
		if q.log == nil {
			q.log = log
		}
		s.settleQueue(w, r, start, msg, q)
	}
}

// failureSettlement is the settlement table of a failed delivery: whether
// its Failed result is published first, and the status that answers the
// host. A failure that can never succeed publishes Failed and completes; a
// transient one fails the invocation so Service Bus redelivers, and on the
// last delivery publishes Failed first (the message is dead-lettered next).
// Whatever it says, a Failed result that cannot be published turns the
// answer into 503 (settleQueue): completing the message would lose it.
func failureSettlement(code tokens.Code, final bool, delivery, maxDeliveries int) (publish bool, status int) {
	switch {
	case !code.Transient() || final:
		return true, http.StatusOK
	case delivery >= maxDeliveries:
		return true, statusOf(code)
	default:
		return false, statusOf(code)
	}
}

// settleQueue answers the host for q.
func (s *Server) settleQueue(w http.ResponseWriter, r *http.Request, start time.Time, msg queueMessage, q queueOutcome) {
	log := q.log
	if q.err != nil {
		e := tokens.AsError(q.err)
		logOutcome(log, start, q.event, q.msg, e, q.attrs...)
		publish, status := failureSettlement(e.Code, q.final, msg.DeliveryCount, s.opts.MaxDeliveryCount)
		if publish {
			o := q.result
			o.Type, o.Err, o.Record, o.Revoke = tokens.Failed, e, nil, nil
			if perr := s.publishOutcome(r, o); perr != nil {
				log.Error("publish failed result", "event", string(audit.TokenFailed), "error", perr.Error())
				reply(w, http.StatusServiceUnavailable, "failed, and the Failed result could not be published; Service Bus will redeliver")
				return
			}
		}
		switch {
		case status < 300:
			reply(w, status, fmt.Sprintf("failed permanently: %s: %s", e.Code, e.Message))
		case publish:
			reply(w, status, fmt.Sprintf("failed on the last delivery (%d of %d), Failed result published: %s: %s", msg.DeliveryCount, s.opts.MaxDeliveryCount, e.Code, e.Message))
		default:
			reply(w, status, fmt.Sprintf("failed, Service Bus will redeliver (delivery %d of %d): %s: %s", msg.DeliveryCount, s.opts.MaxDeliveryCount, e.Code, e.Message))
		}
		return
	}
	if q.publish {
		if perr := s.publishOutcome(r, q.result); perr != nil {
			s.undelivered(w, r, log, start, q, perr)
			return
		}
	}
	logOutcome(log, start, q.event, q.msg, nil, q.attrs...)
	reply(w, http.StatusOK, q.reply)
}

// undelivered answers for a success whose result could not be published:
// the invocation fails (503) so Service Bus redelivers. With Key Vault the
// value is safe in the vault and the redelivery finds it. Inline, the
// value travelled only in this result and is lost: the token is revoked
// now, whatever the delivery count (on the last delivery there is no
// redelivery to do it), and the redelivery issues another.
func (s *Server) undelivered(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, q queueOutcome, perr error) {
	cause := upstream.Unavailable("Azure Service Bus", 0, perr)
	o := q.result
	switch {
	case o.Record == nil || o.Record.Value.IsZero():
		logOutcome(log, start, audit.TokenFailed, q.msg+", but the result was not published", cause, "token_id", o.TokenID)
		reply(w, http.StatusServiceUnavailable, "done, but the result could not be published; Service Bus will redeliver")
	default:
		if werr := s.svc.Withdraw(r.Context(), *o.Record); werr != nil {
			logOutcome(log, start, audit.TokenFailed, "token not delivered, and revoking it failed", cause, "token_id", o.TokenID, "revoke_error", tokens.AsError(werr).Message)
			reply(w, http.StatusServiceUnavailable, "issued a token but could not publish the result, nor revoke the token; Service Bus will redeliver, and the redelivery revokes it")
			return
		}
		logOutcome(log, start, audit.TokenFailed, "token not delivered; it was revoked", cause, "token_id", o.TokenID)
		reply(w, http.StatusServiceUnavailable, "could not publish the result that carried the token, so the token was revoked; Service Bus will redeliver")
	}
}
