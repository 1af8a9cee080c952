package tokens

import (
	"context"
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
	Enabled   bool
	Created   time.Time
	// Tags are all the version's tags, kept so an update keeps them.
	Tags map[string]string
}

// ManagedSecret is a secret the service manages, with its managed
// versions, newest first.
type ManagedSecret struct {
	Name     string
	Versions []StoredToken
}

// Vault is where Key Vault delivery puts token values. Errors are *Error
// (InvalidRequest for a URI of another vault or an unmanaged secret,
// UpstreamError, UpstreamUnavailable).
type Vault interface {
	// Put writes value as a new version of secret name and returns its URI.
	Put(ctx context.Context, name string, value Secret, st StoredToken) (string, error)
	// Find returns the version of secret name that holds tokenID.
	Find(ctx context.Context, name, tokenID string) (StoredToken, bool, error)
	// Get reads the managed version a secret URI names.
	Get(ctx context.Context, uri string) (StoredToken, error)
	// Disable turns a version off (its token was revoked).
	Disable(ctx context.Context, st StoredToken) error
	// Managed lists every managed secret.
	Managed(ctx context.Context) ([]ManagedSecret, error)
}

// SecretName is the secret a create delivers to: the caller's, or
// databricks-<workspace name> (Key Vault names allow no underscore).
func SecretName(req CreateRequest) string {
	if req.SecretName != "" {
		return req.SecretName
	}
	n := "databricks-" + strings.ReplaceAll(req.Workspace.Name, "_", "-")
	if len(n) > 127 {
		n = n[:127]
	}
	return n
}
