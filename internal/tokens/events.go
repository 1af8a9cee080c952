package tokens

import (
	"context"
	"strings"
	"time"
)

// EnsureOptions configure EnsureLive.
type EnsureOptions struct {
	// RequestID identifies the triggering event; it goes into the marker.
	RequestID string
	// Lifetime of a new token (TOKEN_DEFAULT_LIFETIME); the caller's grant
	// may shorten it.
	Lifetime time.Duration
	// RotateBefore: a held token expiring sooner than this is replaced.
	RotateBefore time.Duration
	// ReissueUndelivered and Holder as in CreateOptions (a redelivered
	// event, and the message it came in).
	ReissueUndelivered bool
	Holder             string
	// Scopes of a new event token (EVENT_TOKEN_SCOPES; none: unscoped).
	Scopes Scopes
}

// eventsTurn is the ledger key a workspace's event handling takes turns
// on. Request ids are made of A-Z a-z 0-9 . _ : - only, so no caller's can
// be this.
const eventsTurn = "~events"

// EnsureLive makes sure the workspace has a live token that this service
// issued for workspace events. It issues one, with the default lifetime
// (capped by what the policy grants by), only when there is none or the
// one held is inside the rotation window; otherwise it returns Issued
// false and an empty record. With Key Vault delivery a held token counts
// only if the workspace's secret holds it. Events for one workspace are
// handled one at a time, so a burst of "workspace written" events (ARM
// sends several per deployment) yields one token.
//
// Errors: as Create.
// heldEventToken reports whether a Key Vault version holds an event token:
// in the workspace's default secret, or in the one the default was before
// the contract's name (databricks-<name>), whose versions keep being
// rotated where they are.
func (s *Service) heldEventToken(ctx context.Context, ws WorkspaceID, name, tokenID string) (bool, error) {
	for _, n := range []string{name, legacySecretName(ws)} {
		if _, held, err := s.vault.Find(ctx, n, tokenID); err != nil || held {
			return held, err
		}
	}
	return false, nil
}

// legacySecretName is the default secret name before the contract's:
// databricks-<name>, '_' as '-'.
func legacySecretName(ws WorkspaceID) string {
	return "databricks-" + strings.ReplaceAll(ws.Name, "_", "-")
}

// isRotationID reports whether a request id is a rotation's (rotationRequestID).
func isRotationID(id string) bool { return strings.HasPrefix(id, "rot-") }

func (s *Service) EnsureLive(ctx context.Context, by Caller, id WorkspaceID, opts EnsureOptions) (CreateResult, error) {
	grant, err := s.authorizeIssue(by, id, opts.Scopes)
	if err != nil {
		return CreateResult{}, err
	}
	if grant.MaxLifetime > 0 && opts.Lifetime > grant.MaxLifetime {
		opts.Lifetime = grant.MaxLifetime
	}
	ws, err := s.resolver.Resolve(ctx, id)
	if err != nil {
		return CreateResult{}, err
	}
	unlock := s.locks.lock(ws.ID.Key() + "|events")
	defer unlock()
	// Across instances the same turn is a claim on the workspace's events
	// key, held while this event looks and issues and then given back (it
	// records nothing): otherwise two instances could each find no event
	// token and make one, or take the other's, made but not yet stored,
	// for a crash's orphan and revoke it.
	turn, err := s.ledger.Claim(ctx, ws.ID, eventsTurn, Hold{For: holdFor(ctx), Holder: opts.Holder})
	if err != nil {
		return CreateResult{}, err
	}
	defer s.abandon(ctx, turn)
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return CreateResult{}, err
	}
	name := DefaultSecretName(ws.ID)
	now := s.now()
	var stale []found
	for _, t := range all {
		m, caller, ok := SplitComment(t.Comment)
		if !ok || m.Kind != MarkerEvent {
			continue
		}
		f := found{Token: t, caller: caller}
		if m.RequestID == opts.RequestID && opts.ReissueUndelivered && s.vault == nil {
			stale = append(stale, f) // this event's own earlier attempt, value lost
			continue
		}
		if !t.ExpiresAt.IsZero() && !t.ExpiresAt.After(now.Add(opts.RotateBefore)) {
			continue // inside the rotation window: replace it (a rotation run revokes it later)
		}
		if s.vault != nil {
			held, err := s.heldEventToken(ctx, ws.ID, name, t.ID)
			if err != nil {
				return CreateResult{}, err
			}
			switch {
			case !held && isRotationID(m.RequestID) && now.Sub(t.CreatedAt) < maxHold:
				// A rotation's successor not stored yet: the rotation is
				// under way (on this instance or another) and stores it,
				// or revokes it itself. Taking it for an orphan would
				// leave the secret's new latest version on a dead token.
			case !held:
				stale = append(stale, f) // issued, never stored: an orphan of a crash
				continue
			}
		}
		return CreateResult{}, nil // a live, delivered token outside the rotation window: nothing to do
	}
	var res CreateResult
	if res.Revoked, err = s.revokeAll(ctx, ws, stale); err != nil {
		return CreateResult{}, cleanupFailed(err)
	}
	st := StoredToken{RequestID: opts.RequestID, Lifetime: opts.Lifetime, Kind: MarkerEvent, Origin: originOf(by), Scopes: opts.Scopes, Workspace: ws.ID}
	if err := s.claim(ctx, name, st); err != nil {
		return CreateResult{}, err
	}
	claim, err := s.ledger.Claim(ctx, ws.ID, opts.RequestID, Hold{For: holdFor(ctx), Holder: opts.Holder})
	if err != nil {
		return CreateResult{}, err
	}
	if claim.Recorded != nil {
		return res, nil // this event's token is recorded: it was issued already
	}
	recorded := false
	defer func() {
		if !recorded {
			s.abandon(ctx, claim)
		}
	}()
	issued, gc, err := s.createOnce(ctx, ws, Marker{Kind: MarkerEvent, RequestID: opts.RequestID}, "", opts.Lifetime, opts.Scopes)
	res.Revoked = append(res.Revoked, gc...)
	if err != nil {
		return CreateResult{}, err
	}
	return s.handOver(ctx, ws, claim, name, issued, st, by, res, &recorded)
}
