package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrRotationRunning is returned when a rotation run is already under way
// in this process (a timer fired twice): the second run does nothing.
var ErrRotationRunning = errors.New("a rotation run is already in progress")

// RotateOptions configure a rotation run.
type RotateOptions struct {
	// Before: versions expiring within this window are renewed.
	Before time.Duration
	// DefaultLifetime is used for versions whose lifetime tag is missing.
	DefaultLifetime time.Duration
	// Queue is the caller the rotation of queue-issued tokens (commands,
	// workspace events) acts as: the policy's rules for the queue decide
	// whether such a token is renewed and how long the successor may live,
	// as they did when it was issued. Tokens issued over HTTP keep the
	// lifetime their caller was granted.
	Queue Caller
	// MaxLifetime (TOKEN_MAX_LIFETIME) bounds every successor, whatever
	// its predecessor had: lowering the setting shortens tokens at their
	// next rotation.
	MaxLifetime time.Duration
}

// Rotate renews every managed Key Vault token inside the rotation window
// (dueSecrets says which secrets to look at):
// a new token with the same lifetime, comment, scopes and kind, once a
// call made with it succeeded, becomes the secret's new latest version,
// and consumers reading the latest version never see an expired token nor
// one that does not work. The superseded token keeps working until it
// expires; a later run then revokes it, if still live, and disables its
// version. Each workspace's tokens in a secret are rotated on their own.
// Every outcome is returned; one failing never stops the others.
func (s *Service) Rotate(ctx context.Context, opts RotateOptions) ([]Outcome, error) {
	if s.vault == nil {
		return nil, nil
	}
	if !s.rotating.TryLock() {
		return nil, ErrRotationRunning
	}
	defer s.rotating.Unlock()
	secrets, err := s.dueSecrets(ctx, opts)
	if err != nil {
		return nil, err
	}
	var out []Outcome
	for _, sec := range secrets {
		if sec.Err != nil {
			out = append(out, unlisted(sec))
			continue
		}
		for _, group := range byWorkspace(sec.Versions) {
			if o, ok := s.rotateVersion(ctx, sec.Name, group[0], opts); ok {
				out = append(out, o)
			}
			out = append(out, s.retire(ctx, group[1:])...)
		}
	}
	return out, nil
}

// vaultScanEvery is how often rotation scans the whole vault although the
// ledger says what is due: versions the ledger does not know (written
// before it existed, or whose record was lost) are rotated too, a day
// late at most.
const vaultScanEvery = 24 * time.Hour

// retireLookback is how far back a ledger-driven run looks for superseded
// tokens that expired and whose versions are to be retired; the daily
// vault scan retires any older.
const retireLookback = 7 * 24 * time.Hour

// dueSecrets is the secrets a rotation run looks at. With a durable ledger,
// it reads what is due from the ledger: the secrets holding a live token
// that expires inside the window, or a superseded one that expired lately;
// each costs one listing of that secret's versions, however large the
// vault. Once a day (one run in the deployment, Ledger.Due), and always
// with an in-memory ledger, which forgets on restart, it scans every
// managed secret instead.
func (s *Service) dueSecrets(ctx context.Context, opts RotateOptions) ([]ManagedSecret, error) {
	if !s.ledger.Durable() {
		return s.vault.Managed(ctx)
	}
	full, err := s.ledger.Due(ctx, "rotation-vault-scan", vaultScanEvery)
	if err != nil {
		return nil, err
	}
	if full {
		return s.vault.Managed(ctx)
	}
	now := s.now()
	var names []string
	due := map[string][]StoredToken{} // lower-cased name: the entry that made it due, for a Failed outcome
	f := InventoryFilter{Top: MaxInventoryTop}
	// Newest first, and the due entries are the oldest: read to the end
	// (names only are kept; the bound, 500,000 entries, is a safety net).
	for range 1000 {
		page, err := s.ledger.Inventory(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, e := range page.Entries {
			name, ok := secretNameOf(e.SecretURI)
			if !ok || e.ExpiresAt.IsZero() {
				continue
			}
			renew := e.State == TokenLive && !e.ExpiresAt.After(now.Add(opts.Before))
			retire := e.State != TokenRevoked && !e.ExpiresAt.After(now) && e.ExpiresAt.After(now.Add(-retireLookback))
			if (renew || retire) && !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) }) {
				names = append(names, name)
				due[strings.ToLower(name)] = []StoredToken{{Workspace: e.Workspace, TokenID: e.TokenID, ExpiresAt: e.ExpiresAt, RequestID: e.RequestID}}
			}
		}
		if f.ContinuationToken = page.ContinuationToken; f.ContinuationToken == "" {
			break
		}
	}
	out := make([]ManagedSecret, 0, len(names))
	for _, n := range names {
		sec, err := s.vault.Secret(ctx, n)
		if err != nil {
			sec = ManagedSecret{Name: n, Err: err, Versions: due[strings.ToLower(n)]}
		}
		if len(sec.Versions) > 0 {
			out = append(out, sec)
		}
	}
	return out, nil
}

