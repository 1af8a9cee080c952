package tokens

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// TokenAPI is the workspace's Token API, acting on the service identity's
// own tokens. Errors are *Error (UpstreamError, UpstreamUnavailable,
// TokenQuotaExceeded, InvalidRequest) and may wrap ErrAmbiguous.
type TokenAPI interface {
	CreateToken(ctx context.Context, ws Workspace, comment string, lifetime time.Duration) (Issued, error)
	ListTokens(ctx context.Context, ws Workspace) ([]Token, error)
	// DeleteToken reports false when the token does not exist (unknown,
	// expired or already revoked).
	DeleteToken(ctx context.Context, ws Workspace, tokenID string) (bool, error)
}

// Service issues, lists and revokes tokens. It is safe for concurrent use.
type Service struct {
	resolver Resolver
	api      TokenAPI
	now      func() time.Time

	locks  keyedMutex
	recent *recentRecords
}

// NewService returns a Service. now is the clock (time.Now in production).
func NewService(resolver Resolver, api TokenAPI, now func() time.Time) *Service {
	return &Service{resolver: resolver, api: api, now: now, recent: newRecentRecords(10000, 24*time.Hour)}
}

// CreateOptions say how a create arrived.
type CreateOptions struct {
	// Marker kind for the token comment (MarkerRequest or MarkerEvent).
	MarkerKind string
	// ReissueUndelivered: when an earlier attempt's token is found, its
	// value never reached anyone (the attempt died before delivering it):
	// revoke it and issue anew instead of answering with its record. A
	// redelivered queue message sets this; HTTP replays and repeated
	// commands do not (the contract answers a repeated request id with the
	// same token's record). Only meaningful with RequestIDGiven.
	ReissueUndelivered bool
}

// CreateResult is the outcome of a create.
type CreateResult struct {
	Record Record
	// Issued is true when this call created the token (HTTP 201), false when
	// it found the token an earlier call with the same request id created.
	Issued bool
	// Revoked lists tokens this call revoked while repairing earlier
	// attempts (values that were never delivered).
	Revoked []string
}

// Create issues a token for req, at most one live token per request id.
func (s *Service) Create(ctx context.Context, req CreateRequest, opts CreateOptions) (CreateResult, error) {
	ws, err := s.resolver.Resolve(ctx, req.Workspace)
	if err != nil {
		return CreateResult{}, err
	}
	if opts.MarkerKind == "" {
		opts.MarkerKind = MarkerRequest
	}
	key := ws.ID.Key() + "|" + req.RequestID
	unlock := s.locks.lock(key)
	defer unlock()

	if rec, ok := s.recent.get(key, s.now()); ok && !opts.ReissueUndelivered {
		return CreateResult{Record: rec}, nil
	}
	var res CreateResult
	if req.RequestIDGiven {
		earlier, err := s.findByRequest(ctx, ws, req.RequestID)
		if err != nil {
			return CreateResult{}, err
		}
		if len(earlier) > 0 && !opts.ReissueUndelivered {
			// Keep the oldest; any others are the losers of an earlier race.
			res.Revoked, err = s.revokeAll(ctx, ws, earlier[1:])
			if err != nil {
				return CreateResult{}, err
			}
			rec := s.record(req, ws, earlier[0].Token, earlier[0].caller)
			s.recent.put(key, rec, s.now())
			res.Record = rec
			return res, nil
		}
		if res.Revoked, err = s.revokeAll(ctx, ws, earlier); err != nil {
			return CreateResult{}, err
		}
	}

	marker := Marker{Kind: opts.MarkerKind, RequestID: req.RequestID}
	issued, err := s.createOnce(ctx, ws, marker, req)
	if err != nil {
		return CreateResult{}, err
	}
	rec := s.record(req, ws, issued.Token, req.Comment)
	s.recent.put(key, rec, s.now())
	rec.Value = issued.Value
	res.Record, res.Issued = rec, true
	return res, nil
}

