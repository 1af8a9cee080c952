// Package redact takes credentials out of text on its way out of the
// process: log lines, error answers, the Logs of a reply to the host and
// the errors of Failed results.
//
// The service never puts a credential into such text itself; what this
// catches is text it repeats from elsewhere. An upstream's error answer is
// quoted to the caller ("Databricks said: …") and a cause (azcore's
// ResponseError prints the whole answer) is logged, and a gateway or a
// misbehaving workspace may echo the request's Authorization header, the
// management token or a token value in that answer. Credentials have
// recognisable shapes, so they are replaced wherever they appear, whoever
// wrote them.
package redact

import (
	"log/slog"
	"regexp"
	"strings"
)

// Mark replaces what was taken out.
const Mark = "[REDACTED]"

var (
	// An Entra access token (or any JWT): base64url header, payload and
	// signature; a JSON header always starts {" (eyJ).
	jwt = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*`)
	// A Databricks personal access token: dapi and 32 hex digits, with an
	// optional -N suffix.
	pat = regexp.MustCompile(`dapi[0-9a-fA-F]{32}(?:-[0-9]+)?`)
	// An Authorization header value of any scheme that carries a secret.
	bearer = regexp.MustCompile(`(?i)\b(bearer|basic|sharedaccesssignature)(\s+)[^\s"',;]{8,}`)
	// The secret parts of connection strings, SAS query strings and token
	// requests: the value after the key, up to the next separator.
	keyed = regexp.MustCompile(`(?i)\b(sharedaccesskey|accountkey|client_secret|client_assertion|access_token|refresh_token|password|sig)("?\s*[=:]\s*"?)[^;&\s"',]+`)
)

// hints are substrings at least one of which every match contains, in
// lower case, so that the common case (no credential) costs one lower-casing
// and a few Index calls, and no regexp.
var hints = []string{"eyj", "dapi", "bearer", "basic", "signature", "key", "secret", "assertion", "token", "password", "sig"}

// Text returns s with every credential-shaped run replaced by Mark.
func Text(s string) string {
	if !hinted(s) {
		return s
	}
	s = jwt.ReplaceAllString(s, Mark)
	s = pat.ReplaceAllString(s, Mark)
	s = bearer.ReplaceAllString(s, "${1}${2}"+Mark)
	return keyed.ReplaceAllStringFunc(s, func(m string) string {
		sub := keyed.FindStringSubmatch(m)
		if strings.HasPrefix(m[len(sub[1])+len(sub[2]):], Mark) {
			return m // the jwt or pat rule already took it out
		}
		return sub[1] + sub[2] + Mark
	})
}

func hinted(s string) bool {
	s = strings.ToLower(s)
	for _, h := range hints {
		if strings.Contains(s, h) {
			return true
		}
	}
	return false
}

// Attr is a slog.HandlerOptions.ReplaceAttr (it sees the message too): it
// redacts string values, and errors by their text.
func Attr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(Text(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			a.Value = slog.StringValue(Text(err.Error()))
		}
	}
	return a
}
