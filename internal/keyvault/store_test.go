package keyvault

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

const (
	subscription = "11111111-2222-3333-4444-555555555555"
	tokenValue   = "dapi0123456789abcdef-secret-value"
)

func wsID(t *testing.T, rg, name string) tokens.WorkspaceID {
	t.Helper()
	id, err := tokens.ParseWorkspaceID("/subscriptions/" + subscription + "/resourceGroups/" + rg + "/providers/Microsoft.Databricks/workspaces/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// widestWS is a workspace id of 512 bytes (ParseWorkspaceID's limit):
// 4-byte letters in the resource group, the longest name.
func widestWS(t *testing.T) tokens.WorkspaceID {
	t.Helper()
	ws := wsID(t, strings.Repeat("𠀀", 84)+"rr", strings.Repeat("w", 64))
	if n := len(ws.String()); n != 512 {
		t.Fatalf("the widest workspace id has %d bytes, want 512", n)
	}
	return ws
}

func stored1(t *testing.T, tokenID string, ws tokens.WorkspaceID) tokens.StoredToken {
	issued := time.Date(2026, 11, 28, 9, 59, 59, 123456789, time.UTC)
	return tokens.StoredToken{TokenID: tokenID, Workspace: ws, Lifetime: time.Hour, IssuedAt: issued,
		ExpiresAt: issued.Add(time.Hour).Truncate(time.Second), RequestID: "req-" + tokenID, Comment: "nightly ETL",
		Kind: tokens.MarkerRequest, Origin: tokens.OriginHTTP}
}

// ignoreSDKFields leaves out what Key Vault, not the caller, decides.
var ignoreSDKFields = cmpopts.IgnoreFields(tokens.StoredToken{}, "URI", "Name", "Version", "Created", "Tags", "Enabled")

func unwrap(t *testing.T, err error) *tokens.Error {
	t.Helper()
	te, ok := errors.AsType[*tokens.Error](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *tokens.Error", err, err)
	}
	return te
}

// TestPutRoundTrip: what Put writes (value, content type, expiry, tags no
// longer than Key Vault allows) reads back identically through Find, Get
// and Managed, including a workspace id and comment too long for one tag.
func TestPutRoundTrip(t *testing.T) {
	t.Parallel()
	longWS := wsID(t, strings.Repeat("r", 90), strings.Repeat("w", 64))
	if n := len(longWS.String()); n != 264 {
		t.Fatalf("the long workspace id has %d characters, want 264", n)
	}
	// 4-byte letters in the group make the id 512 bytes, ParseWorkspaceID's limit.
	widest := widestWS(t)
	tests := []struct {
		name     string
		st       func() tokens.StoredToken
		wantTags int
	}{
		{"plain", func() tokens.StoredToken { return stored1(t, "t1", wsID(t, "rg", "ws-one")) }, 9},
		{"long workspace id, 200 multibyte characters of comment", func() tokens.StoredToken {
			st := stored1(t, "t2", longWS)
			st.Comment = strings.Repeat("é日🙂x", 50)
			return st
		}, 11},
		{"every field at its longest", func() tokens.StoredToken {
			st := stored1(t, "t3", widest)
			st.Comment = strings.Repeat("🙂", 200)
			st.RequestID = strings.Repeat("r", 128)
			return st
		}, 14},
		{"never expires, no kind or origin, no comment", func() tokens.StoredToken {
			st := stored1(t, "t4", wsID(t, "rg", "ws-one"))
			st.ExpiresAt, st.Kind, st.Origin, st.Comment = time.Time{}, "", "", ""
			return st
		}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMemVault(fakeVaultURL)
			v := m.open(t)
			want := tt.st()
			uri, err := v.Put(t.Context(), "etl-token", tokens.NewSecret(tokenValue), want)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(uri, fakeVaultURL+"/secrets/etl-token/") {
				t.Errorf("Put = %q, want a version of etl-token", uri)
			}

			// On the wire.
			sent := m.sets[0]
			if got := *sent.Value; got != tokenValue {
				t.Errorf("value sent = %q", got)
			}
			if got := *sent.ContentType; got != "application/vnd.databricks.pat" {
				t.Errorf("content type = %q", got)
			}
			if !*sent.SecretAttributes.Enabled {
				t.Error("the version was written disabled")
			}
			if want.ExpiresAt.IsZero() != (sent.SecretAttributes.Expires == nil) ||
				(!want.ExpiresAt.IsZero() && !sent.SecretAttributes.Expires.Equal(want.ExpiresAt)) {
				t.Errorf("exp = %v, want %v", sent.SecretAttributes.Expires, want.ExpiresAt)
			}
			if len(sent.Tags) != tt.wantTags {
				t.Errorf("%d tags, want %d: %v", len(sent.Tags), tt.wantTags, slices.Sorted(maps.Keys(sent.Tags)))
			}
			for k, val := range sent.Tags {
				if n := utf8.RuneCountInString(*val); n > 256 || n == 0 {
					t.Errorf("tag %s has %d characters", k, n)
				}
			}
			for k, val := range map[string]string{TagManagedBy: ManagedBy, TagTokenID: want.TokenID, TagLifetime: "3600",
				TagRequestID: want.RequestID, TagIssuedAt: "2026-11-28T09:59:59.123456789Z"} {
				if got := tag(sent.Tags, k); got != val {
					t.Errorf("tag %s = %q, want %q", k, got, val)
				}
			}

			got, found, err := v.Find(t.Context(), "etl-token", want.TokenID)
			if err != nil || !found {
				t.Fatalf("Find = %v, %v", found, err)
			}
			if d := cmp.Diff(want, got, ignoreSDKFields); d != "" {
				t.Errorf("Find (-want +got):\n%s", d)
			}
			if got.URI != uri || got.Name != "etl-token" || !strings.HasSuffix(uri, "/"+got.Version) || !got.Enabled || !got.Created.Equal(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)) {
				t.Errorf("Find: URI %q name %q version %q enabled %v created %v", got.URI, got.Name, got.Version, got.Enabled, got.Created)
			}
			for _, u := range []string{uri, fakeVaultURL + "/secrets/etl-token", "https://FAKE-VAULT.Vault.Azure.Net/secrets/etl-token/" + got.Version} {
				byURI, err := v.Get(t.Context(), u)
				if err != nil {
					t.Fatalf("Get(%s): %v", u, err)
				}
				if d := cmp.Diff(got, byURI); d != "" {
					t.Errorf("Get(%s) differs from Find (-find +get):\n%s", u, d)
				}
			}
			all, err := v.Managed(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]tokens.ManagedSecret{{Name: "etl-token", Versions: []tokens.StoredToken{got}}}, all); d != "" {
				t.Errorf("Managed (-want +got):\n%s", d)
			}
		})
	}
}

