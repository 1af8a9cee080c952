package tokens

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// CreateOptions say how a create arrived.
type CreateOptions struct {
	// Marker kind for the token comment (MarkerRequest or MarkerEvent).
	MarkerKind string
	// ReissueUndelivered: when an earlier attempt's token is found, its
	// value never reached anyone (the attempt died before delivering it):
	// revoke it and issue anew instead of answering with its record. A
	// redelivered queue message sets this; HTTP replays and repeated
	// commands do not (the contract answers a repeated request id with the
	// same token's record). With Key Vault delivery the vault itself says
	// whether a value was delivered, and this is ignored.
	ReissueUndelivered bool
	// Holder names the work item this attempt belongs to, the same on
	// every attempt of it: a queue message's entity and sequence number.
	// A claim on the request id still held under the same holder was left
	// by an earlier attempt that died (the handler was killed), and is
	// taken over at once rather than waited out (Hold.Holder). Empty for
	// HTTP calls, whose retries nothing ties together.
	Holder string
}

// CreateResult is the outcome of a create.
type CreateResult struct {
	Record Record
	// Issued is true when this call created the token (HTTP 201), false when
	// it found the token an earlier call with the same request id created.
	Issued bool
	// Revoked lists tokens this call revoked while repairing earlier
	// attempts (values that were never delivered) or making room.
	Revoked []string
}

// Create issues a token for req, at most one live token per request id,
// and delivers it: into Key Vault, or inline in the returned record. by is
// the caller, authorized here before any upstream call.
//
// Errors: NotAuthorized, InvalidRequest (a lifetime the workspace refuses,
// a secret of another workspace), WorkspaceNotAllowed, WorkspaceNotFound,
// WorkspaceNotReady, TokenQuotaExceeded, UpstreamError, UpstreamUnavailable
// (also when clean-up after a failure failed: a retry with the same request
// id repairs it).
func (s *Service) Create(ctx context.Context, by Caller, req CreateRequest, opts CreateOptions) (CreateResult, error) {
	grant, err := s.authorizeIssue(by, req.Workspace, req.Scopes)
	if err != nil {
		return CreateResult{}, err
	}
	if err := capLifetime(&req, grant); err != nil {
		return CreateResult{}, err
	}
	ws, err := s.resolver.Resolve(ctx, req.Workspace)
	if err != nil {
		return CreateResult{}, err
	}
	if err := s.checkLifetime(ctx, ws, req.Lifetime); err != nil {
		return CreateResult{}, err
	}
	if opts.MarkerKind == "" {
		opts.MarkerKind = MarkerRequest
	}
	unlock := s.locks.lock(ws.ID.Key() + "|" + req.RequestID)
	defer unlock()

	var res CreateResult
	name := SecretName(req)
	claim, err := s.ledger.Claim(ctx, ws.ID, req.RequestID, Hold{For: holdFor(ctx), Holder: opts.Holder})
	if err != nil {
		return CreateResult{}, err
	}
	if claim.Recorded != nil {
		if !(opts.ReissueUndelivered && s.vault == nil) {
			return CreateResult{Record: s.fromEntry(ws, *claim.Recorded)}, nil
		}
		// A redelivered command with inline delivery: the recorded token's
		// value travelled only in a result, which may never have got out
		// (the handler died before the message completed). Revoke it and
		// issue anew.
		if err := s.withdraw(ctx, ws, claim.Recorded.TokenID); err != nil {
			return CreateResult{}, cleanupFailed(err)
		}
		res.Revoked = append(res.Revoked, claim.Recorded.TokenID)
		if claim, err = s.ledger.Claim(ctx, ws.ID, req.RequestID, Hold{For: holdFor(ctx)}); err != nil {
			return CreateResult{}, err
		}
		if claim.Recorded != nil { // another delivery reissued it meanwhile
			return CreateResult{Record: s.fromEntry(ws, *claim.Recorded), Revoked: res.Revoked}, nil
		}
	}
	recorded := false
	defer func() {
		if !recorded {
			s.abandon(ctx, claim)
		}
	}()
	// With a durable ledger as the truth, an earlier attempt can have left
	// a token only if it died holding the claim (taken over) or this is a
	// redelivery; only then are the workspace's tokens listed, and every
	// other create costs one Databricks call. An in-memory ledger forgets
	// on restart, so there a caller-chosen request id is looked for too.
	if claim.TakenOver || opts.ReissueUndelivered || req.RequestIDGiven && !s.ledger.Durable() {
		earlier, err := s.findByRequest(ctx, ws, req.RequestID)
		if err != nil {
			return CreateResult{}, err
		}
		if len(earlier) > 0 {
			// Keep the oldest; any others lost an earlier race.
			uri, delivered, err := s.delivered(ctx, name, earlier[0], opts)
			if err != nil {
				return CreateResult{}, err
			}
			if delivered {
				if res.Revoked, err = s.revokeHeld(ctx, ws, earlier[1:]); err != nil {
					return CreateResult{}, cleanupFailed(err)
				}
				rec := s.record(req.RequestID, ws, earlier[0].Token, earlier[0].caller)
				rec.SecretURI = uri
				if err := s.ledger.Record(ctx, claim, s.entry(rec, by)); err != nil {
					return CreateResult{}, err
				}
				recorded = true
				res.Record = rec
				return res, nil
			}
		}
		revoked, err := s.revokeAll(ctx, ws, earlier)
		res.Revoked = append(res.Revoked, revoked...)
		if err != nil {
			return CreateResult{}, cleanupFailed(err)
		}
	}
	st := StoredToken{RequestID: req.RequestID, Comment: req.Comment, Lifetime: req.Lifetime, Kind: opts.MarkerKind, Origin: originOf(by), Scopes: req.Scopes, Workspace: ws.ID}
	if err := s.claim(ctx, name, st); err != nil {
		return CreateResult{}, err
	}

	issued, gc, err := s.createOnce(ctx, ws, Marker{Kind: opts.MarkerKind, RequestID: req.RequestID}, req.Comment, req.Lifetime, req.Scopes)
	res.Revoked = append(res.Revoked, gc...)
	if err != nil {
		return CreateResult{}, err
	}
	return s.handOver(ctx, ws, claim, name, issued, st, by, res, &recorded)
}

