package fakeentra

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// App is a service principal that may use the client credentials grant.
type App struct {
	ClientID string // appid
	ObjectID string // oid of the service principal
	Secret   string // client secret
}

// AuthorityOptions configure StartAuthority. The zero value is usable.
type AuthorityOptions struct {
	// TenantID is the only tenant served (requests for others get 400
	// AADSTS90002). Default DefaultTenantID.
	TenantID string
	// Apps that can authenticate.
	Apps []App
	// Lifetime of issued tokens. Default 1h.
	Lifetime time.Duration
	// Clock is the issuing clock. Default time.Now.
	Clock func() time.Time
	// Hosts are extra names for the TLS certificate.
	Hosts []string
}

// Authority is a Microsoft Entra authority (login.microsoftonline.com
// stand-in) serving the OIDC metadata MSAL reads and the v2.0 token endpoint
// for the client credentials grant with a client secret, enough for
// azidentity.ClientSecretCredential with DisableInstanceDiscovery (see the
// package documentation).
type Authority struct {
	issuer
	srv  *testca.Server
	opts AuthorityOptions

	mu sync.Mutex // guards opts.Apps
}

// StartAuthority starts the authority (HTTPS, certificate from c).
func StartAuthority(c *testca.CA, opts AuthorityOptions) (*Authority, error) {
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	a := &Authority{issuer: issuer{clock: kit.Clock{Base: opts.Clock}}, opts: opts}
	srv, err := c.Serve(http.HandlerFunc(a.serve), opts.Hosts...)
	if err != nil {
		return nil, err
	}
	a.srv = srv
	return a, nil
}

// Close stops the authority.
func (a *Authority) Close() error { return a.srv.Close() }

// URL is the authority host, https://127.0.0.1:PORT/ (with the trailing
// slash, as AZURE_AUTHORITY_HOST and cloud.Configuration's
// ActiveDirectoryAuthorityHost expect).
func (a *Authority) URL() string { return a.srv.URL() + "/" }

// TenantID returns the tenant served.
func (a *Authority) TenantID() string { return a.opts.TenantID }

// Issuer returns the iss claim of issued (v1.0) access tokens.
func (a *Authority) Issuer() string { return "https://sts.windows.net/" + a.opts.TenantID + "/" }

// AddApp registers (or replaces) an app.
func (a *Authority) AddApp(app App) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.opts.Apps {
		if strings.EqualFold(x.ClientID, app.ClientID) {
			a.opts.Apps[i] = app
			return
		}
	}
	a.opts.Apps = append(a.opts.Apps, app)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": code, "error_description": desc, "error_codes": []int{},
		"timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z"), "trace_id": kit.GUID(), "correlation_id": kit.GUID(),
	})
}

func (a *Authority) serve(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	base := a.srv.URL()
	switch {
	case len(segs) == 4 && segs[1] == "v2.0" && segs[2] == ".well-known" && segs[3] == "openid-configuration" && r.Method == http.MethodGet:
		a.calls.Inc("metadata")
		if !a.tenantOK(segs[0]) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_tenant", fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", segs[0]))
			return
		}
		t := a.opts.TenantID
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token_endpoint":                        base + "/" + t + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + "/" + t + "/oauth2/v2.0/authorize",
			"issuer":                                base + "/" + t + "/v2.0",
			"jwks_uri":                              base + "/" + t + "/discovery/v2.0/keys",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
			"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
			"tenant_region_scope":                   "NA",
			"cloud_instance_name":                   "microsoftonline.com",
		})
	case len(segs) == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token":
		a.token(w, r, segs[0])
	default:
		writeOAuthError(w, http.StatusNotFound, "not_found", "The path "+r.URL.Path+" is not served by this authority stand-in.")
	}
}

func (a *Authority) tenantOK(t string) bool {
	return strings.EqualFold(t, a.opts.TenantID) || t == "organizations" || t == "common"
}

func (a *Authority) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodPost {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must contain a form.")
		return
	}
	f := r.PostForm
	var resource string
	for _, s := range strings.Fields(f.Get("scope")) {
		if strings.HasSuffix(s, "/.default") {
			resource = strings.TrimSuffix(s, "/.default")
		}
	}
	a.calls.Inc(resource)
	if a.fault(w, r, func(status int) {
		writeOAuthError(w, status, "temporarily_unavailable", fmt.Sprintf("AADSTS50196: Injected fault %d.", status))
	}) {
		return
	}
	if !a.tenantOK(tenant) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
		return
	}
	if g := f.Get("grant_type"); g != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("AADSTS70003: The app requested an unsupported grant type '%s'.", g))
		return
	}
	if resource == "" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return
	}
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	a.mu.Lock()
	var app *App
	for i := range a.opts.Apps {
		if strings.EqualFold(a.opts.Apps[i].ClientID, clientID) {
			x := a.opts.Apps[i]
			app = &x
		}
	}
	a.mu.Unlock()
	now := a.clock.Now()
	switch {
	case app == nil:
		writeOAuthError(w, http.StatusBadRequest, "unauthorized_client", fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory '%s'.", clientID, a.opts.TenantID))
		return
	case secret == "" || secret != app.Secret:
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", fmt.Sprintf("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", app.ClientID))
		return
	}
	c := Claims{
		Audience: resource, Issuer: a.Issuer(), IssuedAt: now.Unix(), NotBefore: now.Unix(),
		ExpiresAt: now.Add(a.opts.Lifetime).Unix(), AppID: app.ClientID, AppIDACR: "1", IdP: a.Issuer(),
		IDType: "app", ObjectID: app.ObjectID, Subject: app.ObjectID, TenantID: a.opts.TenantID, Version: "1.0",
	}
	tok := NewToken(c)
	a.issued.Add(tok)
	secs := int64(a.opts.Lifetime / time.Second)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok,
	})
}
