package fakeentra

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// AppServiceAPIVersion is the api-version azidentity (through MSAL) sends to
// the App Service / Functions identity endpoint.
const AppServiceAPIVersion = "2019-08-01"

// MSIPath is the path of the identity endpoint, as on App Service
// (http://localhost:8081/msi/token).
const MSIPath = "/msi/token"

// Identity is a managed identity the endpoint can issue tokens for.
type Identity struct {
	ClientID string // appid; selected by client_id
	ObjectID string // oid (principal id); selected by object_id or principal_id
	// ResourceID is the ARM id of a user-assigned identity, selected by
	// mi_res_id and put in xms_mirid. Empty for the system-assigned identity.
	ResourceID string
}

// MSIOptions configure StartMSI. The zero value is usable.
type MSIOptions struct {
	// TenantID goes into tid and iss. Default DefaultTenantID.
	TenantID string
	// SystemAssigned is the identity used when the request names none.
	// Empty fields default to DefaultClientID and DefaultObjectID.
	SystemAssigned Identity
	// NoSystemAssigned makes requests that name no identity fail with 400,
	// like an app with only user-assigned identities.
	NoSystemAssigned bool
	// UserAssigned identities, selectable by client_id, object_id,
	// principal_id or mi_res_id.
	UserAssigned []Identity
	// Lifetime of issued tokens. Default 1h. A negative lifetime issues
	// already-expired tokens.
	Lifetime time.Duration
	// Clock is the issuing clock. Default time.Now.
	Clock func() time.Time
	// Header is the secret callers must send as X-IDENTITY-HEADER. Default random.
	Header string
	// Resources, when not empty, restricts the resources tokens are issued
	// for (compared with SameAudience); others get 400 like Entra's AADSTS500011.
	Resources []string
}

// Fault is a failure the identity endpoint serves instead of a token.
type Fault struct {
	// Status is the HTTP status to answer with; 0 with a Delay means "delay,
	// then answer normally".
	Status int
	// RetryAfter, when not empty, is sent as the Retry-After header.
	RetryAfter string
	// Delay is waited before answering (interrupted when the client goes away).
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
}

// MSI is an App Service / Azure Functions managed identity endpoint
// (IDENTITY_ENDPOINT + IDENTITY_HEADER), plain HTTP on 127.0.0.1 like the real one.
type MSI struct {
	issuer
	srv    *testca.Server
	opts   MSIOptions
	header string
}

// StartMSI starts the identity endpoint.
func StartMSI(opts MSIOptions) (*MSI, error) {
	if opts.TenantID == "" {
		opts.TenantID = DefaultTenantID
	}
	if opts.SystemAssigned.ClientID == "" {
		opts.SystemAssigned.ClientID = DefaultClientID
	}
	if opts.SystemAssigned.ObjectID == "" {
		opts.SystemAssigned.ObjectID = DefaultObjectID
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	m := &MSI{issuer: issuer{clock: kit.Clock{Base: opts.Clock}}, opts: opts, header: opts.Header}
	if m.header == "" {
		m.header = kit.Hex(16)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(MSIPath, m.serveToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeMSIError(w, http.StatusNotFound, "Not found: "+r.URL.Path)
	})
	srv, err := testca.ServePlain(mux)
	if err != nil {
		return nil, err
	}
	m.srv = srv
	return m, nil
}

// Close stops the endpoint.
func (m *MSI) Close() error { return m.srv.Close() }

// Endpoint is the IDENTITY_ENDPOINT value: http://127.0.0.1:PORT/msi/token.
func (m *MSI) Endpoint() string { return m.srv.URL() + MSIPath }

// Header is the IDENTITY_HEADER value callers must send as X-IDENTITY-HEADER.
func (m *MSI) Header() string { return m.header }

// Env returns IDENTITY_ENDPOINT and IDENTITY_HEADER for this endpoint.
func (m *MSI) Env() map[string]string {
	return map[string]string{"IDENTITY_ENDPOINT": m.Endpoint(), "IDENTITY_HEADER": m.header}
}

// TenantID returns the tenant id put in tokens.
func (m *MSI) TenantID() string { return m.opts.TenantID }

// Identity returns the system-assigned identity.
func (m *MSI) Identity() Identity { return m.opts.SystemAssigned }

// Issuer returns the iss claim of issued tokens.
func (m *MSI) Issuer() string { return "https://sts.windows.net/" + m.opts.TenantID + "/" }

// Token issues a token for resource and the system-assigned identity
// without an HTTP round trip (recorded in Issued, not counted in Calls).
func (m *MSI) Token(resource string) string {
	tok, _ := m.TokenFor(m.opts.SystemAssigned, resource)
	return tok
}

// TokenFor issues a token for resource and id without an HTTP round trip.
func (m *MSI) TokenFor(id Identity, resource string) (string, Claims) {
	now := m.Now()
	c := Claims{
		Audience:     resource,
		Issuer:       m.Issuer(),
		IssuedAt:     now.Unix(),
		NotBefore:    now.Unix(),
		ExpiresAt:    now.Add(m.opts.Lifetime).Unix(),
		AppID:        id.ClientID,
		AppIDACR:     "2",
		IdP:          m.Issuer(),
		IDType:       "app",
		ObjectID:     id.ObjectID,
		Subject:      id.ObjectID,
		TenantID:     m.opts.TenantID,
		MIResourceID: id.ResourceID,
		Version:      "1.0",
		ID:           kit.Hex(16),
	}
	tok := NewToken(c)
	m.issued.Add(tok)
	return tok, c
}

// writeMSIError writes App Service's identity endpoint error shape.
func writeMSIError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"statusCode":    status,
		"message":       msg,
		"correlationId": kit.GUID(),
	})
}

