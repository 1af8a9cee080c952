package keyvault

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets/fake"
)

// fakeVaultURL is the vault the azsecrets fake serves. The fake answers the
// first request of each client with Key Vault's bearer challenge, naming
// https://vault.azure.net, so the SDK's real challenge flow runs.
const fakeVaultURL = "https://fake-vault.vault.azure.net"

// memVault is an in-memory Key Vault behind azsecrets/fake. It keeps every
// version of every secret, stamps Created to the second as Key Vault does,
// enforces Key Vault's tag limits (15 tags, 256 characters a value), pages
// its lists two items at a time, and records what each write carried.
type memVault struct {
	base string

	mu      sync.Mutex
	now     time.Time
	step    time.Duration // how far the clock moves per write
	seq     int
	secrets map[string][]*version // oldest first
	sets    []azsecrets.SetSecretParameters
	updates []azsecrets.UpdateSecretPropertiesParameters
}

type version struct {
	props azsecrets.SecretProperties
	value string
}

func newMemVault(base string) *memVault {
	return &memVault{base: base, now: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), step: time.Second, secrets: map[string][]*version{}}
}

// open returns a Vault talking to m through the fake transport.
func (m *memVault) open(t *testing.T) *Vault {
	t.Helper()
	v, err := New(m.base, &azfake.TokenCredential{}, Options{ClientOptions: policy.ClientOptions{Transport: fake.NewServerTransport(m.server())}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// add writes a version directly, as someone other than the service would.
func (m *memVault) add(name string, tags map[string]string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := map[string]*string{}
	for k, v := range tags {
		t[k] = ptr(v)
	}
	return m.write(name, "someone else's value", t, &azsecrets.SecretAttributes{Enabled: ptr(true)})
}

func (m *memVault) write(name, value string, tags map[string]*string, attrs *azsecrets.SecretAttributes) string {
	m.seq++
	id := azsecrets.ID(fmt.Sprintf("%s/secrets/%s/%032x", m.base, name, m.seq))
	a := azsecrets.SecretAttributes{Enabled: ptr(true)}
	if attrs != nil {
		a = *attrs
	}
	created := m.now.Truncate(time.Second)
	a.Created, a.Updated = &created, &created
	m.now = m.now.Add(m.step)
	m.secrets[name] = append(m.secrets[name], &version{value: value, props: azsecrets.SecretProperties{
		ID: &id, Tags: maps.Clone(tags), Attributes: &a, ContentType: ptr(contentType)}})
	return string(id)
}

// find returns the version id names, or nil.
func (m *memVault) find(name, ver string) *version {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.secrets[name] {
		if v.props.ID.Version() == ver {
			return v
		}
	}
	return nil
}

func limitsProblem(tags map[string]*string) string {
	if len(tags) > 15 {
		return fmt.Sprintf("%d tags, Key Vault allows 15", len(tags))
	}
	for k, v := range tags {
		if v != nil && utf8.RuneCountInString(*v) > 256 {
			return fmt.Sprintf("tag %s has %d characters, Key Vault allows 256", k, utf8.RuneCountInString(*v))
		}
	}
	return ""
}

func pages[P any, T any](items []T, wrap func([]T) P) azfake.PagerResponder[P] {
	var resp azfake.PagerResponder[P]
	for len(items) > 2 {
		resp.AddPage(http.StatusOK, wrap(items[:2]), nil)
		items = items[2:]
	}
	resp.AddPage(http.StatusOK, wrap(items), nil)
	return resp
}

func (m *memVault) server() *fake.Server {
	return &fake.Server{
		SetSecret: func(_ context.Context, name string, p azsecrets.SetSecretParameters, _ *azsecrets.SetSecretOptions) (resp azfake.Responder[azsecrets.SetSecretResponse], errResp azfake.ErrorResponder) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.sets = append(m.sets, p)
			if problem := limitsProblem(p.Tags); problem != "" {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			id := m.write(name, *p.Value, p.Tags, p.SecretAttributes)
			v := m.secrets[name][len(m.secrets[name])-1]
			resp.SetResponse(http.StatusOK, azsecrets.SetSecretResponse{Secret: azsecrets.Secret{ID: ptr(azsecrets.ID(id)),
				Value: p.Value, Tags: v.props.Tags, Attributes: v.props.Attributes, ContentType: p.ContentType}}, nil)
			return
		},
		NewListSecretPropertiesVersionsPager: func(name string, _ *azsecrets.ListSecretPropertiesVersionsOptions) azfake.PagerResponder[azsecrets.ListSecretPropertiesVersionsResponse] {
			m.mu.Lock()
			defer m.mu.Unlock()
			vs := m.secrets[name]
			if len(vs) == 0 {
				var resp azfake.PagerResponder[azsecrets.ListSecretPropertiesVersionsResponse]
				resp.AddResponseError(http.StatusNotFound, "SecretNotFound")
				return resp
			}
			var props []*azsecrets.SecretProperties
			for _, v := range vs {
				p := v.props
				props = append(props, &p)
			}
			return pages(props, func(p []*azsecrets.SecretProperties) azsecrets.ListSecretPropertiesVersionsResponse {
				return azsecrets.ListSecretPropertiesVersionsResponse{SecretPropertiesListResult: azsecrets.SecretPropertiesListResult{Value: p}}
			})
		},
		// Key Vault lists each secret once, with its current version's tags.
		NewListSecretPropertiesPager: func(*azsecrets.ListSecretPropertiesOptions) azfake.PagerResponder[azsecrets.ListSecretPropertiesResponse] {
			m.mu.Lock()
			defer m.mu.Unlock()
			var props []*azsecrets.SecretProperties
			for _, name := range slices.Sorted(maps.Keys(m.secrets)) {
				vs := m.secrets[name]
				latest := vs[len(vs)-1].props
				props = append(props, &azsecrets.SecretProperties{ID: ptr(azsecrets.ID(m.base + "/secrets/" + name)), Tags: latest.Tags, Attributes: latest.Attributes})
			}
			return pages(props, func(p []*azsecrets.SecretProperties) azsecrets.ListSecretPropertiesResponse {
				return azsecrets.ListSecretPropertiesResponse{SecretPropertiesListResult: azsecrets.SecretPropertiesListResult{Value: p}}
			})
		},
		UpdateSecretProperties: func(_ context.Context, name, ver string, p azsecrets.UpdateSecretPropertiesParameters, _ *azsecrets.UpdateSecretPropertiesOptions) (resp azfake.Responder[azsecrets.UpdateSecretPropertiesResponse], errResp azfake.ErrorResponder) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.updates = append(m.updates, p)
			for _, v := range m.secrets[name] {
				if v.props.ID.Version() != ver {
					continue
				}
				if problem := limitsProblem(p.Tags); problem != "" {
					errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
					return
				}
				if p.Tags != nil {
					v.props.Tags = maps.Clone(p.Tags)
				}
				if a := p.SecretAttributes; a != nil && a.Enabled != nil {
					v.props.Attributes.Enabled = a.Enabled
				}
				resp.SetResponse(http.StatusOK, azsecrets.UpdateSecretPropertiesResponse{Secret: azsecrets.Secret{ID: v.props.ID, Tags: v.props.Tags, Attributes: v.props.Attributes}}, nil)
				return
			}
			errResp.SetResponseError(http.StatusNotFound, "SecretNotFound")
			return
		},
	}
}
