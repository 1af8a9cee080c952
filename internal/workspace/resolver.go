// Package workspace resolves a Databricks workspace resource id to the URL
// the service may call, through Azure Resource Manager (armdatabricks), and
// enforces the subscription and host allow-lists. It implements
// tokens.Resolver.
//
// The workspace URL always comes from ARM, never from the caller: the
// management header carries an ARM token, which must go only to a host that
// ARM returned for that very workspace and the allow-list accepts.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/databricks/armdatabricks"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// Options configure a Resolver.
type Options struct {
	// ARMEndpoint and ManagementAudience select the Resource Manager and the
	// token audience for it (see config.Cloud).
	ARMEndpoint        string
	ManagementAudience string
	Hosts              allowlist.Hosts
	Subscriptions      allowlist.Subscriptions
	// TTL is how long a resolved URL is reused. Workspace URLs never change
	// for the life of a workspace, so hours are safe.
	TTL time.Duration
	// NotReadyRetryAfter is what callers are told to wait for a workspace
	// that is still being provisioned.
	NotReadyRetryAfter time.Duration
	// AllowInsecureLoopback lets ARM and workspaces on loopback addresses
	// be reached over plain http (local stand-ins; ALLOW_INSECURE_LOOPBACK).
	AllowInsecureLoopback bool
	// ClientOptions (transport, logging) for the ARM pipeline.
	ClientOptions policy.ClientOptions
	Now           func() time.Time
}

// Resolver implements tokens.Resolver. It is safe for concurrent use.
type Resolver struct {
	cred azcore.TokenCredential
	opts Options

	// Callers choose the ids, so nothing is kept for one that failed: a
	// client only for a subscription where a workspace resolved, a cache
	// entry only for a workspace that resolved (dropped once expired), a
	// flight only while its lookup runs. All three are then bounded by the
	// workspaces that exist and are allowed, not by what callers send
	// (issue 11: 20,000 made-up subscriptions kept ~97 MiB of clients).
	mu      sync.Mutex
	clients map[string]*armdatabricks.WorkspacesClient // by subscription, after a success
	cache   map[string]cached                          // by WorkspaceID.Key
	flights map[string]*flight
}

type cached struct {
	ws  tokens.Workspace
	exp time.Time
}

type flight struct {
	done chan struct{}
	ws   tokens.Workspace
	err  error
	// abandoned: the leader's own context ended the lookup (its caller
	// went away, or its budget ran out); that says nothing of the
	// workspace, so whoever joined looks again.
	abandoned bool
}

var _ tokens.Resolver = (*Resolver)(nil)

// New returns a Resolver. It makes no network call.
func New(cred azcore.TokenCredential, opts Options) *Resolver {
	if opts.TTL == 0 {
		opts.TTL = 6 * time.Hour
	}
	if opts.NotReadyRetryAfter == 0 {
		opts.NotReadyRetryAfter = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.ClientOptions.Cloud = cloud.Configuration{
		ActiveDirectoryAuthorityHost: opts.ClientOptions.Cloud.ActiveDirectoryAuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: opts.ARMEndpoint, Audience: opts.ManagementAudience},
		},
	}
	// An ARM endpoint that redirects would otherwise get the ARM token
	// re-sent wherever it points, and that host's answer — the workspace
	// URL the management token then goes to — taken as ARM's own.
	opts.ClientOptions.Transport = upstream.NoRedirects(opts.ClientOptions.Transport)
	opts.ClientOptions.Retry = upstream.RetryOptions(upstream.Retriable, true)
	opts.ClientOptions.PerCallPolicies = append(opts.ClientOptions.PerCallPolicies, upstream.PlainHTTPGuard(opts.AllowInsecureLoopback))
	opts.ClientOptions.PerRetryPolicies = append(opts.ClientOptions.PerRetryPolicies, upstream.Measure(upstream.ServiceARM))
	// The bearer policy refuses http outright; the guard above keeps the
	// exception to loopback addresses.
	opts.ClientOptions.InsecureAllowCredentialWithHTTP = opts.AllowInsecureLoopback
	return &Resolver{cred: cred, opts: opts, clients: map[string]*armdatabricks.WorkspacesClient{},
		cache: map[string]cached{}, flights: map[string]*flight{}}
}

