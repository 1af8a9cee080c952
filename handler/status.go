package handler

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// statusOf is the one place that turns a contract code into an HTTP status.
func statusOf(c tokens.Code) int {
	switch c {
	case tokens.CodeInvalidRequest, tokens.CodeDeliveryNotConfigured:
		return http.StatusBadRequest
	case tokens.CodeUnauthenticated:
		return http.StatusUnauthorized
	case tokens.CodeNotAuthorized, tokens.CodeWorkspaceNotAllowed:
		return http.StatusForbidden
	case tokens.CodeWorkspaceNotFound:
		return http.StatusNotFound
	case tokens.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case tokens.CodeTokenQuotaExceeded:
		return http.StatusConflict
	case tokens.CodeRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case tokens.CodeUpstreamError:
		return http.StatusBadGateway
	case tokens.CodeUpstreamUnavailable, tokens.CodeWorkspaceNotReady:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// retryAfterSeconds renders a Retry-After value in whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
