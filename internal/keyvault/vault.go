// Package keyvault implements tokens.Vault with Azure Key Vault secrets
// (azsecrets): each delivered token is a secret version whose expiry is the
// token's, tagged with which token and workspace it holds, so consumers
// read the latest version and never see the value travel anywhere else.
package keyvault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"

	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// Tags the service writes on every secret version it manages.
const (
	TagManagedBy = "managedBy"
	TagTokenID   = "tokenId"
	TagWorkspace = "workspaceResourceId"
	TagLifetime  = "lifetimeSeconds"
	TagRequestID = "requestId"
	TagComment   = "comment"
	TagRevoked   = "revokedAt"
	// TagIssuedAt is the token's creation time with milliseconds. Key Vault
	// stamps versions to the second, so two versions written in one second
	// (a rotation right after a create) are ordered by this tag.
	TagIssuedAt = "issuedAt"
	// TagKind is the token's marker kind ("req" or "evt"): a rotation
	// issues the successor with the same kind, so an event token stays one.
	TagKind = "kind"
	// TagOrigin is how the token was asked for: "queue" (commands, events,
	// rotations of those) or "http". Rotation re-authorizes queue-issued
	// tokens as the queue principal.
	TagOrigin = "origin"
	// TagScopes is the token's scopes joined with commas (split over
	// scopes, scopes2, … like every long value); absent for an unscoped
	// token. A rotation issues the successor with the same scopes, so a
	// least-privilege token never comes back with more.
	TagScopes = "scopes"
	// TagAutoscope is "true" for a token created with autoscope.
	TagAutoscope = "autoscope"
	// ManagedBy is the managedBy tag's value: secrets without it are never
	// touched, rotated or revoked.
	ManagedBy   = "databricks-token-broker"
	contentType = "application/vnd.databricks.pat"
)

// Options configure a Vault.
type Options struct {
	ClientOptions policy.ClientOptions
	// Loopback relaxes the SDK's check that the challenge's resource
	// matches the vault's domain. Key Vault answers the first request with
	// a challenge naming https://vault.azure.net, which a vault on
	// 127.0.0.1 (the local stand-in) can never match. main sets it only when
	// KEY_VAULT_URI is a loopback address, never for a real vault.
	Loopback bool
}

// Vault implements tokens.Vault. It is safe for concurrent use.
type Vault struct {
	client *azsecrets.Client
	base   *url.URL
}

var _ tokens.Vault = (*Vault)(nil)

// New returns a Vault for vaultURL. It makes no network call.
func New(vaultURL string, cred azcore.TokenCredential, opts Options) (*Vault, error) {
	u, err := url.Parse(vaultURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("keyvault: %q is not a vault URL", vaultURL)
	}
	co := opts.ClientOptions
	// A vault that redirects would otherwise get the bearer token and the
	// token value re-sent wherever it points, and that host's answer
	// taken as a delivered secret.
	co.Transport = upstream.NoRedirects(co.Transport)
	co.Retry = upstream.RetryOptions(upstream.Retriable, true)
	co.PerRetryPolicies = append(co.PerRetryPolicies, upstream.Measure(upstream.ServiceKeyVault))
	sdkURL := vaultURL
	if u.Scheme == "http" {
		// A loopback stand-in over plain http (the settings allow nothing
		// else). azsecrets' challenge policy refuses http and has no switch
		// for it, so the SDK is given https and the transport goes over
		// http to this one host.
		if !opts.Loopback {
			return nil, fmt.Errorf("keyvault: %q: plain http only for a loopback vault", vaultURL)
		}
		sdkURL = "https://" + u.Host
		co.Transport = plainHTTP{host: u.Host, next: co.Transport}
	}
	c, err := azsecrets.NewClient(sdkURL, cred, &azsecrets.ClientOptions{ClientOptions: co, DisableChallengeResourceVerification: opts.Loopback})
	if err != nil {
		return nil, fmt.Errorf("keyvault: %w", err)
	}
	return &Vault{client: c, base: u}, nil
}

// maxTags is Key Vault's limit on the tags of one secret version.
const maxTags = 15

