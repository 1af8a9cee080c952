package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// maxHold bounds how long any claim can last: holdFor is the rest of an
// invocation's budget and a margin, and no invocation runs an hour (the
// Functions timeout is at most 10 minutes on Consumption, and a rotation
// run's budget is its own).
const maxHold = time.Hour

// SweepOptions configure a sweep.
type SweepOptions struct {
	// RotateBefore is the rotation window: a live inline token expiring
	// within it gets an Expiring result.
	RotateBefore time.Duration
	// MaxPages bounds the inventory pages one sweep reads (0: 50 of 500).
	MaxPages int
}

// Sweep keeps the ledger true to the world and says what nobody else will,
// from the timer:
//   - claims whose holder died before recording anything are taken over
//     and resolved by the token marker, as a repeat would: a token the
//     vault holds is adopted, any other is revoked (its value reached
//     nobody);
//   - tokens the ledger thinks live but that their workspace no longer
//     lists (revoked in the Databricks UI, or by hand) are marked revoked,
//     so a repeat of their request id issues a new one;
//   - a token that carries the marker of a request the ledger records
//     with another token, made before this sweep began by more than any
//     claim lasts, is revoked: the late work of an attempt that died
//     (its create completed after the attempt that took over had looked);
//   - inline tokens inside the rotation window, which the service cannot
//     rotate, get an Expiring result (its id is deterministic, so the
//     results queue's duplicate detection drops a repeat within its window);
//   - records of tokens ended longer ago than LEDGER_RETENTION go.
//
// One workspace failing never stops the others: its failure is an outcome.
func (s *Service) Sweep(ctx context.Context, opts SweepOptions) ([]Outcome, error) {
	stranded, err := s.ledger.Purge(ctx)
	if err != nil {
		return nil, err
	}
	var out []Outcome
	for _, e := range stranded {
		if o, ok := s.resolveStranded(ctx, e); ok {
			out = append(out, o)
		}
	}
	if opts.MaxPages <= 0 {
		// 100,000 live tokens (some 170 workspaces at Databricks' quota of
		// 600), held in memory while the sweep runs: past that, the
		// oldest are left to a later run (the README's limits).
		opts.MaxPages = 200
	}
	// Tokens made after this, less a claim's longest life, may belong to
	// a claim still held: never taken for a dead attempt's.
	settled := s.now().Add(-maxHold)
	byWorkspace := map[string][]Entry{}
	var order []WorkspaceID
	f := InventoryFilter{States: []TokenState{TokenLive, TokenRotated}, Top: 500}
	for range opts.MaxPages {
		page, err := s.ledger.Inventory(ctx, f)
		if err != nil {
			return out, err
		}
		for _, e := range page.Entries {
			k := e.Workspace.Key()
			if _, seen := byWorkspace[k]; !seen {
				order = append(order, e.Workspace)
			}
			byWorkspace[k] = append(byWorkspace[k], e)
		}
		if f.ContinuationToken = page.ContinuationToken; f.ContinuationToken == "" {
			break
		}
	}
	now := s.now()
	for _, id := range order {
		entries := byWorkspace[id.Key()]
		out = append(out, s.reconcileWorkspace(ctx, id, entries, settled)...)
		for _, e := range entries {
			if e.State == TokenLive && e.SecretURI == "" && !e.ExpiresAt.IsZero() && e.ExpiresAt.After(now) && !e.ExpiresAt.After(now.Add(opts.RotateBefore)) {
				rec := Record{RequestID: e.RequestID, Workspace: e.Workspace, TokenID: e.TokenID, Comment: e.Comment, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt}
				out = append(out, Outcome{Type: Expiring, RequestID: e.RequestID, Workspace: e.Workspace.String(), TokenID: e.TokenID,
					CorrelationID: e.RequestID, RequestedBy: e.RequestedBy, Record: &rec})
			}
		}
	}
	return out, nil
}

