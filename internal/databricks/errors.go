package databricks

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// apiError is a Databricks error answer, whatever shape it came in.
type apiError struct {
	Status     int
	Code       string // error_code, e.g. PERMISSION_DENIED; may be empty
	Message    string
	RetryAfter string
	resp       *http.Response
}

const maxErrorBody = 16 << 10

// parseError reads an error body the way the Databricks SDK does: JSON
// ({"error_code","message"}) first, then "CODE: message" plain text, then
// the text of an HTML page's <pre> (gateways answer 403 that way), then
// the raw text. The body of an error never holds a token value.
func parseError(resp *http.Response) apiError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := parseErrorBody(resp.StatusCode, b)
	e.resp = resp
	e.RetryAfter = resp.Header.Get("Retry-After")
	return e
}

var (
	plainCodeRE = regexp.MustCompile(`^([A-Z][A-Z0-9_]{2,}): (.+)$`)
	preRE       = regexp.MustCompile(`(?is)<pre>(.*?)</pre>`)
	tagRE       = regexp.MustCompile(`(?s)<[^>]*>`)
	spaceRE     = regexp.MustCompile(`\s+`)
)

func parseErrorBody(status int, b []byte) apiError {
	e := apiError{Status: status}
	text := strings.TrimSpace(string(b))
	var j struct {
		ErrorCode string `json:"error_code"`
		Message   string `json:"message"`
		Error     string `json:"error"`
	}
	if json.Unmarshal(b, &j) == nil && (j.ErrorCode != "" || j.Message != "" || j.Error != "") {
		e.Code, e.Message = j.ErrorCode, j.Message
		if e.Message == "" {
			e.Message = j.Error
		}
		return e
	}
	if m := plainCodeRE.FindStringSubmatch(firstLine(text)); m != nil {
		e.Code, e.Message = m[1], m[2]
		return e
	}
	if strings.Contains(strings.ToLower(text), "<html") || strings.Contains(strings.ToLower(text), "<pre>") {
		if m := preRE.FindStringSubmatch(text); m != nil {
			text = m[1]
		}
		text = html.UnescapeString(tagRE.ReplaceAllString(text, " "))
	}
	e.Message = tokens.Clip(spaceRE.ReplaceAllString(strings.TrimSpace(text), " "), 300)
	return e
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

func (e apiError) notFound() bool {
	return e.Status == http.StatusNotFound || e.Code == "RESOURCE_DOES_NOT_EXIST" ||
		strings.Contains(e.Message, "No valid token with ID")
}

func (e apiError) describe() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// translate maps the answer to the contract's codes, with a message that
// says what to fix where one is known.
func (e apiError) translate(op string) error {
	detail := e.describe()
	cause := fmt.Errorf("databricks: %s: %s", op, detail)
	msg := func(s string) *tokens.Error {
		return &tokens.Error{Code: tokens.CodeUpstreamError, Message: s, Err: cause, Upstream: upstream.ServiceDatabricks}
	}
	// denied is a refusal of the function's identity: it lost (or never
	// had) its membership, CAN USE on tokens, or Contributor.
	denied := func(s string) *tokens.Error {
		e := msg(s)
		e.PermissionDenied = true
		return e
	}
	switch {
	case e.Code == "QUOTA_EXCEEDED":
		return &tokens.Error{Code: tokens.CodeTokenQuotaExceeded, Err: cause, Upstream: upstream.ServiceDatabricks,
			Message: "the function's identity already holds the maximum number of live tokens in this workspace (600): revoke some first"}
	case e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable || e.Status >= 500 ||
		e.Code == "REQUEST_LIMIT_EXCEEDED" || e.Code == "TEMPORARILY_UNAVAILABLE":
		return upstream.Unavailable("Azure Databricks", upstream.RetryAfter(e.resp), cause)
	case strings.Contains(e.Message, "Management API token must be provided"):
		return denied("Azure Databricks does not know the function's identity yet and needs it to be able to join: give the identity Contributor on the workspace resource (or add it to the workspace with CAN USE on tokens). Databricks said: " + detail)
	case strings.Contains(e.Message, "does not have permission to use tokens"):
		return denied("the function's identity lacks the CAN USE permission on tokens in this workspace (Settings > Advanced > Personal Access Tokens > Permission Settings). Databricks said: " + detail)
	case strings.Contains(e.Message, "On-behalf-of token creation"):
		return msg("Azure Databricks refused on-behalf-of token creation. Databricks said: " + detail)
	case strings.Contains(strings.ToLower(e.Message), "invalid access token") || e.Status == http.StatusUnauthorized:
		return denied("Azure Databricks did not accept the function's Entra token (is the identity a member of the workspace, or does it hold Contributor on it?). Databricks said: " + detail)
	case e.Status == http.StatusForbidden || e.Code == "PERMISSION_DENIED":
		return denied("Azure Databricks refused: " + detail)
	case e.Code == "INVALID_PARAMETER_VALUE" || e.Code == "INVALID_STATE" || e.Status == http.StatusBadRequest:
		return &tokens.Error{Code: tokens.CodeInvalidRequest, Err: cause, Upstream: upstream.ServiceDatabricks, Message: "Azure Databricks rejected the request: " + detail}
	}
	return msg("Azure Databricks refused to " + op + ": " + detail)
}
