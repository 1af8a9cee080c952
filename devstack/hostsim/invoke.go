package hostsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrFunctionTimeout is wrapped by the error of an invocation that exceeded
// the function timeout.
var ErrFunctionTimeout = errors.New("function timeout")

// maxReplyBytes bounds a handler's envelope reply.
const maxReplyBytes = 64 << 20

// runInvocation runs do against a ready handler under the function timeout.
// When the timeout fires, the handler is killed (and restarted), which fails
// every other invocation in flight on it too. do's ctx is also cancelled
// when the handler dies for any other reason.
func (h *Host) runInvocation(parent context.Context, inv *Invocation, do func(ctx context.Context, w *worker) error) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	if h.timeout > 0 {
		timer := time.AfterFunc(h.timeout, func() {
			cancel(fmt.Errorf("%w: invocation %s of %s ran longer than %s", ErrFunctionTimeout, inv.ID, inv.Function, h.timeout))
		})
		defer timer.Stop()
	}
	w, err := h.acquireWorker(ctx)
	if err != nil {
		return err
	}
	rctx, rcancel := context.WithCancelCause(ctx)
	defer rcancel(nil)
	stop := context.AfterFunc(w.ctx, func() { rcancel(context.Cause(w.ctx)) })
	defer stop()

	err = do(rctx, w)
	// A killed worker is cancelled before its process dies, but the
	// AfterFunc above runs on its own goroutine: a request that failed on
	// the dying process can return before rctx is cancelled. Take the
	// worker's cause then, so the failure says why.
	if rctx.Err() == nil && err != nil && w.ctx.Err() != nil {
		rcancel(context.Cause(w.ctx))
	}
	if rctx.Err() == nil {
		return err
	}
	cause := context.Cause(rctx)
	if errors.Is(cause, ErrFunctionTimeout) {
		h.logf("hostsim: %v; restarting the handler (all in-flight invocations fail)", cause)
		h.killWorker(w, fmt.Errorf("handler restarted after a function timeout: %w", cause))
		return cause
	}
	if err == nil {
		// do finished before noticing; keep its result.
		return nil
	}
	return cause
}

// postEnvelope POSTs an invocation envelope to /<FunctionName> and applies
// the host's success rule to the reply.
func (h *Host) postEnvelope(ctx context.Context, w *worker, fn *function, inv *Invocation, payload []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.baseURL()+"/"+url.PathEscape(fn.Name), bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", inv.ID)
	req.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
	req.Header.Set("User-Agent", "Azure-Functions-Host/"+HostVersion)
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("POST /%s: %w", fn.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	inv.StatusCode = resp.StatusCode
	inv.ContentType = resp.Header.Get("Content-Type")
	inv.Body = body
	if err != nil {
		return fmt.Errorf("read reply of POST /%s: %w", fn.Name, err)
	}
	logs, err := checkReply(resp.StatusCode, inv.ContentType, body)
	inv.Logs = logs
	for _, l := range logs {
		h.logf("hostsim: %s[%s]: %s", fn.Name, inv.ID, l)
	}
	return err
}

// checkReply is the host's rule for an invocation reply: 2xx
// (EnsureSuccessStatusCode), a JSON media type (JsonMediaTypeFormatter reads
// only application/json and text/json) and a JSON object (a null result
// never completes the invocation in the real host). It returns the Logs it
// found even when the reply fails.
func checkReply(status int, contentType string, body []byte) ([]string, error) {
	var logs []string
	var obj map[string]json.RawMessage
	objErr := json.Unmarshal(body, &obj)
	var logsErr error
	if objErr == nil {
		for k, v := range obj {
			if strings.EqualFold(k, "Logs") && string(v) != "null" {
				if err := json.Unmarshal(v, &logs); err != nil {
					logsErr = fmt.Errorf("reply Logs is not an array of strings: %w", err)
				}
			}
		}
	}
	if status < 200 || status > 299 {
		return logs, fmt.Errorf("handler replied %d %s (the host fails the invocation)", status, http.StatusText(status))
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || (mt != "application/json" && mt != "text/json") {
		return logs, fmt.Errorf("handler replied Content-Type %q; the host reads only application/json or text/json", contentType)
	}
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return logs, errors.New("handler replied an empty body (the real host never completes such an invocation and times out)")
	case string(trimmed) == "null":
		return logs, errors.New("handler replied null (the real host never completes such an invocation and times out)")
	case objErr != nil:
		return logs, fmt.Errorf("handler reply is not a JSON object: %w", objErr)
	case logsErr != nil:
		return logs, logsErr
	}
	for k, v := range obj {
		if strings.EqualFold(k, "Outputs") {
			if t := bytes.TrimSpace(v); len(t) > 0 && t[0] != '{' && string(t) != "null" {
				return logs, errors.New("reply Outputs is not a JSON object")
			}
		}
	}
	return logs, nil
}