// TestVersionsNewestFirst: of several versions the latest is the one a
// versionless URI names, also when Key Vault stamped two in the same
// second; versions the service did not write are never returned.
func TestVersionsNewestFirst(t *testing.T) {
	t.Parallel()
	m := newMemVault(fakeVaultURL)
	m.step = 0 // a rotation right after a create: one Created second for all
	v := m.open(t)
	ws := wsID(t, "rg", "ws-one")
	m.add("s", map[string]string{"owner": "a person"})
	for i, id := range []string{"t1", "t2", "t3"} {
		st := stored1(t, id, ws)
		st.IssuedAt = st.IssuedAt.Add(time.Duration(i) * time.Millisecond)
		if _, err := v.Put(t.Context(), "s", tokens.NewSecret(tokenValue), st); err != nil {
			t.Fatal(err)
		}
	}

	latest, err := v.Get(t.Context(), fakeVaultURL+"/secrets/s")
	if err != nil || latest.TokenID != "t3" {
		t.Errorf("Get(latest) = %q, %v; want t3", latest.TokenID, err)
	}
	all, err := v.Managed(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, st := range all[0].Versions {
		ids = append(ids, st.TokenID)
	}
	if d := cmp.Diff([]string{"t3", "t2", "t1"}, ids); d != "" {
		t.Errorf("versions (-want +got):\n%s", d)
	}
	for _, tt := range []struct{ name, tokenID string }{{"s", "t9"}, {"absent", "t1"}} {
		if st, found, err := v.Find(t.Context(), tt.name, tt.tokenID); found || err != nil {
			t.Errorf("Find(%s, %s) = %+v, %v, %v; want not found", tt.name, tt.tokenID, st, found, err)
		}
	}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	ws := wsID(t, "rg", "ws-one")
	other := wsID(t, "rg", "ws-two")
	tests := []struct {
		name    string
		prepare func(t *testing.T, m *memVault, v *Vault)
		want    *tokens.Error // nil: the claim holds
	}{
		{"absent secret", func(*testing.T, *memVault, *Vault) {}, nil},
		{"only this workspace's versions, in another casing", func(t *testing.T, m *memVault, v *Vault) {
			put(t, v, "s", stored1(t, "t1", wsID(t, "RG", "ws-one")))
			put(t, v, "s", stored1(t, "t2", ws))
		}, nil},
		{"a version of another workspace", func(t *testing.T, m *memVault, v *Vault) {
			put(t, v, "s", stored1(t, "t1", ws))
			put(t, v, "s", stored1(t, "t2", other))
		}, tokens.FieldError(tokens.CodeInvalidRequest, "secretName",
			"Key Vault secret s holds tokens of another workspace ("+other.String()+"); choose another secretName")},
		{"a version someone else wrote", func(t *testing.T, m *memVault, v *Vault) {
			put(t, v, "s", stored1(t, "t1", ws))
			m.add("s", map[string]string{"owner": "a person"})
		}, tokens.FieldError(tokens.CodeInvalidRequest, "secretName",
			"Key Vault secret s exists and was not written by this service; choose another secretName")},
		{"a managedBy tag on a version without a workspace", func(t *testing.T, m *memVault, v *Vault) {
			m.add("s", map[string]string{TagManagedBy: ManagedBy, TagTokenID: "t1", TagWorkspace: "not a workspace"})
		}, tokens.FieldError(tokens.CodeInvalidRequest, "secretName",
			"Key Vault secret s exists and was not written by this service; choose another secretName")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newMemVault(fakeVaultURL)
			v := m.open(t)
			tt.prepare(t, m, v)
			exists, err := v.Claim(t.Context(), "s", ws)
			if tt.want == nil {
				if err != nil || exists != (tt.name != "absent secret") {
					t.Fatalf("Claim: %v, %v", exists, err)
				}
				return
			}
			if d := cmp.Diff(tt.want, unwrap(t, err)); d != "" {
				t.Errorf("Claim (-want +got):\n%s", d)
			}
		})
	}
}

