package ledger

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

const service = "Azure Table Storage (the ledger)"

// translate turns a Table Storage failure into the service's error, once.
// 409 and 412 never get here: they are outcomes the callers handle.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*tokens.Error](err); ok {
		return e
	}
	err = redact(err)
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == http.StatusForbidden && re.ErrorCode == "KeyBasedAuthenticationNotPermitted":
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
				Message: fmt.Sprintf("%s refused to %s: the storage account does not accept shared keys; use AzureWebJobsStorage__tableServiceUri (the function's identity) instead of a connection string", service, op)}
		case re.StatusCode == http.StatusForbidden && re.ErrorCode == "AuthenticationFailed":
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
				Message: fmt.Sprintf("%s refused to %s (AuthenticationFailed): check the AzureWebJobsStorage connection string's account key or signature", service, op)}
		case re.StatusCode == http.StatusForbidden:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
				Message: fmt.Sprintf("%s refused to %s (%s): give the function's identity Storage Table Data Contributor on the ledger table (LEDGER_TABLE) or its storage account", service, op, re.ErrorCode)}
		case re.StatusCode == http.StatusUnauthorized:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
				Message: fmt.Sprintf("%s did not accept the function's credentials to %s (%s)", service, op, re.ErrorCode)}
		case re.ErrorCode == string(aztables.TableNotFound):
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
				Message: fmt.Sprintf("%s: the ledger table (LEDGER_TABLE) does not exist and could not be created", service)}
		}
	}
	if e := upstream.Common(service, err); e != nil {
		return e
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		// No answer at all (refused, reset, DNS): unreachable for now.
		return unavailable(err)
	}
	if re != nil {
		return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Message: fmt.Sprintf("%s refused to %s (%s)", service, op, re.ErrorCode)}
	}
	return &tokens.Error{Code: tokens.CodeInternal, Message: "internal error", Err: fmt.Errorf("ledger: %s: %w", op, err)}
}

func unavailable(err error) *tokens.Error { return upstream.Unavailable(service, 0, err) }

// redact drops the query of a URL in a transport error: with a connection
// string's shared access signature, the query is the secret.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return &url.Error{Op: ue.Op, URL: "(unparsable URL)", Err: ue.Err}
	}
	if u.RawQuery == "" {
		return err
	}
	u.RawQuery = ""
	return &url.Error{Op: ue.Op, URL: u.String() + "?REDACTED", Err: ue.Err}
}

func hasStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}

func hasCode(err error, code aztables.TableErrorCode) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.ErrorCode == string(code)
}

var innerStatus = regexp.MustCompile(`HTTP/1\.1 (\d{3}) `)

// batchFailure reports whether err is an entity group transaction refused
// as a whole, and with which status its failing operation was answered.
// The service answers such a transaction 202 with the failure inside the
// multipart body, which aztables (v1.4) returns as a ResponseError of
// status 202 without an error code: the body is the only place to look.
func batchFailure(err error) (status int, ok bool) {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusAccepted || re.RawResponse == nil {
		return 0, false
	}
	body, _ := runtime.Payload(re.RawResponse)
	for _, m := range innerStatus.FindAllSubmatch(body, -1) {
		if s, _ := strconv.Atoi(string(m[1])); s >= 400 {
			return s, true
		}
	}
	return 0, true
}

func retryOptions() policy.RetryOptions { return upstream.RetryOptions(upstream.Retriable, true) }

// plainHTTP sends requests for one loopback host over http (see NewTable).
type plainHTTP struct {
	host string
	next policy.Transporter
}

func (p plainHTTP) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" && req.URL.Host == p.host {
		req = req.Clone(req.Context())
		req.URL.Scheme = "http"
	}
	return p.next.Do(req)
}

func transporter(t policy.Transporter) policy.Transporter {
	if t == nil {
		return http.DefaultClient
	}
	return t
}