// unlisted is the Failed outcome of a secret whose versions could not be
// listed: its tokens are neither renewed nor retired this run, and the
// next run tries again. The ledger's entries, when the ledger said the
// secret was due, name its workspace and token.
func unlisted(sec ManagedSecret) Outcome {
	reqID := rotationRequestID(sec.Name, "")
	o := Outcome{Type: Failed, RequestID: reqID, CorrelationID: reqID, Err: AsError(sec.Err)}
	if len(sec.Versions) > 0 {
		v := sec.Versions[0]
		o.Workspace, o.TokenID, o.Rotating = v.Workspace.String(), v.TokenID, &v
	}
	return o
}

// secretNameOf is the secret a version URI names
// (https://<vault>/secrets/<name>/<version>).
func secretNameOf(uri string) (string, bool) {
	_, rest, ok := strings.Cut(uri, "/secrets/")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, name != ""
}

// rotationRequestID is the request id of the rotation of one version: the
// same for every run that sees that version as the latest, so two runs
// (or a crashed one and its successor) find each other's token.
func rotationRequestID(sec string, version string) string {
	sum := sha256.Sum256([]byte(sec + "/" + version))
	return "rot-" + hex.EncodeToString(sum[:12])
}

func (s *Service) rotateVersion(ctx context.Context, name string, latest StoredToken, opts RotateOptions) (Outcome, bool) {
	now := s.now()
	if !latest.Enabled || latest.ExpiresAt.IsZero() || latest.ExpiresAt.After(now.Add(opts.Before)) {
		return Outcome{}, false
	}
	reqID := rotationRequestID(name, latest.Version)
	o := Outcome{Type: Failed, RequestID: reqID, Workspace: latest.Workspace.String(), CorrelationID: reqID, Rotating: &latest}
	fail := func(err error) (Outcome, bool) {
		o.Err = AsError(err)
		return o, true
	}
	lifetime := latest.Lifetime
	if lifetime <= 0 {
		lifetime = opts.DefaultLifetime
	}
	if latest.Origin == OriginQueue {
		o.RequestedBy = OriginQueue
		grant, err := s.authz.Authorize(opts.Queue, ActionCreate, latest.Workspace, latest.Scopes)
		if err != nil {
			return fail(err)
		}
		if grant.MaxLifetime > 0 && lifetime > grant.MaxLifetime {
			lifetime = grant.MaxLifetime
		}
	}
	ws, err := s.resolver.Resolve(ctx, latest.Workspace)
	if err != nil {
		return fail(err)
	}
	unlock := s.locks.lock(ws.ID.Key() + "|" + reqID)
	defer unlock()
	// The claim on the rotation's request id is the lock across instances:
	// a run that finds it recorded knows another run rotated this version.
	claim, err := s.ledger.Claim(ctx, ws.ID, reqID, Hold{For: holdFor(ctx)})
	if err != nil {
		return fail(err)
	}
	if claim.Recorded != nil {
		return Outcome{}, false
	}
	recorded := false
	defer func() {
		if !recorded {
			s.abandon(ctx, claim)
		}
	}()
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return fail(err)
	}
	if _, ok := issuedBy(all, latest); !ok {
		return fail(&Error{Code: CodeInvalidRequest, Target: "tokenId",
			Message: fmt.Sprintf("secret %s: its latest version names token %s, which the workspace does not list as a live token this service issued for request %q (revoked, expired, or the version's tags were edited): it is not renewed; create a new token", name, latest.TokenID, latest.RequestID)})
	}
	if err := sameScopes(latest, all); err != nil {
		return fail(err)
	}
	lifetime = provenLifetime(latest, all, lifetime, opts.MaxLifetime)
	earlier := byRequest(all, reqID)
	for _, e := range earlier {
		if _, held, err := s.vault.Find(ctx, name, e.ID); err != nil {
			return fail(err)
		} else if held {
			return Outcome{}, false // another run already rotated this version
		}
	}
	if _, err := s.revokeAll(ctx, ws, earlier); err != nil {
		return fail(cleanupFailed(err))
	}
	kind := latest.Kind
	if kind == "" { // versions written before the kind was recorded: ask the token itself
		kind = MarkerRequest
		for _, t := range all {
			if m, _, ok := SplitComment(t.Comment); ok && t.ID == latest.TokenID {
				kind = m.Kind
			}
		}
	}
	issued, _, err := s.createOnce(ctx, ws, Marker{Kind: kind, RequestID: reqID}, latest.Comment, lifetime, latest.Scopes)
	if err != nil {
		return fail(err)
	}
	if err := s.verify(ctx, ws, issued); err != nil {
		return fail(err)
	}
	st := StoredToken{RequestID: reqID, Comment: latest.Comment, Lifetime: lifetime, Kind: kind, Origin: latest.Origin, Scopes: latest.Scopes}
	uri, err := s.deliver(ctx, ws, name, issued, st)
	if err != nil {
		return fail(err)
	}
	// A revoke of the token (or its version) that landed while this run
	// issued and wrote the successor disabled the version being renewed:
	// the secret was to end there, so the successor goes too.
	if cur, gerr := s.vault.Get(ctx, latest.URI); gerr == nil && !cur.Enabled {
		if werr := s.withdraw(ctx, ws, issued.ID); werr != nil {
			return fail(cleanupFailed(werr))
		}
		if derr := s.disableIn(ctx, name, issued.ID); derr != nil {
			return fail(cleanupFailed(derr))
		}
		return fail(&Error{Code: CodeInvalidRequest, Target: "secretUri",
			Message: fmt.Sprintf("secret %s: its token was revoked while this rotation ran; the successor was revoked too, and the secret ends here", name)})
	}
	rec := s.record(reqID, ws, issued.Token, latest.Comment)
	rec.SecretURI = uri
	// The successor is the secret's latest version now: it stays whatever
	// the ledger says (an unrecorded claim runs out and is resolved by its
	// marker, which Key Vault shows was delivered).
	recorded = true
	if err := s.ledger.Record(ctx, claim, s.entry(rec, nil)); err == nil {
		_, _, _ = s.ledger.Mark(ctx, ws.ID, latest.TokenID, TokenRotated) // the inventory's view; the rotation stands either way
	}
	o.Type, o.Err, o.TokenID, o.Record = Rotated, nil, issued.ID, &rec
	return o, true
}