// Resolve returns the workspace's URL, from the cache or ARM. Concurrent
// calls for one workspace share one ARM request.
func (r *Resolver) Resolve(ctx context.Context, id tokens.WorkspaceID) (tokens.Workspace, error) {
	if !r.opts.Subscriptions.Allows(id.Subscription) {
		return tokens.Workspace{}, &tokens.Error{Code: tokens.CodeWorkspaceNotAllowed, Target: "workspaceResourceId",
			Message: fmt.Sprintf("subscription %s is not in DATABRICKS_ALLOWED_SUBSCRIPTIONS", id.Subscription)}
	}
	key := id.Key()
	for {
		ws, again, err := r.resolveOnce(ctx, id, key)
		if !again || ctx.Err() != nil {
			return ws, err
		}
	}
}

// resolveOnce answers from the cache, leads a lookup, or joins one; again
// reports a joined lookup its leader abandoned.
func (r *Resolver) resolveOnce(ctx context.Context, id tokens.WorkspaceID, key string) (_ tokens.Workspace, again bool, _ error) {
	r.mu.Lock()
	if c, ok := r.cache[key]; ok {
		if r.opts.Now().Before(c.exp) {
			r.mu.Unlock()
			return c.ws, false, nil
		}
		// Expired: a workspace deleted since would otherwise stay forever.
		delete(r.cache, key)
	}
	f, joined := r.flights[key]
	if !joined {
		f = &flight{done: make(chan struct{})}
		r.flights[key] = f
	}
	r.mu.Unlock()

	if !joined {
		f.ws, f.err = r.lookup(ctx, id)
		f.abandoned = f.err != nil && ctx.Err() != nil
		r.mu.Lock()
		delete(r.flights, key)
		if f.err == nil {
			r.cache[key] = cached{ws: f.ws, exp: r.opts.Now().Add(r.opts.TTL)}
		}
		r.mu.Unlock()
		close(f.done)
		return f.ws, false, f.err
	}
	select {
	case <-f.done:
		return f.ws, f.abandoned, f.err
	case <-ctx.Done():
		return tokens.Workspace{}, false, upstream.Unavailable("Azure Resource Manager", 0, ctx.Err())
	}
}

// client returns the subscription's kept client, or a new one that
// lookup keeps only if the workspace resolves.
func (r *Resolver) client(subscription string) (c *armdatabricks.WorkspacesClient, kept bool, err error) {
	r.mu.Lock()
	c, kept = r.clients[subscription]
	r.mu.Unlock()
	if kept {
		return c, true, nil
	}
	c, err = armdatabricks.NewWorkspacesClient(subscription, r.cred, &arm.ClientOptions{ClientOptions: r.opts.ClientOptions})
	return c, false, err
}

func (r *Resolver) lookup(ctx context.Context, id tokens.WorkspaceID) (tokens.Workspace, error) {
	c, kept, err := r.client(id.Subscription)
	if err != nil {
		return tokens.Workspace{}, fmt.Errorf("workspace: arm client: %w", err)
	}
	ws, err := r.get(ctx, c, id)
	if err == nil && !kept {
		r.mu.Lock()
		if _, ok := r.clients[id.Subscription]; !ok {
			r.clients[id.Subscription] = c
		}
		r.mu.Unlock()
	}
	return ws, err
}

