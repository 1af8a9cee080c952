package tokens

import (
	"context"
	"slices"
	"sync"
	"time"
)

// fakeLedger is a single-process Ledger for the service's unit tests (the
// real ones, in internal/ledger, have their own suite).
type fakeLedger struct {
	mu      sync.Mutex
	entries map[string]Entry // by workspace key + request id
	held    map[string]bool
	// ledgerDriven makes Due say no: rotation then reads what is due from
	// the entries instead of scanning the vault.
	ledgerDriven bool
	binds        map[string]string
}

func newFakeLedger() *fakeLedger {
	return &fakeLedger{entries: map[string]Entry{}, held: map[string]bool{}}
}

func ledgerKey(ws WorkspaceID, requestID string) string { return ws.Key() + "|" + requestID }

func (l *fakeLedger) Claim(_ context.Context, ws WorkspaceID, requestID string, _ Hold) (Claim, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := ledgerKey(ws, requestID)
	if e, ok := l.entries[k]; ok && (e.State == TokenLive || e.State == TokenRotated) && (e.ExpiresAt.IsZero() || e.ExpiresAt.After(fixedNow())) {
		return Claim{Recorded: &e}, nil
	}
	l.held[k] = true
	return Claim{Handle: k}, nil
}

func (l *fakeLedger) Record(_ context.Context, c Claim, e Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := c.Handle.(string)
	if !l.held[k] {
		return ErrClaimLost
	}
	delete(l.held, k)
	e.State = TokenLive
	l.entries[k] = e
	return nil
}

func (l *fakeLedger) Abandon(_ context.Context, c Claim) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k, ok := c.Handle.(string); ok {
		delete(l.held, k)
	}
	return nil
}

func (l *fakeLedger) Mark(_ context.Context, ws WorkspaceID, tokenID string, st TokenState) (Entry, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, e := range l.entries {
		if e.TokenID == tokenID && e.Workspace.Equal(ws) {
			if e.State != TokenRevoked && e.State != TokenExpired {
				e.State = st
				l.entries[k] = e
			}
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

func (l *fakeLedger) Inventory(_ context.Context, f InventoryFilter) (InventoryPage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out InventoryPage
	for _, e := range l.entries {
		if len(f.States) == 0 || slices.Contains(f.States, e.State) {
			out.Entries = append(out.Entries, e)
		}
	}
	return out, nil
}

func (l *fakeLedger) Due(context.Context, string, time.Duration) (bool, error) {
	return !l.ledgerDriven, nil
}

func (l *fakeLedger) Bind(_ context.Context, key, owner string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.binds[key]; ok {
		return cur, nil
	}
	if l.binds == nil {
		l.binds = map[string]string{}
	}
	l.binds[key] = owner
	return owner, nil
}

func (l *fakeLedger) Durable() bool { return true }

func (l *fakeLedger) Purge(context.Context) ([]Entry, error) { return nil, nil }

func (l *fakeLedger) state(tokenID string) TokenState {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.TokenID == tokenID {
			return e.State
		}
	}
	return ""
}

// newTestService is NewService with a fresh fake ledger unless d has one.
func newTestService(d Deps) *Service {
	if d.Ledger == nil {
		d.Ledger = newFakeLedger()
	}
	return NewService(d)
}