func put(t *testing.T, v *Vault, name string, st tokens.StoredToken) string {
	t.Helper()
	uri, err := v.Put(t.Context(), name, tokens.NewSecret(tokenValue), st)
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

func TestGetRefusesURIs(t *testing.T) {
	t.Parallel()
	m := newMemVault(fakeVaultURL)
	v := m.open(t)
	put(t, v, "s", stored1(t, "t1", wsID(t, "rg", "ws-one")))
	unmanaged := m.add("s", map[string]string{"owner": "a person"})
	m.add("bare", nil)
	const (
		otherVault = "secretUri is not a secret of the configured vault (KEY_VAULT_URI " + fakeVaultURL + ")"
		shape      = "secretUri must look like https://<vault>/secrets/<name>/<version>"
		notManaged = "secretUri names no secret version this service manages (no managedBy, tokenId and workspaceResourceId tags)"
	)
	for _, tt := range []struct{ uri, msg string }{
		{"https://other-vault.vault.azure.net/secrets/s", otherVault},
		{"http://fake-vault.vault.azure.net/secrets/s", otherVault},
		{"://not a uri", otherVault},
		{fakeVaultURL + "/keys/s/0123", shape},
		{fakeVaultURL + "/secrets", shape},
		{fakeVaultURL + "/secrets/s/v/extra", shape},
		{fakeVaultURL + "/secrets/not_a_name", shape},
		{unmanaged, notManaged},
		{fakeVaultURL + "/secrets/s/ffffffffffffffffffffffffffffffff", notManaged},
		{fakeVaultURL + "/secrets/bare", notManaged},
	} {
		_, err := v.Get(t.Context(), tt.uri)
		want := tokens.FieldError(tokens.CodeInvalidRequest, "secretUri", tt.msg)
		if d := cmp.Diff(want, unwrap(t, err)); d != "" {
			t.Errorf("Get(%q) (-want +got):\n%s", tt.uri, d)
		}
	}
	// A version of a secret that does not exist is the same refusal, not an upstream failure.
	if _, err := v.Get(t.Context(), fakeVaultURL+"/secrets/absent/0123"); tokens.CodeOf(err) != tokens.CodeInvalidRequest {
		t.Errorf("Get(absent secret) = %v; want InvalidRequest", err)
	}
}

// TestDisable: the version is turned off with every tag kept and revokedAt
// added, and reads back so; with every field at its longest that is 15
// tags, Key Vault's limit.
func TestDisable(t *testing.T) {
	t.Parallel()
	m := newMemVault(fakeVaultURL)
	v := m.open(t)
	st := stored1(t, "t1", widestWS(t))
	st.Comment = strings.Repeat("🙂", 200)
	put(t, v, "s", st)
	got, _, err := v.Find(t.Context(), "s", "t1")
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().UTC().Truncate(time.Second)
	if err := v.Disable(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	after, _, err := v.Find(t.Context(), "s", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Enabled {
		t.Error("the version is still enabled")
	}
	revoked, err := time.Parse(time.RFC3339, after.Tags[TagRevoked])
	if err != nil || revoked.Before(before) || revoked.After(time.Now()) {
		t.Errorf("revokedAt = %q, %v; want now", after.Tags[TagRevoked], err)
	}
	wantTags := map[string]string{TagRevoked: after.Tags[TagRevoked]}
	for k, val := range got.Tags {
		wantTags[k] = val
	}
	if d := cmp.Diff(wantTags, after.Tags); d != "" {
		t.Errorf("tags after Disable (-want +got):\n%s", d)
	}
	if d := cmp.Diff(got, after, cmpopts.IgnoreFields(tokens.StoredToken{}, "Enabled", "Tags")); d != "" {
		t.Errorf("Disable changed what the version says (-before +after):\n%s", d)
	}

	gone := got
	gone.Version = "ffffffffffffffffffffffffffffffff"
	if err := v.Disable(t.Context(), gone); tokens.CodeOf(err) != tokens.CodeUpstreamError || !strings.Contains(unwrap(t, err).Message, "disable secret s") {
		t.Errorf("Disable(a version Key Vault does not have) = %v; want an UpstreamError naming the operation", err)
	}
}

// TestManaged: only secrets whose current version the service wrote are
// listed (Key Vault lists a secret with its current version's tags), each
// with its managed versions; a secret whose managed-looking versions are
// all unreadable is left out.
func TestManaged(t *testing.T) {
	t.Parallel()
	m := newMemVault(fakeVaultURL)
	v := m.open(t)
	ws := wsID(t, "rg", "ws-one")
	put(t, v, "a", stored1(t, "a1", ws))
	put(t, v, "a", stored1(t, "a2", ws))
	m.add("b-person", map[string]string{"owner": "a person"})
	put(t, v, "c", stored1(t, "c1", ws))
	m.add("d-broken", map[string]string{TagManagedBy: ManagedBy, TagTokenID: "d1"})
	put(t, v, "e", stored1(t, "e1", ws))
	put(t, v, "f-taken-over", stored1(t, "f1", ws))
	m.add("f-taken-over", map[string]string{"owner": "a person"})
	got, err := v.Managed(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	summary := map[string][]string{}
	for _, s := range got {
		for _, st := range s.Versions {
			summary[s.Name] = append(summary[s.Name], st.TokenID)
		}
	}
	want := map[string][]string{"a": {"a2", "a1"}, "c": {"c1"}, "e": {"e1"}}
	if d := cmp.Diff(want, summary); d != "" {
		t.Errorf("Managed (-want +got):\n%s", d)
	}
}

// TestPlainHTTPLoopback: a loopback vault over plain http (the local
// stand-in) is reached over http, with the bearer token, and its URIs are
// accepted back; without Loopback, plain http is refused at New.
func TestPlainHTTPLoopback(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []*http.Request
		body []byte // the one version the test writes
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Clone(r.Context()))
		if challenged(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/secrets/s":
			var p azsecrets.SetSecretParameters
			if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
				t.Error(err)
			}
			p.Value = nil
			id := azsecrets.ID("http://" + r.Host + "/secrets/s/0123456789abcdef0123456789abcdef")
			body, _ = json.Marshal(azsecrets.SecretProperties{ID: &id, Tags: p.Tags, Attributes: p.SecretAttributes})
			w.Write(body)
		case r.Method == http.MethodGet && r.URL.Path == "/secrets/s/versions":
			fmt.Fprintf(w, `{"value":[%s]}`, body)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	if _, err := New(srv.URL, &azfake.TokenCredential{}, Options{}); err == nil || !strings.Contains(err.Error(), "plain http only for a loopback vault") {
		t.Errorf("New(http, no Loopback) = %v; want a refusal", err)
	}
	v, err := New(srv.URL, &azfake.TokenCredential{}, Options{Loopback: true, ClientOptions: policy.ClientOptions{Transport: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	want := stored1(t, "t1", wsID(t, "rg", "ws-one"))
	uri := put(t, v, "s", want)
	if !strings.HasPrefix(uri, srv.URL+"/secrets/s/") {
		t.Errorf("Put = %q", uri)
	}
	got, err := v.Get(t.Context(), uri)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got, ignoreSDKFields); d != "" {
		t.Errorf("Get (-want +got):\n%s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	var authorized int
	for _, r := range seen {
		if r.TLS != nil {
			t.Errorf("%s %s went over TLS", r.Method, r.URL)
		}
		if r.Header.Get("Authorization") == "Bearer fake_token" {
			authorized++
		}
	}
	// The challenge round trip is the only request without the token.
	if authorized != len(seen)-1 {
		t.Errorf("%d of %d requests carried the bearer token", authorized, len(seen))
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "vault", "https://", "://x"} {
		if _, err := New(u, &azfake.TokenCredential{}, Options{}); err == nil {
			t.Errorf("New(%q) accepted it", u)
		}
	}
}
