package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// StoredToken is a token held in a Key Vault secret version, as its tags
// and attributes describe it. It never holds the value.
type StoredToken struct {
	URI       string // https://<vault>/secrets/<name>/<version>
	Name      string
	Version   string
	TokenID   string
	Workspace WorkspaceID
	Lifetime  time.Duration
	ExpiresAt time.Time
	// IssuedAt is when Databricks created the token.
	IssuedAt  time.Time
	RequestID string
	Comment   string
	// Kind is the token's marker kind (MarkerRequest, MarkerEvent); empty
	// for versions written before it was recorded.
	Kind string
	// Origin is OriginQueue or OriginHTTP; empty for older versions.
	Origin string
	// Scopes are the token's scopes; none for unscoped tokens and for
	// versions written before scopes existed (whose tokens were unscoped).
	Scopes  Scopes
	Enabled bool
	Created time.Time
	// Tags are all the version's tags, kept so an update keeps them.
	Tags map[string]string
}

// ManagedSecret is a secret the service manages, with its managed
// versions, newest first.
type ManagedSecret struct {
	Name     string
	Versions []StoredToken
	// Err, from Managed, says this secret's versions could not be listed
	// (its own RBAC, throttling); the other secrets are listed all the same.
	Err error
}

// Vault is where Key Vault delivery puts token values. Errors are *Error
// (InvalidRequest for a URI of another vault or an unmanaged secret,
// UpstreamError, UpstreamUnavailable).
type Vault interface {
	// Put writes value as a new version of secret name and returns its URI.
	Put(ctx context.Context, name string, value Secret, st StoredToken) (string, error)
	// Fits checks, before the token exists, that a version can record st
	// (Key Vault's tags are limited). Errors: InvalidRequest.
	Fits(st StoredToken) error
	// Claim checks that secret name may receive a token of workspace ws:
	// it does not exist, or holds only this service's versions for ws
	// (exists). Errors: InvalidRequest (another workspace's or an
	// unmanaged secret).
	Claim(ctx context.Context, name string, ws WorkspaceID) (exists bool, err error)
	// Find returns the version of secret name that holds tokenID.
	Find(ctx context.Context, name, tokenID string) (StoredToken, bool, error)
	// Get reads the managed version a secret URI names.
	Get(ctx context.Context, uri string) (StoredToken, error)
	// Disable turns a version off (its token was revoked).
	Disable(ctx context.Context, st StoredToken) error
	// Managed lists every managed secret. A secret whose versions cannot
	// be listed is returned with Err; the error is for the list itself.
	Managed(ctx context.Context) ([]ManagedSecret, error)
	// Secret lists the managed versions of one secret (none when it does
	// not exist).
	Secret(ctx context.Context, name string) (ManagedSecret, error)
}

// Origins of a stored token (StoredToken.Origin).
const (
	OriginQueue = "queue"
	OriginHTTP  = "http"
)

// SecretName is the secret a create delivers to: the caller's, or the
// workspace's default (DefaultSecretName).
func SecretName(req CreateRequest) string {
	if req.SecretName != "" {
		return req.SecretName
	}
	return DefaultSecretName(req.Workspace)
}

// DefaultSecretName is databricks-<name>-<h> (contract section 3): the
// workspace name with '_' as '-' (Key Vault names allow no underscore),
// and h the first 8 hex digits of the SHA-256 of the lower-cased resource
// id. Key Vault compares names without case, and etl_prod and etl-prod
// map to one name, so the name alone could be shared by two workspaces
// (same name in another resource group or subscription); the hash keeps
// every workspace's secret its own, and anyone can compute it.
func DefaultSecretName(ws WorkspaceID) string {
	sum := sha256.Sum256([]byte(ws.Key()))
	h := hex.EncodeToString(sum[:4])
	name := strings.ReplaceAll(ws.Name, "_", "-")
	const prefix, maxName = "databricks-", 127
	if room := maxName - len(prefix) - 1 - len(h); len(name) > room {
		name = name[:room] // workspace names are at most 64: never in practice
	}
	return prefix + name + "-" + h
}