// versionTags are the tags of a version holding st. Values longer than a
// tag allows are split (putLong).
func versionTags(st tokens.StoredToken) map[string]*string {
	tags := map[string]*string{
		TagManagedBy: ptr(ManagedBy),
		TagTokenID:   ptr(st.TokenID),
		TagLifetime:  ptr(strconv.FormatInt(int64(st.Lifetime/time.Second), 10)),
		TagRequestID: ptr(st.RequestID),
		TagIssuedAt:  ptr(st.IssuedAt.UTC().Format(time.RFC3339Nano)),
	}
	putLong(tags, TagWorkspace, st.Workspace.String())
	putLong(tags, TagComment, st.Comment)
	putLong(tags, TagScopes, st.Scopes.String())
	if st.Scopes.Autoscope {
		tags[TagAutoscope] = ptr("true")
	}
	if st.Kind != "" {
		tags[TagKind] = ptr(st.Kind)
	}
	if st.Origin != "" {
		tags[TagOrigin] = ptr(st.Origin)
	}
	return tags
}

// Fits reports whether a token's record fits one version's 15 tags, with
// one to spare for revokedAt (Disable adds it). Asked before the token is
// created, so a token is never made that its secret could not describe.
// With the longest workspace id and a comment of 200 four-byte characters
// the record leaves one tag, 256 bytes, for scopes; typical ones leave
// five.
func (v *Vault) Fits(st tokens.StoredToken) error {
	if n := len(versionTags(st)) + 1; n > maxTags {
		return tokens.FieldError(tokens.CodeInvalidRequest, "scopes", fmt.Sprintf(
			"Key Vault cannot record this token: its scopes (%d characters), comment and workspace id need %d tags and a secret version holds at most %d; shorten the comment or the scopes", len(st.Scopes.String()), n, maxTags))
	}
	return nil
}

// Put writes the token as a new version of the secret name.
func (v *Vault) Put(ctx context.Context, name string, value tokens.Secret, st tokens.StoredToken) (string, error) {
	val := value.Reveal()
	exp := st.ExpiresAt.UTC()
	params := azsecrets.SetSecretParameters{
		Value:            &val,
		ContentType:      ptr(contentType),
		Tags:             versionTags(st),
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: ptr(true)},
	}
	if !st.ExpiresAt.IsZero() {
		params.SecretAttributes.Expires = &exp
	}
	resp, err := v.client.SetSecret(ctx, name, params, nil)
	if err != nil {
		return "", translate("write secret "+name, err)
	}
	if resp.ID == nil {
		return "", &tokens.Error{Code: tokens.CodeUpstreamError, Message: "Key Vault returned no secret id"}
	}
	return string(*resp.ID), nil
}

// Find returns the version of secret name that holds tokenID.
func (v *Vault) Find(ctx context.Context, name, tokenID string) (tokens.StoredToken, bool, error) {
	versions, err := v.versions(ctx, name)
	if err != nil {
		return tokens.StoredToken{}, false, err
	}
	for _, st := range versions {
		if st.TokenID == tokenID {
			return st, true, nil
		}
	}
	return tokens.StoredToken{}, false, nil
}

// versions lists a secret's managed versions, newest first. A secret that
// does not exist has none.
func (v *Vault) versions(ctx context.Context, name string) ([]tokens.StoredToken, error) {
	var out []tokens.StoredToken
	pager := v.client.NewListSecretPropertiesVersionsPager(name, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if isStatus(err, http.StatusNotFound) {
				return nil, nil
			}
			return nil, translate("list versions of "+name, err)
		}
		for _, p := range page.Value {
			if st, ok := stored(p); ok {
				out = append(out, st)
			}
		}
	}
	slices.SortFunc(out, func(a, b tokens.StoredToken) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return b.IssuedAt.Compare(a.IssuedAt)
	})
	return out, nil
}

// Claim checks, before a token is created for it, that secret name may
// receive a token of workspace ws: it must not exist, or every version must
// be one this service wrote for ws. A secret that holds another workspace's
// tokens (consumers of that workspace read its latest version), or that
// someone else wrote, is refused as InvalidRequest.
func (v *Vault) Claim(ctx context.Context, name string, ws tokens.WorkspaceID) (bool, error) {
	exists := false
	pager := v.client.NewListSecretPropertiesVersionsPager(name, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if isStatus(err, http.StatusNotFound) {
				return false, nil
			}
			return false, translate("list versions of "+name, err)
		}
		for _, p := range page.Value {
			exists = true
			st, managed := stored(p)
			switch {
			case !managed:
				return true, tokens.FieldError(tokens.CodeInvalidRequest, "secretName",
					fmt.Sprintf("Key Vault secret %s exists and was not written by this service; choose another secretName", name))
			case !st.Workspace.Equal(ws):
				return true, tokens.FieldError(tokens.CodeInvalidRequest, "secretName",
					fmt.Sprintf("Key Vault secret %s holds tokens of another workspace (%s); choose another secretName", name, st.Workspace))
			}
		}
	}
	return exists, nil
}