// createOnce creates the token. After an ambiguous failure it lists the
// workspace's tokens: whatever the lost attempt created is revoked (its
// value never reached us), and the create is tried once more.
func (s *Service) createOnce(ctx context.Context, ws Workspace, m Marker, req CreateRequest) (Issued, error) {
	comment := m.Comment(req.Comment)
	for attempt := 0; ; attempt++ {
		issued, err := s.api.CreateToken(ctx, ws, comment, req.Lifetime)
		if err == nil || !errors.Is(err, ErrAmbiguous) {
			return issued, err
		}
		lost, lerr := s.findByRequest(ctx, ws, m.RequestID)
		if lerr != nil {
			return Issued{}, lerr
		}
		if _, rerr := s.revokeAll(ctx, ws, lost); rerr != nil {
			return Issued{}, rerr
		}
		if attempt == 1 {
			return Issued{}, &Error{Code: CodeUpstreamUnavailable, Message: "the workspace dropped the connection twice while creating the token; nothing was left behind", RetryAfter: 5 * time.Second, Err: err}
		}
	}
}

type found struct {
	Token
	caller string
}

// findByRequest lists the tokens whose marker carries requestID, oldest first.
func (s *Service) findByRequest(ctx context.Context, ws Workspace, requestID string) ([]found, error) {
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return nil, err
	}
	var out []found
	for _, t := range all {
		if m, caller, ok := SplitComment(t.Comment); ok && m.RequestID == requestID {
			out = append(out, found{Token: t, caller: caller})
		}
	}
	slices.SortFunc(out, func(a, b found) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(a.ID, b.ID)
	})
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Service) revokeAll(ctx context.Context, ws Workspace, toks []found) ([]string, error) {
	var ids []string
	for _, t := range toks {
		if _, err := s.api.DeleteToken(ctx, ws, t.ID); err != nil {
			return ids, fmt.Errorf("revoke undelivered token %s: %w", t.ID, err)
		}
		ids = append(ids, t.ID)
	}
	return ids, nil
}

func (s *Service) record(req CreateRequest, ws Workspace, t Token, caller string) Record {
	return Record{
		RequestID:    req.RequestID,
		Workspace:    ws.ID,
		WorkspaceURL: ws.URL,
		TokenID:      t.ID,
		Comment:      caller,
		CreatedAt:    t.CreatedAt,
		ExpiresAt:    t.ExpiresAt,
	}
}

// Revoke revokes a token by id. Unknown, expired and already revoked tokens
// are StatusNotFound.
func (s *Service) Revoke(ctx context.Context, req RevokeRequest) (RevokeResult, error) {
	if req.SecretURI != "" {
		return RevokeResult{}, &Error{Code: CodeInvalidRequest, Message: "secretUri requires Key Vault delivery (KEY_VAULT_URI is not set)", Target: "secretUri",
			Details: []Detail{{Code: "InvalidField", Target: "secretUri", Message: "secretUri requires Key Vault delivery (KEY_VAULT_URI is not set)"}}}
	}
	ws, err := s.resolver.Resolve(ctx, req.Workspace)
	if err != nil {
		return RevokeResult{}, err
	}
	ok, err := s.api.DeleteToken(ctx, ws, req.TokenID)
	if err != nil {
		return RevokeResult{}, err
	}
	res := RevokeResult{RequestID: req.RequestID, Workspace: ws.ID, TokenID: req.TokenID, Status: StatusNotFound}
	if ok {
		res.Status = StatusRevoked
	}
	return res, nil
}