// handOver delivers a token just issued under claim (into Key Vault, or
// inline in the record), records it, and, when the claim was taken over
// from a dead attempt, revokes what that attempt may still make
// (revokeLate). st names the request id and comment. Once the token is
// delivered, recordIssued settles the claim whatever happens: settled is
// set then, so the caller's deferred abandon leaves it alone.
func (s *Service) handOver(ctx context.Context, ws Workspace, claim Claim, name string, issued Issued, st StoredToken, by Caller, res CreateResult, settled *bool) (CreateResult, error) {
	rec := s.record(st.RequestID, ws, issued.Token, st.Comment)
	if s.vault != nil {
		uri, err := s.deliver(ctx, ws, name, issued, st)
		if err != nil {
			return CreateResult{}, err
		}
		rec.SecretURI = uri
	} else {
		rec.Value = issued.Value
	}
	*settled = true
	answer, err := s.recordIssued(ctx, ws, claim, rec, s.entry(rec, by))
	if err != nil {
		return CreateResult{Revoked: res.Revoked}, err
	}
	res.Record, res.Issued = answer, answer.TokenID == rec.TokenID
	if claim.TakenOver && res.Issued {
		// A look that fails is left to the sweep, which revokes the
		// strays of a recorded request (revokeStrays): failing the call
		// would throw away a token already delivered and recorded, and
		// its retry would find it recorded and answer without the value.
		late, _ := s.revokeLate(ctx, ws, st.RequestID, rec.TokenID)
		res.Revoked = append(res.Revoked, late...)
	}
	return res, nil
}