// issuedBy finds the token a version holds among the workspace's live
// tokens: the one with its id whose marker names the version's request.
// The version's tags can be edited by anyone who may write the vault, and
// rotation takes the workspace, scopes, lifetime and origin from them; a
// version that names no such token (a token id made up, copied from
// another workspace, revoked or expired) buys nothing. Versions written
// before the request id was tagged need only carry a marker.
func issuedBy(all []Token, v StoredToken) (Token, bool) {
	for _, t := range all {
		if t.ID != v.TokenID {
			continue
		}
		m, _, ok := SplitComment(t.Comment)
		return t, ok && (v.RequestID == "" || m.RequestID == v.RequestID)
	}
	return Token{}, false
}

// provenLifetime bounds a successor's lifetime (from the version's tags,
// or the queue policy's cap) by what Databricks says the predecessor was
// given, from its creation to its expiry, and by TOKEN_MAX_LIFETIME. Tags
// can be edited by anyone who may write the vault: a lifetime tag raised
// to ten years must not buy a ten-year successor.
func provenLifetime(latest StoredToken, all []Token, lifetime, maxLifetime time.Duration) time.Duration {
	for _, t := range all {
		if t.ID != latest.TokenID || t.CreatedAt.IsZero() || t.ExpiresAt.IsZero() {
			continue
		}
		if given := t.ExpiresAt.Sub(t.CreatedAt).Round(time.Second); given > 0 && given < lifetime {
			lifetime = given
		}
	}
	if maxLifetime > 0 && lifetime > maxLifetime {
		lifetime = maxLifetime
	}
	return lifetime
}

