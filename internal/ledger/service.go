package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// ForService returns l as the token service's tokens.Ledger: the domain
// speaks of claims and entries, this package of leases and rows. poll is
// how often a Claim looks again while another instance holds the request
// id (0: 200 ms).
func ForService(l Ledger, poll time.Duration) tokens.Ledger {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	return forService{l: l, poll: poll}
}

type forService struct {
	l    Ledger
	poll time.Duration
}

func (s forService) Purge(ctx context.Context) ([]tokens.Entry, error) {
	rep, err := s.l.Purge(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]tokens.Entry, 0, len(rep.Stranded))
	for _, r := range rep.Stranded {
		out = append(out, entry(r))
	}
	return out, nil
}

func (s forService) Due(ctx context.Context, job string, every time.Duration) (bool, error) {
	return s.l.Due(ctx, job, every)
}

func (s forService) Bind(ctx context.Context, key, owner string) (string, error) {
	return s.l.Bind(ctx, key, owner)
}

func (s forService) Durable() bool {
	_, inMemory := s.l.(*Memory)
	return !inMemory
}

func (s forService) Claim(ctx context.Context, ws tokens.WorkspaceID, requestID string, h tokens.Hold) (tokens.Claim, error) {
	a, err := AcquireWaiting(ctx, s.l, Key{Workspace: ws, RequestID: requestID}, Terms{For: h.For, Holder: h.Holder}, s.poll)
	if err != nil {
		return tokens.Claim{}, err
	}
	if a.Outcome == Recorded {
		e := entry(a.Row)
		return tokens.Claim{Recorded: &e}, nil
	}
	return tokens.Claim{TakenOver: a.Lease.TakenOver, Handle: a.Lease}, nil
}

func (s forService) Record(ctx context.Context, c tokens.Claim, e tokens.Entry) error {
	lease, ok := c.Handle.(Lease)
	if !ok {
		return errors.New("ledger: Record without a claim")
	}
	_, err := s.l.Complete(ctx, lease, Token{TokenID: e.TokenID, SecretURI: e.SecretURI, Comment: e.Comment, Scopes: e.Scopes,
		RequestedBy: e.RequestedBy, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt})
	if errors.Is(err, ErrLeaseLost) {
		return tokens.ErrClaimLost
	}
	return err
}

func (s forService) Abandon(ctx context.Context, c tokens.Claim) error {
	lease, ok := c.Handle.(Lease)
	if !ok {
		return nil
	}
	// A lease already taken over is someone else's now: nothing to end.
	if err := s.l.Release(ctx, lease); err != nil && !errors.Is(err, ErrLeaseLost) {
		return err
	}
	return nil
}

func (s forService) Mark(ctx context.Context, ws tokens.WorkspaceID, tokenID string, state tokens.TokenState) (tokens.Entry, bool, error) {
	row, ok, err := s.l.MarkStatus(ctx, ws, tokenID, Status(state))
	if err != nil || !ok {
		return tokens.Entry{}, false, err
	}
	return entry(row), true, nil
}

func (s forService) Inventory(ctx context.Context, f tokens.InventoryFilter) (tokens.InventoryPage, error) {
	lf := Filter{Workspace: f.Workspace, Allow: f.Allow, ExpiringWithin: f.ExpiringWithin, RequestedBy: f.RequestedBy,
		Top: f.Top, ContinuationToken: f.ContinuationToken}
	for _, st := range f.States {
		lf.Statuses = append(lf.Statuses, Status(st))
	}
	p, err := s.l.Query(ctx, lf)
	if err != nil {
		return tokens.InventoryPage{}, err
	}
	out := tokens.InventoryPage{ContinuationToken: p.ContinuationToken, Entries: make([]tokens.Entry, 0, len(p.Rows))}
	for _, r := range p.Rows {
		out.Entries = append(out.Entries, entry(r))
	}
	return out, nil
}

func entry(r Row) tokens.Entry {
	return tokens.Entry{Workspace: r.Workspace, RequestID: r.RequestID, TokenID: r.TokenID, SecretURI: r.SecretURI, Comment: r.Comment,
		Scopes: r.Scopes, RequestedBy: r.RequestedBy, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, State: tokens.TokenState(r.Status)}
}
