package fakeentra

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Credential is an azcore.TokenCredential that fetches every token from an
// MSI endpoint over HTTP, the way azidentity does (same request), but
// without azidentity's process-wide token cache and without environment
// variables, so parallel tests can each use their own endpoint. Use
// azidentity.NewManagedIdentityCredential when the real SDK matters.
type Credential struct {
	endpoint, header, clientID string
	client                     *http.Client
}

var _ azcore.TokenCredential = (*Credential)(nil)

// Credential returns a credential for this endpoint; clientID selects a
// user-assigned identity ("" = the system-assigned one).
func (m *MSI) Credential(clientID string) *Credential {
	return &Credential{endpoint: m.Endpoint(), header: m.header, clientID: clientID, client: &http.Client{Timeout: 30 * time.Second}}
}

// GetToken implements azcore.TokenCredential. It requires exactly one scope
// and turns it into a resource by trimming "/.default", as azidentity does.
func (c *Credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if len(opts.Scopes) != 1 {
		return azcore.AccessToken{}, fmt.Errorf("entra: GetToken requires exactly one scope, got %d", len(opts.Scopes))
	}
	q := url.Values{}
	q.Set("api-version", AppServiceAPIVersion)
	q.Set("resource", strings.TrimSuffix(opts.Scopes[0], "/.default"))
	if c.clientID != "" {
		q.Set("client_id", c.clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	req.Header.Set("X-IDENTITY-HEADER", c.header)
	resp, err := c.client.Do(req)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("entra: token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("entra: token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return azcore.AccessToken{}, fmt.Errorf("entra: token request failed: %s: %s", resp.Status, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return azcore.AccessToken{}, fmt.Errorf("entra: token response: %w", err)
	}
	exp, err := strconv.ParseInt(tr.ExpiresOn, 10, 64)
	if err != nil {
		return azcore.AccessToken{}, fmt.Errorf("entra: token response: expires_on: %w", err)
	}
	return azcore.AccessToken{Token: tr.AccessToken, ExpiresOn: time.Unix(exp, 0).UTC()}, nil
}