// reconcileWorkspace marks revoked the entries whose tokens the workspace
// no longer lists. It reports a failure to look as an outcome.
func (s *Service) reconcileWorkspace(ctx context.Context, id WorkspaceID, entries []Entry, settled time.Time) []Outcome {
	fail := func(err error) []Outcome {
		return []Outcome{{Type: Failed, RequestID: "sweep-" + hashText(id.Key()), Workspace: id.String(), CorrelationID: "sweep", Err: AsError(err)}}
	}
	ws, err := s.resolver.Resolve(ctx, id)
	if err != nil {
		return fail(err)
	}
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return fail(err)
	}
	listed := make(map[string]bool, len(all))
	for _, t := range all {
		listed[t.ID] = true
	}
	if err := s.revokeStrays(ctx, ws, all, entries, settled); err != nil {
		return fail(err)
	}
	now := s.now()
	for _, e := range entries {
		if listed[e.TokenID] {
			continue
		}
		state := TokenRevoked
		if !e.ExpiresAt.IsZero() && !e.ExpiresAt.After(now) {
			state = TokenExpired
		}
		// Revoked elsewhere (the Databricks UI), or by a revoke whose
		// caller went away before its versions were disabled: no enabled
		// version may go on serving the dead token. Before the mark, so
		// a disable that fails is tried again by the next sweep.
		if name, ok := secretNameOf(e.SecretURI); ok && state == TokenRevoked && s.vault != nil {
			if err := s.disableIn(ctx, name, e.TokenID); err != nil {
				return fail(err)
			}
		}
		if _, _, err := s.ledger.Mark(ctx, id, e.TokenID, state); err != nil {
			return fail(err)
		}
	}
	return nil
}

// revokeStrays revokes the listed tokens that carry the marker of a
// request id the ledger records with another token, made before settled
// and within maxHold of the recorded one: the late work of an attempt that
// died while the request was being served. A token made long before the
// recorded one belongs to an earlier life of the request id (issued before
// the ledger existed, then the id was used again), and tokens of request
// ids the ledger does not know were never its to judge: both are left
// alone.
func (s *Service) revokeStrays(ctx context.Context, ws Workspace, all []Token, entries []Entry, settled time.Time) error {
	recorded := make(map[string]Entry, len(entries))
	known := make(map[string]bool, len(entries))
	for _, e := range entries {
		recorded[e.RequestID] = e
		known[e.TokenID] = true
	}
	var strays []found
	for _, t := range all {
		m, caller, ok := SplitComment(t.Comment)
		if !ok || known[t.ID] || !t.CreatedAt.Before(settled) {
			continue
		}
		e, ok := recorded[m.RequestID]
		if gap := t.CreatedAt.Sub(e.CreatedAt).Abs(); ok && e.TokenID != t.ID && gap < maxHold {
			strays = append(strays, found{Token: t, caller: caller})
		}
	}
	_, err := s.revokeHeld(ctx, ws, strays)
	return err
}

// resolveStranded takes over a claim whose holder died and settles what it
// may have left: a token the vault holds is recorded; any other is revoked.
func (s *Service) resolveStranded(ctx context.Context, e Entry) (Outcome, bool) {
	o := Outcome{Type: Failed, RequestID: e.RequestID, Workspace: e.Workspace.String(), CorrelationID: e.RequestID}
	ws, err := s.resolver.Resolve(ctx, e.Workspace)
	if err != nil {
		o.Err = AsError(err)
		return o, true
	}
	unlock := s.locks.lock(ws.ID.Key() + "|" + e.RequestID)
	defer unlock()
	claim, err := s.ledger.Claim(ctx, ws.ID, e.RequestID, Hold{For: holdFor(ctx)})
	if err != nil || claim.Recorded != nil {
		return o, false // someone came back for it meanwhile
	}
	recorded := false
	defer func() {
		if !recorded {
			s.abandon(ctx, claim)
		}
	}()
	left, err := s.findByRequest(ctx, ws, e.RequestID)
	if err != nil {
		o.Err = AsError(err)
		return o, true
	}
	if s.vault != nil && len(left) > 0 {
		if st, held, err := s.heldAnywhere(ctx, ws.ID, left[0].ID); err == nil && held {
			rec := s.record(e.RequestID, ws, left[0].Token, left[0].caller)
			rec.SecretURI = st.URI
			if s.ledger.Record(ctx, claim, s.entry(rec, nil)) == nil {
				recorded = true
			}
			left = left[1:]
		}
	}
	if _, err := s.revokeHeld(ctx, ws, left); err != nil {
		o.Err = AsError(err)
		return o, true
	}
	return o, false
}

// heldAnywhere finds the managed version, in any secret, that holds tokenID.
func (s *Service) heldAnywhere(ctx context.Context, ws WorkspaceID, tokenID string) (StoredToken, bool, error) {
	secrets, err := s.vault.Managed(ctx)
	if err != nil {
		return StoredToken{}, false, err
	}
	for _, sec := range secrets {
		for _, v := range sec.Versions {
			if v.TokenID == tokenID && v.Workspace.Equal(ws) {
				return v, true, nil
			}
		}
	}
	return StoredToken{}, false, nil
}

// hashText is a short, stable digest of s, for request ids derived from it.
func hashText(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:12])
}