// revokeLate runs after a claim taken over from a dead attempt was
// recorded: that attempt's last create can still be under way at the
// workspace (the request was sent, its sender died), and the look by
// marker before creating found nothing of it. The token recorded now is
// the request id's; any other carrying its marker that appears within
// lateCreateWatch is revoked, and the timer's sweep revokes any that
// appears later (Sweep).
func (s *Service) revokeLate(ctx context.Context, ws Workspace, requestID, keep string) ([]string, error) {
	cctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	var revoked []string
	for _, wait := range lateCreateWatch {
		select {
		case <-time.After(wait):
		case <-cctx.Done():
			return revoked, cctx.Err()
		}
		others, err := s.findByRequest(cctx, ws, requestID)
		if err != nil {
			return revoked, err
		}
		others = slices.DeleteFunc(others, func(f found) bool { return f.ID == keep })
		ids, err := s.revokeHeld(cctx, ws, others)
		revoked = append(revoked, ids...)
		if err != nil {
			return revoked, err
		}
	}
	return revoked, nil
}

// holdFor is how long a claim on a request id lasts: the rest of the
// invocation's budget, within which the holder creates, delivers and
// records the token, and a margin. A holder that dies keeps others waiting
// that long, then they take the claim over; one that outlives it (its
// clean-up runs on past the budget) learns so when it records, and defers
// to what the new holder found (recordIssued).
func holdFor(ctx context.Context) time.Duration {
	d := time.Minute
	if deadline, ok := BudgetDeadline(ctx); ok {
		d = time.Until(deadline) + 5*time.Second
	}
	return d
}

// abandon ends a claim nothing was recorded under, on a deadline of its
// own, so the next attempt need not wait for it to run out.
func (s *Service) abandon(ctx context.Context, c Claim) {
	cctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	_ = s.ledger.Abandon(cctx, c) // if it fails, the claim runs out by itself
}

// recordIssued records a token just issued and delivered, and returns the
// record to answer with (the caller's own, or, when another instance took
// the claim over meanwhile and recorded a token of its own, that one).
//
// If the ledger cannot be written (it throttles or is down), the token
// stays: it was delivered, and revoking it would fail a create that
// succeeded. The claim is left to run out; the next attempt with the
// request id takes it over and adopts the token by its marker (Key Vault
// says it was delivered, or, over HTTP, the repeat answers with it), and
// so does the rotation timer's sweep of stranded claims: still one token.
func (s *Service) recordIssued(ctx context.Context, ws Workspace, c Claim, rec Record, e Entry) (Record, error) {
	err := s.ledger.Record(ctx, c, e)
	switch {
	case err == nil:
		return rec, nil
	case !errors.Is(err, ErrClaimLost) && s.vault != nil:
		// Key Vault holds the token: the claim runs out, and the next
		// attempt or the sweep adopts it from there.
		return rec, nil
	case !errors.Is(err, ErrClaimLost):
		// Inline, the value would be in this answer only, and the sweep,
		// finding the claim stranded and no vault holding the token,
		// would revoke it under its holder. It is revoked now instead,
		// and the caller told to try again.
		cctx, cancel := Detached(ctx, CleanupTimeout)
		defer cancel()
		if _, derr := s.api.DeleteToken(cctx, ws, e.TokenID); derr != nil {
			return Record{}, cleanupFailed(errors.Join(err, derr))
		}
		s.abandon(cctx, c) // nothing stands under it now; a retry need not wait for it to run out
		return Record{}, err
	}
	// The claim ran out while the token was being made, and another
	// instance took it over. It may have adopted this token (found by its
	// marker), or made its own: see what it records.
	again, cerr := s.ledger.Claim(ctx, ws.ID, e.RequestID, Hold{For: holdFor(ctx)})
	switch {
	case cerr != nil:
		if werr := s.discard(ctx, ws, e.TokenID); werr != nil {
			return Record{}, cleanupFailed(errors.Join(cerr, werr))
		}
		return Record{}, &Error{Code: CodeUpstreamUnavailable, RetryAfter: 5 * time.Second, Err: cerr,
			Message: "another instance took over this request id while its token was being created; nothing was left behind, try again"}
	case again.Recorded != nil && again.Recorded.TokenID == e.TokenID:
		return rec, nil
	case again.Recorded != nil:
		if werr := s.discard(ctx, ws, e.TokenID); werr != nil {
			return Record{}, cleanupFailed(werr)
		}
		return s.fromEntry(ws, *again.Recorded), nil
	}
	if err := s.ledger.Record(ctx, again, e); err != nil && errors.Is(err, ErrClaimLost) {
		s.abandon(ctx, again)
	}
	return rec, nil
}

