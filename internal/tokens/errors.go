package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Code is the machine-readable error code of the contract (section 2, "Errors").
// Every failure the service reports carries exactly one Code; the transports
// (handler package) turn it into an HTTP status or a Service Bus settlement.
type Code string

// The contract's error codes.
const (
	CodeInvalidRequest        Code = "InvalidRequest"
	CodeUnauthenticated       Code = "Unauthenticated"
	CodeNotAuthorized         Code = "NotAuthorized"
	CodeWorkspaceNotAllowed   Code = "WorkspaceNotAllowed"
	CodeWorkspaceNotFound     Code = "WorkspaceNotFound"
	CodeMethodNotAllowed      Code = "MethodNotAllowed"
	CodeTokenQuotaExceeded    Code = "TokenQuotaExceeded"
	CodeRequestTooLarge       Code = "RequestTooLarge"
	CodeUpstreamError         Code = "UpstreamError"
	CodeUpstreamUnavailable   Code = "UpstreamUnavailable"
	CodeWorkspaceNotReady     Code = "WorkspaceNotReady"
	CodeDeliveryNotConfigured Code = "DeliveryNotConfigured"
	CodeInternal              Code = "InternalError"
)

// Transient reports whether retrying later may succeed. Queue messages that
// fail with a transient code are redelivered; all others complete with a
// Failed result.
func (c Code) Transient() bool {
	switch c {
	case CodeUpstreamUnavailable, CodeWorkspaceNotReady, CodeInternal:
		return true
	}
	return false
}

// Detail is one problem with a request, reported to the caller.
type Detail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// Error is the service's error. Message, Target and Details are safe to show
// to callers: they never hold a token value or an access token. Err is the
// underlying cause, for logs only (it is also free of secrets: adapters never
// wrap response bodies that could carry one).
type Error struct {
	Code    Code
	Message string
	Target  string
	Details []Detail
	// RetryAfter is how long a caller should wait before trying again
	// (UpstreamUnavailable, WorkspaceNotReady); zero means "not said".
	RetryAfter time.Duration
	// Upstream names the service whose answer caused the error ("entra",
	// "arm", "databricks", "keyvault", "servicebus"), when one did.
	Upstream string
	// PermissionDenied: that service refused the function's identity (a
	// role, membership or permission is missing), which retrying will not
	// fix; an operator must grant it again.
	PermissionDenied bool
	Err              error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted caller-facing message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error, translating context expiry into
// UpstreamUnavailable and anything unknown into InternalError, so that every
// error reaching a transport has a contract code.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeUpstreamUnavailable, Message: "an upstream service did not answer within the retry budget", RetryAfter: time.Second, Err: err}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}

// CodeOf returns the contract code of err; empty for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	return AsError(err).Code
}

// FieldError is an error about one field of a request: code (usually
// InvalidRequest) with a single detail naming the field, so a caller's
// tooling finds the problem the same way as for body validation.
func FieldError(code Code, target, msg string) *Error {
	return &Error{Code: code, Target: target, Message: msg, Details: []Detail{{Code: "InvalidField", Target: target, Message: msg}}}
}
