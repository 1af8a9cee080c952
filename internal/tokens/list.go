package tokens

import (
	"context"
	"slices"
)

// List returns the service identity's live tokens in a workspace, newest
// first, with the service's markers removed from the comments.
//
// Errors: NotAuthorized, WorkspaceNotAllowed, WorkspaceNotFound,
// WorkspaceNotReady, UpstreamError, UpstreamUnavailable.
func (s *Service) List(ctx context.Context, by Caller, id WorkspaceID) ([]TokenSummary, error) {
	if _, err := s.authz.Authorize(by, ActionList, id, Scopes{}); err != nil {
		return nil, err
	}
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
		out = append(out, TokenSummary{TokenID: t.ID, Comment: caller, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Scopes: t.Scopes})
	}
	slices.SortFunc(out, func(a, b TokenSummary) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}