// discard revokes a token that was delivered but must not stay, and
// disables the Key Vault versions that hold it.
func (s *Service) discard(ctx context.Context, ws Workspace, tokenID string) error {
	if err := s.withdraw(ctx, ws, tokenID); err != nil {
		return err
	}
	cctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	return s.disableHeld(cctx, ws.ID, tokenID)
}

// entry is what the ledger records of a record.
func (s *Service) entry(rec Record, by Caller) Entry {
	e := Entry{Workspace: rec.Workspace, RequestID: rec.RequestID, TokenID: rec.TokenID, SecretURI: rec.SecretURI,
		Comment: rec.Comment, Scopes: rec.Scopes.List, CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt, State: TokenLive}
	if by != nil {
		e.RequestedBy = by.CallerID()
	}
	return e
}

// fromEntry is the record a repeated request id answers with.
func (s *Service) fromEntry(ws Workspace, e Entry) Record {
	return Record{RequestID: e.RequestID, Workspace: ws.ID, WorkspaceURL: ws.URL, TokenID: e.TokenID, Comment: e.Comment,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, SecretURI: e.SecretURI, Scopes: Scopes{List: e.Scopes}}
}

// authorizeIssue decides whether by may have a token issued in ws, and
// whether it would have somewhere to go: an HTTP caller gets the value in
// its answer, a queue's token needs Key Vault or results that carry values.
func (s *Service) authorizeIssue(by Caller, ws WorkspaceID, scopes Scopes) (Grant, error) {
	grant, err := s.authz.Authorize(by, ActionCreate, ws, scopes)
	if err != nil {
		return Grant{}, err
	}
	if isQueue(by) && s.vault == nil && !s.resultsCarryValues {
		return Grant{}, &Error{Code: CodeDeliveryNotConfigured,
			Message: "a token issued from a queue needs somewhere to go: set KEY_VAULT_URI, or RESULTS_INCLUDE_TOKEN_VALUE=true (with results published)"}
	}
	return grant, nil
}

func originOf(by Caller) string {
	if isQueue(by) {
		return OriginQueue
	}
	return OriginHTTP
}

// claim checks, before any token exists, that the secret may receive a
// token of this workspace and that a version can record it (so a create
// never fails after the token is made for a reason the service could have
// known). A name once confirmed is remembered for an hour.
func (s *Service) claim(ctx context.Context, name string, st StoredToken) error {
	if s.vault == nil {
		return nil
	}
	if err := s.vault.Fits(st); err != nil {
		return err
	}
	ws := st.Workspace
	key := strings.ToLower(name) // Key Vault names ignore case
	if owner, ok := s.claims.get(key, s.now()); ok && owner == ws.Key() {
		return nil
	}
	exists, err := s.vault.Claim(ctx, name, ws)
	if err != nil {
		return err
	}
	if !exists && squats(name, ws) {
		return FieldError(CodeInvalidRequest, "secretName", fmt.Sprintf("%s has the form of another workspace's default secret (databricks-<workspace>-<8 hex>; this workspace's is %s): choose another name, or leave secretName out", name, DefaultSecretName(ws)))
	}
	// Two workspaces' creates into one new secret both find it empty:
	// the ledger's binding of the name, first come first served across
	// instances, keeps the second out before its token exists.
	owner, err := s.ledger.Bind(ctx, "secret/"+key, ws.Key())
	if err != nil {
		return err
	}
	if owner != ws.Key() {
		return FieldError(CodeInvalidRequest, "secretName",
			fmt.Sprintf("Key Vault secret %s is bound to the tokens of another workspace; choose another secretName", name))
	}
	s.claims.put(key, ws.Key(), s.now())
	return nil
}

// defaultSecretNameRE is the form of DefaultSecretName: the workspace's
// name and 8 hex digits of a hash.
var defaultSecretNameRE = regexp.MustCompile(`(?i)^databricks-[0-9a-z-]+-([0-9a-f]{8})$`)