// Get reads the managed version a secret URI names (the latest when the
// URI has no version). A URI for another vault, a secret the service does
// not manage, or one without its tags is InvalidRequest.
func (v *Vault) Get(ctx context.Context, uri string) (tokens.StoredToken, error) {
	name, version, err := v.parse(uri)
	if err != nil {
		return tokens.StoredToken{}, err
	}
	versions, err := v.versions(ctx, name)
	if err != nil {
		return tokens.StoredToken{}, err
	}
	for _, st := range versions {
		if version == "" || st.Version == version {
			return st, nil
		}
	}
	return tokens.StoredToken{}, invalidURI("names no secret version this service manages (no managedBy, tokenId and workspaceResourceId tags)")
}

// Disable turns the version off and stamps it revoked.
func (v *Vault) Disable(ctx context.Context, st tokens.StoredToken) error {
	tags := map[string]*string{TagRevoked: ptr(time.Now().UTC().Format(time.RFC3339))}
	for k, val := range st.Tags {
		tags[k] = ptr(val)
	}
	_, err := v.client.UpdateSecretProperties(ctx, st.Name, st.Version, azsecrets.UpdateSecretPropertiesParameters{
		SecretAttributes: &azsecrets.SecretAttributes{Enabled: ptr(false)}, Tags: tags}, nil)
	if err != nil {
		return translate("disable secret "+st.Name, err)
	}
	return nil
}

// Managed lists every secret the service manages, each with its managed
// versions, newest first.
func (v *Vault) Managed(ctx context.Context) ([]tokens.ManagedSecret, error) {
	var names []string
	pager := v.client.NewListSecretPropertiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, translate("list secrets", err)
		}
		for _, p := range page.Value {
			if p.ID != nil && tag(p.Tags, TagManagedBy) == ManagedBy {
				names = append(names, p.ID.Name())
			}
		}
	}
	out := make([]tokens.ManagedSecret, 0, len(names))
	for _, n := range names {
		versions, err := v.versions(ctx, n)
		if err != nil || len(versions) > 0 {
			// One secret the identity may not read (Key Vault RBAC can be
			// scoped to a secret) must not stop the others' rotation.
			out = append(out, tokens.ManagedSecret{Name: n, Versions: versions, Err: err})
		}
	}
	return out, nil
}

// Secret lists the managed versions of one secret, newest first; none when
// the secret does not exist or holds no version this service wrote.
func (v *Vault) Secret(ctx context.Context, name string) (tokens.ManagedSecret, error) {
	versions, err := v.versions(ctx, name)
	return tokens.ManagedSecret{Name: name, Versions: versions}, err
}