// List returns the service identity's live tokens in a workspace, newest
// first, with the service's markers removed from the comments.
func (s *Service) List(ctx context.Context, id WorkspaceID) ([]TokenSummary, error) {
	ws, err := s.resolver.Resolve(ctx, id)
	if err != nil {
		return nil, err
	}
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]TokenSummary, 0, len(all))
	for _, t := range all {
		if !t.ExpiresAt.IsZero() && !t.ExpiresAt.After(now) {
			continue
		}
		_, caller, _ := SplitComment(t.Comment)
		out = append(out, TokenSummary{TokenID: t.ID, Comment: caller, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt})
	}
	slices.SortFunc(out, func(a, b TokenSummary) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// keyedMutex serialises work per key (workspace + request id), so that two
// concurrent calls with one request id get one token.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// recentRecords remembers the records of recent creates (never the values),
// so a retried call on this instance is answered without a list call.
type recentRecords struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	m     map[string]recentEntry
	order []string
}

type recentEntry struct {
	rec Record
	at  time.Time
}

func newRecentRecords(max int, ttl time.Duration) *recentRecords {
	return &recentRecords{max: max, ttl: ttl, m: make(map[string]recentEntry)}
}

func (r *recentRecords) get(key string, now time.Time) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[key]
	if !ok || now.Sub(e.at) > r.ttl || (!e.rec.ExpiresAt.IsZero() && !e.rec.ExpiresAt.After(now)) {
		return Record{}, false
	}
	return e.rec, true
}

func (r *recentRecords) put(key string, rec Record, now time.Time) {
	rec.Value = Secret{}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[key]; !ok {
		r.order = append(r.order, key)
	}
	r.m[key] = recentEntry{rec: rec, at: now}
	for len(r.order) > r.max {
		delete(r.m, r.order[0])
		r.order = r.order[1:]
	}
}

func (r *recentRecords) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}

// EnsureOptions configure EnsureLive.
type EnsureOptions struct {
	// RequestID identifies the triggering event; it goes into the marker.
	RequestID string
	Lifetime  time.Duration
	// RotateBefore: a held token expiring sooner than this is replaced.
	RotateBefore time.Duration
	// ReissueUndelivered as in CreateOptions (a redelivered event).
	ReissueUndelivered bool
}

// EnsureLive makes sure the workspace has a live token that this service
// issued for workspace events. It issues one, with the default lifetime,
// only when there is none or the one held is inside the rotation window;
// otherwise it returns Issued false and an empty record. Events for one
// workspace are handled one at a time, so a burst of "workspace written"
// events (ARM sends several per deployment) yields one token.
func (s *Service) EnsureLive(ctx context.Context, id WorkspaceID, opts EnsureOptions) (CreateResult, error) {
	ws, err := s.resolver.Resolve(ctx, id)
	if err != nil {
		return CreateResult{}, err
	}
	unlock := s.locks.lock(ws.ID.Key() + "|events")
	defer unlock()
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return CreateResult{}, err
	}
	now := s.now()
	var ours []found
	for _, t := range all {
		m, caller, ok := SplitComment(t.Comment)
		if !ok || m.Kind != MarkerEvent {
			continue
		}
		if m.RequestID == opts.RequestID && opts.ReissueUndelivered {
			ours = append(ours, found{Token: t, caller: caller})
			continue
		}
		if t.ExpiresAt.IsZero() || t.ExpiresAt.After(now.Add(opts.RotateBefore)) {
			return CreateResult{}, nil // a live token outside the rotation window: nothing to do
		}
	}
	var res CreateResult
	if res.Revoked, err = s.revokeAll(ctx, ws, ours); err != nil {
		return CreateResult{}, err
	}
	req := CreateRequest{Workspace: ws.ID, Lifetime: opts.Lifetime, RequestID: opts.RequestID, RequestIDGiven: true}
	issued, err := s.createOnce(ctx, ws, Marker{Kind: MarkerEvent, RequestID: opts.RequestID}, req)
	if err != nil {
		return CreateResult{}, err
	}
	rec := s.record(req, ws, issued.Token, "")
	rec.Value = issued.Value
	res.Record, res.Issued = rec, true
	return res, nil
}