// squats reports whether a new secret's name would take another
// workspace's default: taken first, it would refuse that workspace's own
// creates and events. Eight decimal digits are let through (as likely a
// date, etl-20261128, as a hash). A secret that already holds this
// workspace's tokens is its own, whatever its name.
func squats(name string, ws WorkspaceID) bool {
	m := defaultSecretNameRE.FindStringSubmatch(name)
	return m != nil && strings.ContainsAny(strings.ToLower(m[1]), "abcdef") && !strings.EqualFold(name, DefaultSecretName(ws))
}

// delivered says whether an earlier attempt's token reached its consumer:
// with Key Vault, when a version of the secret holds it; inline, unless the
// caller says this is a redelivery of an attempt that died.
func (s *Service) delivered(ctx context.Context, name string, t found, opts CreateOptions) (string, bool, error) {
	if s.vault == nil {
		return "", !opts.ReissueUndelivered, nil
	}
	st, ok, err := s.vault.Find(ctx, name, t.ID)
	return st.URI, ok, err
}

// deliver writes the value to Key Vault. A write can fail after Key Vault
// made the version (the answer timed out or the connection was cut on its
// way back): the vault is asked, and a version that holds the token is the
// delivery. Otherwise the value is lost for good, so the token is revoked
// before the error is returned (no orphan), and the vault is asked again a
// moment later, in case the write landed late: any version holding the
// revoked token is disabled, so no consumer reads it as the latest. If the
// revoke fails too, the error is transient whatever the write's was: only
// a retry (which finds the token by its marker and revokes it) repairs that.
func (s *Service) deliver(ctx context.Context, ws Workspace, name string, issued Issued, st StoredToken) (string, error) {
	st.TokenID, st.Workspace, st.ExpiresAt, st.IssuedAt = issued.ID, ws.ID, issued.ExpiresAt, issued.CreatedAt
	uri, err := s.vault.Put(ctx, name, issued.Value, st)
	if err == nil {
		return uri, nil
	}
	cctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	if v, held, ferr := s.vault.Find(cctx, name, issued.ID); ferr == nil && held {
		return v.URI, nil
	}
	if rerr := s.withdraw(ctx, ws, issued.ID); rerr != nil {
		return "", cleanupFailed(errors.Join(err, rerr))
	}
	if CodeOf(err) != CodeUpstreamUnavailable {
		return "", err // refused: no version was made
	}
	for _, wait := range lateCreateWatch {
		select {
		case <-time.After(wait):
		case <-cctx.Done():
			return "", err
		}
		if derr := s.disableIn(cctx, name, issued.ID); derr != nil {
			return "", cleanupFailed(errors.Join(err, derr))
		}
	}
	return "", err
}