// parse checks that uri is https://<this vault>/secrets/<name>[/<version>].
func (v *Vault) parse(uri string) (name, version string, err error) {
	u, perr := url.Parse(uri)
	if perr != nil || u.Scheme != v.base.Scheme || !strings.EqualFold(u.Host, v.base.Host) {
		return "", "", invalidURI("is not a secret of the configured vault (KEY_VAULT_URI " + v.base.String() + ")")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "secrets" || tokens.ValidSecretName(parts[1]) != nil {
		return "", "", invalidURI("must look like https://<vault>/secrets/<name>/<version>")
	}
	if len(parts) == 3 {
		version = parts[2]
	}
	return parts[1], version, nil
}

func invalidURI(msg string) *tokens.Error {
	return tokens.FieldError(tokens.CodeInvalidRequest, "secretUri", "secretUri "+msg)
}

// stored reads a version's tags; ok is false for versions the service did
// not write.
func stored(p *azsecrets.SecretProperties) (tokens.StoredToken, bool) {
	if p == nil || p.ID == nil || tag(p.Tags, TagManagedBy) != ManagedBy || tag(p.Tags, TagTokenID) == "" {
		return tokens.StoredToken{}, false
	}
	ws, err := tokens.ParseWorkspaceID(getLong(p.Tags, TagWorkspace))
	if err != nil {
		return tokens.StoredToken{}, false
	}
	secs, _ := strconv.ParseInt(tag(p.Tags, TagLifetime), 10, 64)
	st := tokens.StoredToken{URI: string(*p.ID), Name: p.ID.Name(), Version: p.ID.Version(), TokenID: tag(p.Tags, TagTokenID),
		Workspace: ws, Lifetime: time.Duration(secs) * time.Second, RequestID: tag(p.Tags, TagRequestID),
		Comment: getLong(p.Tags, TagComment), Kind: tag(p.Tags, TagKind), Origin: tag(p.Tags, TagOrigin), Tags: map[string]string{},
		Scopes: tokens.Scopes{Autoscope: tag(p.Tags, TagAutoscope) == "true"}}
	if joined := getLong(p.Tags, TagScopes); joined != "" {
		st.Scopes.List = strings.Split(joined, ",")
	}
	st.IssuedAt, _ = time.Parse(time.RFC3339Nano, tag(p.Tags, TagIssuedAt))
	for k, v := range p.Tags {
		if v != nil {
			st.Tags[k] = *v
		}
	}
	if a := p.Attributes; a != nil {
		st.Enabled = a.Enabled == nil || *a.Enabled
		if a.Expires != nil {
			st.ExpiresAt = *a.Expires
		}
		if a.Created != nil {
			st.Created = *a.Created
		}
	}
	return st, true
}

// maxTagValue is Key Vault's limit on a tag value (256 characters; kept
// in bytes here, which is never more). A workspace resource id can be 264
// characters and a comment 200 characters of up to 4 bytes each, so longer
// values are split over the tags k, k2, k3, … at character boundaries,
// and getLong joins them. Validation bounds both, so without scopes the
// number of tags stays under Key Vault's 15 (at most 14 with every field
// at its longest); scopes take what is left, which Fits checks.
const maxTagValue = 256

func putLong(tags map[string]*string, k, v string) {
	for i := 1; v != ""; i++ {
		cut := len(v)
		if cut > maxTagValue {
			cut = maxTagValue
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
		}
		name := k
		if i > 1 {
			name = k + strconv.Itoa(i)
		}
		tags[name] = ptr(v[:cut])
		v = v[cut:]
	}
}

func getLong(tags map[string]*string, k string) string {
	v := tag(tags, k)
	for i := 2; ; i++ {
		part := tag(tags, k+strconv.Itoa(i))
		if part == "" {
			return v
		}
		v += part
	}
}

func tag(tags map[string]*string, k string) string {
	if v := tags[k]; v != nil {
		return *v
	}
	return ""
}

func isStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}

func translate(op string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusForbidden:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: upstream.ServiceKeyVault, PermissionDenied: true,
				Message: fmt.Sprintf("Key Vault refused to %s (%s): give the function's identity Key Vault Secrets Officer on the vault", op, re.ErrorCode)}
		case http.StatusUnauthorized:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Upstream: upstream.ServiceKeyVault, PermissionDenied: true, Message: fmt.Sprintf("Key Vault did not accept the function's token to %s (%s)", op, re.ErrorCode)}
		case http.StatusBadRequest:
			return &tokens.Error{Code: tokens.CodeInvalidRequest, Err: err, Message: fmt.Sprintf("Key Vault refused to %s (%s)", op, re.ErrorCode)}
		case http.StatusConflict:
			return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err,
				Message: fmt.Sprintf("Key Vault refused to %s (%s): a deleted secret of that name may be awaiting purge", op, re.ErrorCode)}
		}
	}
	if e := upstream.Common("Azure Key Vault", err); e != nil {
		return e
	}
	return &tokens.Error{Code: tokens.CodeUpstreamError, Err: err, Message: "Key Vault refused to " + op}
}

func ptr[T any](v T) *T { return &v }

// plainHTTP sends requests for one loopback host over http.
type plainHTTP struct {
	host string
	next policy.Transporter
}

func (p plainHTTP) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" && strings.EqualFold(req.URL.Host, p.host) {
		req = req.Clone(req.Context())
		req.URL.Scheme = "http"
	}
	return p.next.Do(req)
}
