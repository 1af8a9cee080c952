package hostsim

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// httpRoute is one HTTP function's route on the front door.
type httpRoute struct {
	fn        *function
	template  string
	re        *regexp.Regexp
	score     int
	methods   []string // upper case; empty = any
	authLevel string   // lower case
}

func buildRoutes(fns []*function) ([]*httpRoute, error) {
	var routes []*httpRoute
	for _, fn := range fns {
		if fn.Kind != TriggerHTTP {
			continue
		}
		tmpl := fn.Name
		if fn.Trigger.Route != nil && strings.TrimSpace(*fn.Trigger.Route) != "" {
			tmpl = *fn.Trigger.Route
		}
		re, score, err := compileRoute(tmpl)
		if err != nil {
			return nil, fmt.Errorf("function %s: route %q: %w", fn.Name, tmpl, err)
		}
		r := &httpRoute{fn: fn, template: tmpl, re: re, score: score, authLevel: "function"}
		if fn.Trigger.AuthLevel != "" {
			r.authLevel = strings.ToLower(fn.Trigger.AuthLevel)
		}
		for _, m := range fn.Trigger.Methods {
			r.methods = append(r.methods, strings.ToUpper(m))
		}
		routes = append(routes, r)
	}
	// More specific templates first (literal segments beat parameters,
	// catch-alls come last), like ASP.NET Core routing precedence.
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].score > routes[j].score })
	return routes, nil
}

var (
	paramRE    = regexp.MustCompile(`\{([^{}]*)\}`)
	nonIdentRE = regexp.MustCompile(`[^A-Za-z0-9_]`)
	constraint = map[string]string{
		"int":      `-?[0-9]+`,
		"long":     `-?[0-9]+`,
		"bool":     `(?:true|false)`,
		"alpha":    `[A-Za-z]+`,
		"guid":     `\{?[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\}?`,
		"decimal":  `-?[0-9]+(?:\.[0-9]+)?`,
		"double":   `-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?`,
		"float":    `-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?`,
		"datetime": `[^/]+`,
	}
)