// disableIn disables the enabled versions of secret name that hold tokenID
// (a write retried after lost answers can have made several).
func (s *Service) disableIn(ctx context.Context, name, tokenID string) error {
	sec, err := s.vault.Secret(ctx, name)
	if err != nil {
		return err
	}
	for _, v := range sec.Versions {
		if v.Enabled && v.TokenID == tokenID {
			if err := s.vault.Disable(ctx, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// withdraw revokes a token whose value can no longer reach anyone, on a
// deadline of its own: the usual reason is that the invocation's budget
// ran out or its caller went away.
func (s *Service) withdraw(ctx context.Context, ws Workspace, tokenID string) error {
	cctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	if _, err := s.api.DeleteToken(cctx, ws, tokenID); err != nil {
		return fmt.Errorf("revoke undelivered token %s: %w", tokenID, err)
	}
	_, _, err := s.ledger.Mark(cctx, ws.ID, tokenID, TokenRevoked)
	return err
}

// Withdraw revokes a token the service issued whose value can no longer
// reach anyone: inline delivery, and the result that was to carry it could
// not be published. It runs on a deadline of its own.
//
// Errors: UpstreamError, UpstreamUnavailable (the caller should fail the
// invocation, so a redelivery finds the token by its marker and revokes it).
func (s *Service) Withdraw(ctx context.Context, rec Record) error {
	// The record's URL is the one ARM returned and the allow-list accepted
	// when the token was made.
	return s.withdraw(ctx, Workspace{ID: rec.Workspace, URL: rec.WorkspaceURL}, rec.TokenID)
}

// cleanupFailed turns a failure to clean up (revoke a token whose value
// never reached anyone) into a transient error, whatever the cause was: a
// token may be live with its value nowhere, and only a retry of the same
// request, which finds it by its marker, revokes it.
func cleanupFailed(err error) error {
	e := AsError(err)
	return &Error{Code: CodeUpstreamUnavailable, RetryAfter: 5 * time.Second, Err: err,
		Message: e.Message + "; cleaning up failed, so retry the request with the same request id (the retry revokes what was left)"}
}

// checkLifetime refuses, before any create, a lifetime the workspace would
// refuse. Only lifetimes over a day are checked: maxTokenLifetimeDays is a
// whole number of days, so shorter tokens always fit, and most creates cost
// no extra call. The workspace's settings are cached for an hour; if they
// cannot be read (workspace-conf needs admin rights the identity may not
// have), Databricks' own answer to the create is the check.
func (s *Service) checkLifetime(ctx context.Context, ws Workspace, lifetime time.Duration) error {
	if lifetime <= 24*time.Hour {
		return nil
	}
	p, ok := s.policies.get(ws.ID.Key(), s.now())
	if !ok {
		var err error
		if p, err = s.api.Policy(ctx, ws); err != nil {
			return nil
		}
		s.policies.put(ws.ID.Key(), p, s.now())
	}
	if !p.TokensEnabled {
		return &Error{Code: CodeUpstreamError, Message: fmt.Sprintf("personal access tokens are disabled in workspace %s (enableTokensConfig)", ws.ID.Name)}
	}
	if p.MaxLifetime > 0 && lifetime > p.MaxLifetime {
		days := int(p.MaxLifetime / (24 * time.Hour))
		msg := fmt.Sprintf("lifetimeSeconds %d is longer than workspace %s allows (maxTokenLifetimeDays %d, %d seconds)", int64(lifetime/time.Second), ws.ID.Name, days, int64(p.MaxLifetime/time.Second))
		return FieldError(CodeInvalidRequest, "lifetimeSeconds", msg)
	}
	return nil
}

// createOnce creates the token. After an ambiguous failure (the workspace
// may have carried the create out: a dropped connection, a 5xx, an answer
// that came after the budget ran out or the caller went away) it finds
// whatever the lost attempt created by its marker and revokes it, on a
// deadline of its own, then tries once more if the budget allows. When the
// identity holds the maximum number of tokens, the service's own superseded
// tokens are revoked to make room, and the create tried once more.
func (s *Service) createOnce(ctx context.Context, ws Workspace, m Marker, comment string, lifetime time.Duration, scopes Scopes) (Issued, []string, error) {
	full := m.Comment(comment)
	var collected []string
	for attempt := 0; ; attempt++ {
		issued, err := s.api.CreateToken(ctx, ws, full, lifetime, scopes)
		switch {
		case err == nil:
			return issued, collected, nil
		case CodeOf(err) == CodeTokenQuotaExceeded && collected == nil:
			freed, gerr := s.collect(ctx, ws)
			if gerr != nil || len(freed) == 0 {
				return Issued{}, nil, err
			}
			collected = freed
			continue
		case !errors.Is(err, ErrAmbiguous):
			return Issued{}, collected, err
		}
		if rerr := s.reconcile(ctx, ws, m.RequestID, errors.Is(err, context.DeadlineExceeded)); rerr != nil {
			return Issued{}, collected, cleanupFailed(errors.Join(err, rerr))
		}
		if ctx.Err() != nil {
			return Issued{}, collected, &Error{Code: CodeUpstreamUnavailable, RetryAfter: 5 * time.Second, Err: err,
				Message: "the workspace did not answer the create within the retry budget (UPSTREAM_RETRY_BUDGET); nothing was left behind"}
		}
		if attempt >= 1 {
			return Issued{}, collected, &Error{Code: CodeUpstreamUnavailable, RetryAfter: 5 * time.Second, Err: err,
				Message: "the workspace dropped the connection twice while creating the token; nothing was left behind"}
		}
	}
}

// lateCreateWatch is how long after giving up on a create's answer the
// service keeps looking for the token it may still make: a create whose
// answer came too late (the budget ran out, the caller went away) can
// still be under way at the workspace when the first look finds nothing.
var lateCreateWatch = []time.Duration{time.Second, 2 * time.Second}

// reconcile revokes whatever tokens carry requestID's marker: the work of
// an interrupted create, whose value never arrived. It runs on a deadline
// of its own, since the usual reason is that the invocation's budget ran
// out, and holds the request id's lock throughout, so a retry on this
// instance waits for it rather than having its new token taken for a lost one.
// late says the answer timed out rather than the connection dropping.
func (s *Service) reconcile(ctx context.Context, ws Workspace, requestID string, late bool) error {
	cctx, cancel := Detached(ctx, CleanupTimeout)
	defer cancel()
	looks := []time.Duration{0}
	if late || ctx.Err() != nil {
		looks = append(looks, lateCreateWatch...)
	}
	for _, wait := range looks {
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-cctx.Done():
				return cctx.Err()
			}
		}
		lost, err := s.findByRequest(cctx, ws, requestID)
		if err != nil {
			return err
		}
		if _, err := s.revokeAll(cctx, ws, lost); err != nil {
			return err
		}
	}
	return nil
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
	return byRequest(all, requestID), nil
}

func byRequest(all []Token, requestID string) []found {
	var out []found
	for _, t := range all {
		if m, caller, ok := SplitComment(t.Comment); ok && m.RequestID == requestID {
			out = append(out, found{Token: t, caller: caller})
		}
	}
	sortOldestFirst(out)
	return out
}

func sortOldestFirst(ts []found) {
	slices.SortFunc(ts, func(a, b found) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// collect revokes the service's own superseded tokens in a workspace, to
// make room under the 600-token quota: tokens of Key Vault versions that a
// rotation replaced, and event tokens older than the newest one. It never
// touches tokens the service did not issue, nor the current ones.
func (s *Service) collect(ctx context.Context, ws Workspace) ([]string, error) {
	all, err := s.api.ListTokens(ctx, ws)
	if err != nil {
		return nil, err
	}
	superseded := map[string]bool{}
	if s.vault != nil {
		secrets, err := s.vault.Managed(ctx)
		if err != nil {
			return nil, err
		}
		for _, sec := range secrets {
			for _, group := range byWorkspace(sec.Versions) {
				if group[0].Workspace.Equal(ws.ID) {
					for _, v := range group[1:] {
						superseded[v.TokenID] = true
					}
				}
			}
		}
	}
	var events []found
	var victims []found
	now := s.now()
	for _, t := range all {
		m, caller, ok := SplitComment(t.Comment)
		switch {
		case !ok:
		case superseded[t.ID] || (!t.ExpiresAt.IsZero() && !t.ExpiresAt.After(now)):
			victims = append(victims, found{Token: t, caller: caller})
		case m.Kind == MarkerEvent:
			events = append(events, found{Token: t, caller: caller})
		}
	}
	if len(events) > 1 {
		sortOldestFirst(events)
		victims = append(victims, events[:len(events)-1]...)
	}
	return s.revokeHeld(ctx, ws, victims)
}

// byWorkspace splits a secret's versions (newest first) by the workspace
// whose token each holds, each group newest first. A secret normally holds
// one workspace's tokens; one written before default names were unique per
// workspace may hold several, and each workspace's newest is its current.
func byWorkspace(versions []StoredToken) [][]StoredToken {
	var groups [][]StoredToken
	index := map[string]int{}
	for _, v := range versions {
		k := v.Workspace.Key()
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], v)
	}
	return groups
}

func (s *Service) record(requestID string, ws Workspace, t Token, caller string) Record {
	return Record{
		RequestID:    requestID,
		Workspace:    ws.ID,
		WorkspaceURL: ws.URL,
		TokenID:      t.ID,
		Comment:      caller,
		CreatedAt:    t.CreatedAt,
		ExpiresAt:    t.ExpiresAt,
		Scopes:       t.Scopes,
	}
}
