package tokens

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Workspace is a resolved workspace: its canonical id and the https URL that
// ARM returned for it and the allow-list accepted.
type Workspace struct {
	ID  WorkspaceID
	URL string // https://host[:port], no trailing slash
}

// Resolver turns a workspace id into a Workspace the service may talk to.
// Errors: WorkspaceNotAllowed, WorkspaceNotFound, WorkspaceNotReady,
// UpstreamUnavailable, UpstreamError.
type Resolver interface {
	Resolve(ctx context.Context, id WorkspaceID) (Workspace, error)
}

// ErrAmbiguous marks a failure after which the upstream may or may not have
// acted (a dropped connection after the request was sent). A create that
// fails this way must be reconciled by listing, never retried blindly.
var ErrAmbiguous = errors.New("the request may have been carried out")

// WorkspacePolicy is what a workspace's settings say about tokens.
type WorkspacePolicy struct {
	TokensEnabled bool
	// MaxLifetime is maxTokenLifetimeDays; zero means no limit.
	MaxLifetime time.Duration
}

// TokenAPI is the workspace's Token API, acting on the service identity's
// own tokens. Errors are *Error (UpstreamError, UpstreamUnavailable,
// TokenQuotaExceeded, InvalidRequest) and may wrap ErrAmbiguous.
type TokenAPI interface {
	// CreateToken creates a token with these scopes (none: unscoped).
	CreateToken(ctx context.Context, ws Workspace, comment string, lifetime time.Duration, scopes Scopes) (Issued, error)
	ListTokens(ctx context.Context, ws Workspace) ([]Token, error)
	// DeleteToken reports false when the token does not exist (unknown,
	// expired or already revoked).
	DeleteToken(ctx context.Context, ws Workspace, tokenID string) (bool, error)
	Policy(ctx context.Context, ws Workspace) (WorkspacePolicy, error)
	// VerifyToken makes one cheap call with value itself as the bearer,
	// one any working token may make whatever its scopes: nil means the
	// token works. Errors: UpstreamError (the token was refused),
	// UpstreamUnavailable.
	VerifyToken(ctx context.Context, ws Workspace, value Secret) error
}

// Deps are the Service's collaborators.
type Deps struct {
	Resolver Resolver
	API      TokenAPI
	// Vault is Key Vault delivery; nil means inline delivery.
	Vault Vault
	// Authorizer decides who may do what; nil allows everything (no
	// AUTHZ_POLICY).
	Authorizer Authorizer
	// Ledger records what was issued, shared by every instance; required.
	Ledger Ledger
	// ResultsCarryValues: with inline delivery, a token issued from a queue
	// reaches its consumer in its result message (RESULTS_INCLUDE_TOKEN_VALUE,
	// and results are published). Without it, or Key Vault, such a token
	// would have nowhere to go, and none is issued.
	ResultsCarryValues bool
	Now                func() time.Time
}

// Service issues, lists, revokes and rotates tokens. It is safe for
// concurrent use.
type Service struct {
	resolver Resolver
	api      TokenAPI
	vault    Vault
	authz    Authorizer
	ledger   Ledger
	// resultsCarryValues: see Deps.ResultsCarryValues.
	resultsCarryValues bool
	now                func() time.Time

	// locks serialise one instance's work per request id, so concurrent
	// calls wait here rather than poll the ledger's claim.
	locks keyedMutex
	// policies caches workspace token settings (maxTokenLifetimeDays).
	policies *ttlCache[WorkspacePolicy]
	// claims remembers which workspace's tokens a secret name holds, once
	// Key Vault said so (the name is then the workspace's for good).
	claims   *ttlCache[string]
	rotating sync.Mutex
}

// NewService returns a Service.
func NewService(d Deps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Authorizer == nil {
		d.Authorizer = allowAll{}
	}
	if d.Ledger == nil {
		panic("tokens: NewService needs a Ledger (internal/ledger: NewMemory for one instance)")
	}
	return &Service{resolver: d.Resolver, api: d.API, vault: d.Vault, authz: d.Authorizer, ledger: d.Ledger, resultsCarryValues: d.ResultsCarryValues, now: d.Now,
		policies: newTTLCache[WorkspacePolicy](1000, time.Hour),
		claims:   newTTLCache[string](10000, time.Hour)}
}
