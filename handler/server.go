// Package handler is the custom handler's HTTP surface: the only code that
// knows net/http and the Functions host's invocation envelope. It decodes
// what the host sends, calls the token service, publishes the outcome, and
// answers in the contract's shape: an HTTP status for HTTP functions, and
// for queue functions a 2xx (the message completes) or a 5xx (Service Bus
// redelivers).
package handler

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/google/uuid"

	"github.com/contoso/databricks-token-broker/internal/api"
	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// Service is what the handler needs of the token service.
// Each call names the caller; the service authorizes it.
type Service interface {
	Create(ctx context.Context, by tokens.Caller, req tokens.CreateRequest, opts tokens.CreateOptions) (tokens.CreateResult, error)
	Revoke(ctx context.Context, by tokens.Caller, req tokens.RevokeRequest) (tokens.RevokeResult, error)
	List(ctx context.Context, by tokens.Caller, id tokens.WorkspaceID) ([]tokens.TokenSummary, error)
	Inventory(ctx context.Context, by tokens.Caller, q tokens.InventoryQuery) (tokens.InventoryPage, error)
	EnsureLive(ctx context.Context, by tokens.Caller, id tokens.WorkspaceID, opts tokens.EnsureOptions) (tokens.CreateResult, error)
	Rotate(ctx context.Context, opts tokens.RotateOptions) ([]tokens.Outcome, error)
	Sweep(ctx context.Context, opts tokens.SweepOptions) ([]tokens.Outcome, error)
	// Withdraw revokes an issued token whose value can no longer reach
	// anyone (its inline result could not be published).
	Withdraw(ctx context.Context, rec tokens.Record) error
}

// Publisher sends outcomes to the results queue, and schedules a queue
// message for later (a workspace that is not ready yet).
type Publisher interface {
	Publish(ctx context.Context, o tokens.Outcome) error
	Schedule(ctx context.Context, queue string, body []byte, messageID string, props map[string]any, at time.Time) error
}

// Options configure the handler.
type Options struct {
	Limits       tokens.Limits
	RetryBudget  time.Duration
	RotateBefore time.Duration
	// EventTokenScopes are the scopes of tokens issued for workspace events
	// (EVENT_TOKEN_SCOPES; none: unscoped).
	EventTokenScopes []string
	// MaxDeliveryCount is the queues' max delivery count: the delivery that
	// reaches it is the last, and publishes its failure before Service Bus
	// dead-letters the message.
	MaxDeliveryCount int
	// Queue names, for scheduling a retry of a message on its own queue.
	TokenRequestsQueue   string
	WorkspaceEventsQueue string
	// NotReadyAttempts and NotReadyBackoff bound the wait for a workspace
	// that is still being provisioned: each attempt reschedules the message
	// NotReadyBackoff × 2^attempt later (at most 15 minutes).
	NotReadyAttempts int
	NotReadyBackoff  time.Duration
	// Policy is AUTHZ_POLICY (nil: none). The service applies it; the
	// handler only needs to know whether callers must be authenticated.
	Policy *authz.Policy
	// TrustCallerHeaders: the platform vouches for the caller headers
	// (config.TrustsCallerHeaders). Without it callers are unknown.
	TrustCallerHeaders bool
	Now                func() time.Time
}

// Server serves the functions.
type Server struct {
	log  *slog.Logger
	svc  Service
	pub  Publisher // nil: results are not published
	opts Options
}

// New returns the handler for every function folder.
func New(log *slog.Logger, svc Service, pub Publisher, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxDeliveryCount == 0 {
		opts.MaxDeliveryCount = 10
	}
	if opts.NotReadyAttempts == 0 {
		opts.NotReadyAttempts = 10
	}
	if opts.NotReadyBackoff == 0 {
		opts.NotReadyBackoff = 30 * time.Second
	}
	s := &Server{log: log, svc: svc, pub: pub, opts: opts}
	return s.routes()
}

// publishTimeout bounds the publish of one result, which runs on a context
// of its own so the outcome gets out even when the budget is spent.
const publishTimeout = 15 * time.Second

// LongestOperation is the longest one create, revoke, list or queue
// message can take: the retry budget, then clean-up after a failure
// (tokens.CleanupTimeout), then the result's publish, each with a deadline
// of its own. The server's write timeout and the drain on shutdown are
// sized from it; a rotation run lifts the write deadline for itself.
func LongestOperation(budget time.Duration) time.Duration {
	return budget + tokens.CleanupTimeout + publishTimeout
}

// MaxBody is the largest request or envelope the handler reads.
const MaxBody = 64 << 10

// maxEnvelope bounds a queue envelope: a 64 KiB message body, encoded
// twice (quotes escaped), plus the host's metadata.
const maxEnvelope = 4*MaxBody + 64<<10

type invocationFunc func(w http.ResponseWriter, r *http.Request, log *slog.Logger)

// invocation wraps every function: a logger that carries the host's
// invocation id, and a recover that turns a panic into a 500 in the
// contract's shape (a panic's value is logged, never a request body).
func (s *Server) invocation(function string, h invocationFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Azure-Functions-InvocationId")
		if id == "" {
			id = uuid.NewString()
		}
		stats := upstream.NewStats()
		r = r.WithContext(upstream.WithStats(r.Context(), stats))
		log := slog.New(auditHandler{Handler: s.log.Handler(), stats: stats}).With("function", function, "invocation_id", id)
		defer func() {
			if v := recover(); v != nil {
				log.Error("panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, &tokens.Error{Code: tokens.CodeInternal, Message: "internal error"})
			}
		}()
		h(w, r, log)
	})
}

func (s *Server) budget(ctx context.Context) (context.Context, context.CancelFunc) {
	return upstream.WithBudget(ctx, s.opts.RetryBudget)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := api.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"InternalError","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, err error) {
	e := tokens.AsError(err)
	status := statusOf(e.Code)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
	writeJSON(w, status, api.NewError(e))
}

// logOutcome writes the one line per invocation (per outcome, for the
// timer): its stable event name (internal/audit), what happened, and for a
// failure the cause (which never holds a secret).
func logOutcome(log *slog.Logger, start time.Time, ev audit.Event, msg string, err error, attrs ...any) {
	attrs = append(attrs, "event", string(ev), "duration_ms", time.Since(start).Milliseconds())
	if err == nil {
		log.Info(msg, attrs...)
		return
	}
	e := tokens.AsError(err)
	attrs = append(attrs, errorAttrs(e)...)
	if e.Code == tokens.CodeInternal {
		log.Error(msg, attrs...)
	} else {
		log.Warn(msg, attrs...)
	}
}
