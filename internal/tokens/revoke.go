package tokens

import (
	"context"
	"fmt"
	"slices"
)

// revokeAll revokes tokens whose values never reached a consumer (nothing
// holds them).
func (s *Service) revokeAll(ctx context.Context, ws Workspace, toks []found) ([]string, error) {
	var ids []string
	for _, t := range toks {
		if _, err := s.api.DeleteToken(ctx, ws, t.ID); err != nil {
			return ids, fmt.Errorf("revoke undelivered token %s: %w", t.ID, err)
		}
		ids = append(ids, t.ID)
		if _, _, err := s.ledger.Mark(ctx, ws.ID, t.ID, TokenRevoked); err != nil {
			return ids, err
		}
	}
	return ids, nil
}

// revokeHeld revokes tokens that a Key Vault version may hold (the loser
// of a race, a superseded version's token) and disables those versions,
// so no secret's latest version is left enabled with a dead token.
func (s *Service) revokeHeld(ctx context.Context, ws Workspace, toks []found) ([]string, error) {
	ids, err := s.revokeAll(ctx, ws, toks)
	if err != nil || len(ids) == 0 {
		return ids, err
	}
	return ids, s.disableHeld(ctx, ws.ID, ids...)
}

// disableHeld disables every enabled managed version that holds one of
// the tokens (which were just revoked).
func (s *Service) disableHeld(ctx context.Context, ws WorkspaceID, tokenIDs ...string) error {
	if s.vault == nil || len(tokenIDs) == 0 {
		return nil
	}
	secrets, err := s.vault.Managed(ctx)
	if err != nil {
		return err
	}
	for _, sec := range secrets {
		for _, v := range sec.Versions {
			if v.Enabled && v.Workspace.Equal(ws) && slices.Contains(tokenIDs, v.TokenID) {
				if err := s.vault.Disable(ctx, v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Revoke revokes a token by id, or the token a managed Key Vault secret
// version holds, and disables the versions that hold it (consumers reading
// the secret then get no dead token: a disabled latest version answers
// 403 Forbidden). by is authorized once the workspace is known (for a
// secretUri, from the secret's tags) and before anything is revoked.
// Unknown, expired and already revoked tokens are StatusNotFound.
//
// Errors: InvalidRequest (a secretUri of another vault or an unmanaged
// secret), NotAuthorized, WorkspaceNotAllowed, WorkspaceNotFound,
// UpstreamError, UpstreamUnavailable.
func (s *Service) Revoke(ctx context.Context, by Caller, req RevokeRequest) (RevokeResult, error) {
	var st StoredToken
	if req.SecretURI != "" {
		if s.vault == nil {
			return RevokeResult{}, FieldError(CodeInvalidRequest, "secretUri", "secretUri requires Key Vault delivery (KEY_VAULT_URI is not set)")
		}
		var err error
		if st, err = s.vault.Get(ctx, req.SecretURI); err != nil {
			return RevokeResult{}, err
		}
		req.Workspace, req.TokenID = st.Workspace, st.TokenID
	}
	if _, err := s.authz.Authorize(by, ActionRevoke, req.Workspace, Scopes{}); err != nil {
		return RevokeResult{}, err
	}
	ws, err := s.resolver.Resolve(ctx, req.Workspace)
	if err != nil {
		return RevokeResult{}, err
	}
	ok, err := s.api.DeleteToken(ctx, ws, req.TokenID)
	if err != nil {
		return RevokeResult{}, err
	}
	// The token is gone: what follows must happen even if the caller went
	// away, or a version would go on serving the dead token.
	ctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	res := RevokeResult{RequestID: req.RequestID, Workspace: ws.ID, TokenID: req.TokenID, Status: StatusNotFound, SecretURI: st.URI}
	if ok {
		res.Status = StatusRevoked
	}
	known, isKnown, err := s.ledger.Mark(ctx, ws.ID, req.TokenID, TokenRevoked)
	if err != nil {
		return RevokeResult{}, err
	}
	switch name, inVault := secretNameOf(known.SecretURI); {
	case st.URI != "":
		if st.Enabled {
			err = s.vault.Disable(ctx, st)
		}
	case s.vault == nil:
	case isKnown && inVault:
		// The ledger says where it was delivered: look there only.
		err = s.disableIn(ctx, name, req.TokenID)
	case isKnown || (!ok && s.ledger.Durable()):
		// Recorded as inline, or unknown to Databricks and to a durable
		// ledger (no token of ours; made-up ids must not make every
		// revoke list the whole vault).
	default:
		err = s.disableHeld(ctx, ws.ID, req.TokenID) // a token from before the ledger: look everywhere
	}
	if err != nil {
		return RevokeResult{}, err
	}
	return res, nil
}