// compileRoute turns an ASP.NET route template ("orders/{id:int?}",
// "files/{*path}") into a case-insensitive regexp over "/<path>".
func compileRoute(tmpl string) (*regexp.Regexp, int, error) {
	tmpl = strings.Trim(tmpl, "/")
	var b strings.Builder
	b.WriteString(`(?i)^`)
	score := 0
	segs := strings.Split(tmpl, "/")
	if tmpl == "" {
		segs = nil
	}
	for i, seg := range segs {
		last := i == len(segs)-1
		if m := paramRE.FindStringSubmatch(seg); m != nil && m[0] == seg {
			name, pattern, optional, catchAll := parseParam(m[1])
			if catchAll {
				if !last {
					return nil, 0, fmt.Errorf("catch-all parameter must be the last segment")
				}
				b.WriteString(`(?:/(?P<` + name + `>.*))?`)
				score -= 1000
				continue
			}
			if optional {
				if !last {
					return nil, 0, fmt.Errorf("optional parameter must be the last segment")
				}
				b.WriteString(`(?:/(?P<` + name + `>` + pattern + `))?`)
				continue
			}
			b.WriteString(`/(?P<` + name + `>` + pattern + `)`)
			if pattern != `[^/]+` {
				score += 2
			} else {
				score++
			}
			continue
		}
		// Literal text, possibly with embedded parameters ("{a}.{b}").
		b.WriteString("/")
		rest := seg
		for {
			loc := paramRE.FindStringSubmatchIndex(rest)
			if loc == nil {
				b.WriteString(regexp.QuoteMeta(rest))
				break
			}
			b.WriteString(regexp.QuoteMeta(rest[:loc[0]]))
			name, pattern, _, _ := parseParam(rest[loc[2]:loc[3]])
			if pattern == `[^/]+` {
				pattern = `[^/]+?`
			}
			b.WriteString(`(?P<` + name + `>` + pattern + `)`)
			rest = rest[loc[1]:]
		}
		score += 3
	}
	b.WriteString(`/?$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, 0, err
	}
	return re, score, nil
}

func parseParam(p string) (name, pattern string, optional, catchAll bool) {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, "**") {
		p, catchAll = p[2:], true
	} else if strings.HasPrefix(p, "*") {
		p, catchAll = p[1:], true
	}
	if strings.HasSuffix(p, "?") {
		p, optional = p[:len(p)-1], true
	}
	if i := strings.IndexByte(p, '='); i >= 0 { // default value
		p, optional = p[:i], true
	}
	pattern = `[^/]+`
	parts := strings.Split(p, ":")
	name = parts[0]
	for _, c := range parts[1:] {
		if i := strings.IndexByte(c, '('); i >= 0 {
			c = c[:i]
		}
		if pat, ok := constraint[strings.ToLower(c)]; ok {
			pattern = pat
		}
	}
	name = nonIdentRE.ReplaceAllString(name, "_")
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		name = "p" + name
	}
	return name, pattern, optional, catchAll
}

// ServeHTTP is the host's front door.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.opts.Authenticate != nil {
		// App Service Authentication removes client-sent principal headers
		// before it adds its own. Without it nothing does: the app sees
		// whatever the caller sent (which is why the handler believes these
		// headers only when WEBSITE_AUTH_ENABLED or a policy says so).
		for k := range r.Header {
			if strings.HasPrefix(strings.ToUpper(k), "X-MS-CLIENT-PRINCIPAL") {
				delete(r.Header, k)
			}
		}
		add, status := h.opts.Authenticate(r)
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		for k, vs := range add {
			r.Header.Del(k)
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
	}

	route, methodMismatch := h.matchRoute(r)
	if route == nil {
		if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !methodMismatch {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "Your Functions 4.0 app is up and running (hostsim)\n")
			return
		}
		w.WriteHeader(http.StatusNotFound) // the host's router: empty 404
		return
	}
	if !h.authorized(route, r) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !route.fn.HTTPInOut || !(h.cfg.Forwarding || h.cfg.Proxying) {
		why := "host.json enables neither customHandler.enableForwardingHttpRequest nor enableProxyingHttpRequest"
		if !route.fn.HTTPInOut {
			why = "it does not have exactly one httpTrigger input and one http output binding"
		}
		msg := fmt.Sprintf("hostsim: function %s is not forwarded because %s; the JSON-envelope mode for HTTP triggers (spec §4.1) is not supported by the simulator", route.fn.Name, why)
		h.logf("%s", msg)
		http.Error(w, msg, http.StatusInternalServerError)
		return
	}
	h.forward(w, r, route.fn)
}

// matchRoute finds the function for r; methodMismatch reports a route that
// matched the path but not the method (the router answers 404 either way).
func (h *Host) matchRoute(r *http.Request) (route *httpRoute, methodMismatch bool) {
	path := routingPath(r.URL)
	if p := h.cfg.RoutePrefix; p != "" {
		prefix := "/" + p
		if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
			return nil, false
		}
		path = path[len(prefix):]
		if path != "" && path[0] != '/' {
			return nil, false
		}
	}
	for _, rt := range h.routes {
		if !rt.re.MatchString(path) {
			continue
		}
		if len(rt.methods) > 0 && !contains(rt.methods, r.Method) {
			methodMismatch = true
			continue
		}
		return rt, false
	}
	return nil, methodMismatch
}

// routingPath is the request path with each segment decoded except "%2F",
// which ASP.NET Core routing leaves encoded (so it never splits a segment).
func routingPath(u *url.URL) string {
	segs := strings.Split(u.EscapedPath(), "/")
	for i, s := range segs {
		if d, err := url.PathUnescape(s); err == nil {
			segs[i] = strings.ReplaceAll(d, "/", "%2F")
		}
	}
	return strings.Join(segs, "/")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (h *Host) authorized(rt *httpRoute, r *http.Request) bool {
	if h.opts.FunctionKey == "" || rt.authLevel == "anonymous" {
		return true
	}
	key := r.Header.Get("x-functions-key")
	if key == "" {
		key = r.URL.Query().Get("code")
	}
	return key != "" && subtle.ConstantTimeCompare([]byte(key), []byte(h.opts.FunctionKey)) == 1
}

var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(hd http.Header) {
	for _, f := range hd.Values("Connection") {
		for _, k := range strings.Split(f, ",") {
			if k = strings.TrimSpace(k); k != "" {
				hd.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		hd.Del(k)
	}
}

// forward sends the raw request to the handler at the same path and query
// and copies the raw response back (spec §4.2, §4.3).
func (h *Host) forward(w http.ResponseWriter, r *http.Request, fn *function) {
	inv := Invocation{ID: kit.GUID(), Function: fn.Name, Trigger: TriggerHTTP, Start: time.Now()}
	h.beginInvocation()
	var respHeader http.Header

	err := h.runInvocation(r.Context(), &inv, func(ctx context.Context, wk *worker) error {
		target := wk.baseURL() + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		var body io.Reader
		length := int64(0)
		if h.cfg.Proxying {
			// YARP sends whatever body there is.
			if r.ContentLength != 0 {
				body, length = r.Body, r.ContentLength
			}
		} else if r.ContentLength > 0 {
			// Legacy forwarding copies the body only when Content-Length > 0.
			body, length = r.Body, r.ContentLength
		}
		out, err := http.NewRequestWithContext(ctx, r.Method, target, body)
		if err != nil {
			return err
		}
		out.ContentLength = length
		out.Header = r.Header.Clone()
		removeHopHeaders(out.Header)
		out.Header.Del("Content-Length")
		if body == nil {
			out.Header.Del("Content-Type")
		}
		if h.cfg.Proxying {
			if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				out.Header.Set("X-Forwarded-For", ip)
			}
			out.Header.Set("X-Forwarded-Proto", "http")
			out.Header.Set("X-Forwarded-Host", r.Host)
			out.Header.Set("x-ms-invocation-id", inv.ID)
		} else {
			out.Host = r.Host
		}
		out.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
		out.Header.Set("X-Azure-Functions-InvocationId", inv.ID)
		ua := "Azure-Functions-Host/" + HostVersion
		if orig := r.Header.Get("User-Agent"); orig != "" {
			ua = orig + " " + ua
		}
		out.Header.Set("User-Agent", ua)

		resp, err := wk.client.Do(out)
		if err != nil {
			return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
		}
		defer resp.Body.Close()
		// The response is buffered (as HttpClient does by default), so the
		// invocation is recorded before the client sees the end of it.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes+1))
		if err != nil {
			return fmt.Errorf("read response of %s %s: %w", r.Method, r.URL.Path, err)
		}
		if len(b) > maxReplyBytes {
			return fmt.Errorf("response of %s %s is larger than %d bytes", r.Method, r.URL.Path, maxReplyBytes)
		}
		inv.StatusCode = resp.StatusCode
		inv.ContentType = resp.Header.Get("Content-Type")
		inv.Body = b
		respHeader = resp.Header
		return nil
	})
	inv.Duration = time.Since(inv.Start)
	inv.Err = err
	h.endInvocation(inv)
	if err != nil {
		// A failed invocation is a 500 from the host.
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	removeHopHeaders(respHeader)
	for k, vs := range respHeader {
		w.Header()[k] = vs
	}
	w.WriteHeader(inv.StatusCode)
	_, _ = w.Write(inv.Body)
}