// sameScopes checks the scopes a version's tags record against the
// predecessor's own record in Databricks, when Databricks lists it with
// scopes. Tags can be edited by anyone who may write the vault; a
// successor is issued with the tags' scopes, so a stripped or changed tag
// would otherwise buy a token with more than its predecessor had. On any
// disagreement nothing is issued. (A token Databricks lists without scopes
// cannot be checked: an older API, or a truly unscoped token, whose tags
// could then only narrow the successor, or ask for autoscope.)
func sameScopes(latest StoredToken, all []Token) error {
	for _, t := range all {
		if t.ID != latest.TokenID || len(t.Scopes.List) == 0 {
			continue
		}
		a, b := slices.Sorted(slices.Values(t.Scopes.List)), slices.Sorted(slices.Values(latest.Scopes.List))
		if !slices.Equal(a, b) || t.Scopes.Autoscope != latest.Scopes.Autoscope {
			return &Error{Code: CodeInvalidRequest, Target: "scopes",
				Message: fmt.Sprintf("the scopes Key Vault records for token %s (%q, autoscope %v) are not the ones Databricks lists for it (%q, autoscope %v): not renewed; correct the version's scopes tag, or revoke the secret and issue anew",
					t.ID, latest.Scopes.String(), latest.Scopes.Autoscope, t.Scopes.String(), t.Scopes.Autoscope)}
		}
	}
	return nil
}

// verify proves a successor works before any consumer can read it: one
// call made with the new token itself (TokenAPI.VerifyToken), on the
// workspace URL ARM returned and the allow-list accepted. Until that
// succeeds no version holds the token, so a successor that does not work
// (refused, or the check could not be made) is revoked and the current
// version stays latest: its consumers keep a token that works, and the
// next run tries again. If the revoke fails too, the next run finds the
// token by its rotation marker (not held by any version) and revokes it.
func (s *Service) verify(ctx context.Context, ws Workspace, issued Issued) error {
	err := s.api.VerifyToken(ctx, ws, issued.Value)
	if err == nil {
		return nil
	}
	e := AsError(err)
	out := &Error{Code: e.Code, Upstream: e.Upstream, RetryAfter: e.RetryAfter, Err: err,
		Message: "the new token failed verification (" + e.Message + "); it was revoked, and the current version stays the latest"}
	if rerr := s.withdraw(ctx, ws, issued.ID); rerr != nil {
		out.Err = errors.Join(err, rerr)
		out.Message = "the new token failed verification (" + e.Message + ") and revoking it failed; the current version stays the latest, and the next run revokes it"
	}
	return out
}

// retire revokes the tokens of superseded versions once they expired (if
// Databricks still lists them) and disables those versions.
func (s *Service) retire(ctx context.Context, superseded []StoredToken) []Outcome {
	var out []Outcome
	now := s.now()
	var listed []Token // the workspace's live tokens, listed once
	var listErr error
	for _, v := range superseded {
		if !v.Enabled || v.ExpiresAt.IsZero() || v.ExpiresAt.After(now) {
			continue
		}
		reqID := "retire-" + v.Version
		o := Outcome{Type: Revoked, RequestID: reqID, Workspace: v.Workspace.String(), TokenID: v.TokenID, CorrelationID: reqID}
		ws, err := s.resolver.Resolve(ctx, v.Workspace)
		if err == nil && listed == nil && listErr == nil {
			if listed, listErr = s.api.ListTokens(ctx, ws); listed == nil {
				listed = []Token{}
			}
		}
		if err == nil {
			err = listErr
		}
		if err == nil {
			// Only a token the version truly holds is revoked: its tags
			// (the expiry that makes it due here, the token id) can be
			// edited, and must not aim the service at another token.
			_, live := issuedBy(listed, v)
			present := slices.ContainsFunc(listed, func(t Token) bool { return t.ID == v.TokenID })
			if live {
				live, err = s.api.DeleteToken(ctx, ws, v.TokenID)
			}
			if err == nil {
				state := TokenExpired
				if live {
					state = TokenRevoked
				}
				if live || !present { // a listed token the version does not hold is not its to mark
					_, _, _ = s.ledger.Mark(ctx, ws.ID, v.TokenID, state) // the inventory's view; retiring stands either way
				}
				err = s.vault.Disable(ctx, v)
				status := StatusNotFound
				if live {
					status = StatusRevoked
				}
				o.Revoke = &RevokeResult{RequestID: reqID, Workspace: ws.ID, TokenID: v.TokenID, Status: status, SecretURI: v.URI}
			}
		}
		if err != nil {
			o.Type, o.Revoke, o.Err = Failed, nil, AsError(err)
		}
		out = append(out, o)
	}
	return out
}