func (r *Resolver) get(ctx context.Context, c *armdatabricks.WorkspacesClient, id tokens.WorkspaceID) (tokens.Workspace, error) {
	resp, err := c.Get(ctx, id.ResourceGroup, id.Name, nil)
	if err != nil {
		return tokens.Workspace{}, r.translate(id, err)
	}
	canonical := id
	if resp.ID != nil {
		if parsed, perr := tokens.ParseWorkspaceID(*resp.ID); perr == nil && parsed.Equal(id) {
			canonical = parsed
		}
	}
	props := resp.Properties
	if props == nil || props.ProvisioningState == nil || *props.ProvisioningState != armdatabricks.ProvisioningStateSucceeded ||
		props.WorkspaceURL == nil || *props.WorkspaceURL == "" {
		state := "unknown"
		if props != nil && props.ProvisioningState != nil {
			state = string(*props.ProvisioningState)
		}
		return tokens.Workspace{}, &tokens.Error{Code: tokens.CodeWorkspaceNotReady, RetryAfter: r.opts.NotReadyRetryAfter,
			Target: "workspaceResourceId", Message: fmt.Sprintf("workspace %s is not ready yet (provisioning state %s)", id.Name, state)}
	}
	scheme, host, err := hostOf(*props.WorkspaceURL, r.opts.AllowInsecureLoopback)
	if err != nil {
		return tokens.Workspace{}, &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
			Message: fmt.Sprintf("Azure Resource Manager returned an unusable workspaceUrl for %s", id.Name)}
	}
	if !r.opts.Hosts.Allows(host) {
		return tokens.Workspace{}, &tokens.Error{Code: tokens.CodeWorkspaceNotAllowed, Target: "workspaceResourceId",
			Message: fmt.Sprintf("workspace host %s is not in DATABRICKS_ALLOWED_HOSTS", host)}
	}
	return tokens.Workspace{ID: canonical, URL: scheme + "://" + host}, nil
}

// hostOf reads ARM's workspaceUrl, which has no scheme
// ("adb-1.2.azuredatabricks.net"): https. An explicit https:// is
// tolerated, and http:// only for a loopback stand-in with
// ALLOW_INSECURE_LOOPBACK. Anything but a bare host[:port] is refused.
func hostOf(workspaceURL string, allowInsecureLoopback bool) (scheme, hostport string, err error) {
	s, scheme := strings.TrimSuffix(workspaceURL, "/"), "https"
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "https://"):
		s = s[len("https://"):]
	case strings.HasPrefix(lower, "http://"):
		s, scheme = s[len("http://"):], "http"
	}
	if s == "" || strings.ContainsAny(s, "/?#@ \\") {
		return "", "", fmt.Errorf("workspaceUrl %q is not a host name", workspaceURL)
	}
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	if host == "" {
		return "", "", fmt.Errorf("workspaceUrl %q has no host", workspaceURL)
	}
	if !upstream.PlainHTTPAllowed(&url.URL{Scheme: scheme, Host: host}, allowInsecureLoopback) {
		return "", "", fmt.Errorf("workspaceUrl %q uses plain http", workspaceURL)
	}
	return scheme, strings.ToLower(s), nil
}

func (r *Resolver) translate(id tokens.WorkspaceID, err error) error {
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		switch {
		case respErr.StatusCode == http.StatusNotFound:
			return &tokens.Error{Code: tokens.CodeWorkspaceNotFound, Target: "workspaceResourceId", Err: err, Upstream: upstream.ServiceARM,
				Message: fmt.Sprintf("Azure Resource Manager has no Databricks workspace %s (%s)", id, respErr.ErrorCode)}
		case respErr.StatusCode == http.StatusForbidden:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: upstream.ServiceARM, PermissionDenied: true,
				Message: fmt.Sprintf("Azure Resource Manager refused to read workspace %s (%s): give the function's identity Reader (Microsoft.Databricks/workspaces/read) or Contributor on it", id.Name, respErr.ErrorCode)}
		case respErr.StatusCode == http.StatusUnauthorized:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: upstream.ServiceARM, PermissionDenied: true,
				Message: fmt.Sprintf("Azure Resource Manager did not accept the function's token (%s)", respErr.ErrorCode)}
		}
	}
	if e := upstream.Common("Azure Resource Manager", err); e != nil {
		return e
	}
	return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: upstream.ServiceARM, Message: "Azure Resource Manager refused the workspace lookup"}
}
