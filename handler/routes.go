package handler

import (
	"net/http"
	"strings"

	"github.com/contoso/databricks-token-broker/internal/api"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Routes lists every path the binary serves, one per function folder
// (HTTP functions under /api, as host.json's forwarding delivers them;
// queue and timer functions at /<folder>, where the host posts its
// envelope). Tests check it against the folders on disk.
var Routes = map[string]string{
	"create-token":     "/api/create-token",
	"revoke-token":     "/api/revoke-token",
	"list-tokens":      "/api/list-tokens",
	"tokens":           "/api/tokens",
	"token-requests":   "/token-requests",
	"workspace-events": "/workspace-events",
	"rotate-tokens":    "/rotate-tokens",
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/{$}", allow(http.HandlerFunc(ready), http.MethodGet, http.MethodHead))
	mux.Handle(Routes["create-token"], allow(s.invocation("create-token", s.httpFunction(s.createToken)), http.MethodPost))
	mux.Handle(Routes["revoke-token"], allow(s.invocation("revoke-token", s.httpFunction(s.revokeToken)), http.MethodPost))
	mux.Handle(Routes["list-tokens"], allow(s.invocation("list-tokens", s.httpFunction(s.listTokens)), http.MethodGet, http.MethodHead))
	mux.Handle(Routes["tokens"], allow(s.invocation("tokens", s.httpFunction(s.inventory)), http.MethodGet, http.MethodHead))
	mux.Handle(Routes["token-requests"], allow(s.invocation("token-requests", s.queueFunction(s.tokenRequests)), http.MethodPost))
	mux.Handle(Routes["workspace-events"], allow(s.invocation("workspace-events", s.queueFunction(s.workspaceEvents)), http.MethodPost))
	mux.Handle(Routes["rotate-tokens"], allow(s.invocation("rotate-tokens", s.rotateTokens), http.MethodPost))
	mux.Handle("/", http.HandlerFunc(notFound))
	return hostRouting(mux)
}

// hostRouting serves a path as the Functions host routes it: without
// regard to case, and with a trailing slash or none (the host matches
// /api/Create-Token/ to create-token, then forwards the path as the caller
// wrote it).
func hostRouting(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.ToLower(r.URL.Path)
		if len(p) > 1 {
			p = strings.TrimSuffix(p, "/")
		}
		if p != r.URL.Path {
			r = r.Clone(r.Context())
			r.URL.Path, r.URL.RawPath = p, ""
		}
		next.ServeHTTP(w, r)
	})
}

// ready answers the host's readiness probe. It touches nothing upstream.
func ready(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.ErrorDetail{Code: "NotFound", Message: "no function is served at " + r.URL.Path}})
}

// allow answers other methods with 405, an Allow header, and the
// contract's error body.
func allow(h http.Handler, methods ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range methods {
			if r.Method == m {
				h.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		writeError(w, tokens.Errorf(tokens.CodeMethodNotAllowed, "%s is not allowed here; use %s", r.Method, strings.Join(methods, " or ")))
	})
}