func (m *MSI) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	resource := q.Get("resource")
	m.calls.Inc(resource)
	if m.fault(w, r, func(status int) {
		writeMSIError(w, status, fmt.Sprintf("Injected fault: %d %s", status, http.StatusText(status)))
	}) {
		return
	}

	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeMSIError(w, http.StatusMethodNotAllowed, "The requested resource does not support http method '"+r.Method+"'.")
		return
	}
	got, present := r.Header["X-Identity-Header"]
	switch {
	case !present:
		writeMSIError(w, http.StatusBadRequest, "Required header X-IDENTITY-HEADER is missing.")
		return
	case len(got) != 1 || got[0] != m.header:
		writeMSIError(w, http.StatusUnauthorized, "The X-IDENTITY-HEADER header value is invalid.")
		return
	}
	if v := q.Get("api-version"); v != AppServiceAPIVersion {
		writeMSIError(w, http.StatusBadRequest, fmt.Sprintf("The api-version '%s' is invalid. The supported version is '%s'.", v, AppServiceAPIVersion))
		return
	}
	if resource == "" {
		writeMSIError(w, http.StatusBadRequest, "The 'resource' query parameter is required.")
		return
	}
	if len(m.opts.Resources) > 0 && !AudienceIn(resource, m.opts.Resources...) {
		writeMSIError(w, http.StatusBadRequest, fmt.Sprintf("AADSTS500011: The resource principal named %s was not found in the tenant named %s.", resource, m.opts.TenantID))
		return
	}
	id, err := m.selectIdentity(q)
	if err != nil {
		writeMSIError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, c := m.TokenFor(id, resource)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"access_token": tok,
		"expires_on":   strconv.FormatInt(c.ExpiresAt, 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    id.ClientID,
	})
}

func (m *MSI) selectIdentity(q map[string][]string) (Identity, error) {
	var kind, val string
	for _, k := range []string{"client_id", "object_id", "principal_id", "mi_res_id"} {
		if v := first(q[k]); v != "" {
			if kind != "" {
				return Identity{}, fmt.Errorf("Only one of client_id, object_id, principal_id and mi_res_id may be specified (got %s and %s).", kind, k)
			}
			kind, val = k, v
		}
	}
	if kind == "" {
		if m.opts.NoSystemAssigned {
			return Identity{}, fmt.Errorf("Unable to load the proper Managed Identity. No system-assigned identity is enabled.")
		}
		return m.opts.SystemAssigned, nil
	}
	cands := append([]Identity{m.opts.SystemAssigned}, m.opts.UserAssigned...)
	if m.opts.NoSystemAssigned {
		cands = cands[1:]
	}
	for _, id := range cands {
		var have string
		switch kind {
		case "client_id":
			have = id.ClientID
		case "object_id", "principal_id":
			have = id.ObjectID
		case "mi_res_id":
			have = id.ResourceID
		}
		if have != "" && strings.EqualFold(have, val) {
			return id, nil
		}
	}
	return Identity{}, fmt.Errorf("Unable to load the proper Managed Identity. No identity with %s '%s' is assigned to this app.", kind, val)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// NewIdentity returns a user-assigned identity with random client and
// object ids and a matching resource id. Because MSAL caches managed
// identity tokens process-wide by identity and resource, tests that use
// azidentity.ManagedIdentityCredential should each use a fresh identity
// (azidentity.ClientID(id.ClientID)) to be sure their requests reach their
// own endpoint.
func NewIdentity() Identity {
	name := "id-" + kit.Hex(4)
	return Identity{
		ClientID:   kit.GUID(),
		ObjectID:   kit.GUID(),
		ResourceID: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-devstack/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name,
	}
}
