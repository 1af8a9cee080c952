package ledger

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Memory is the ledger of a single instance: what a bare `go run .` uses
// when no storage is configured. It keeps exactly the semantics of [Table]
// (the same tests run against both), but nothing survives a restart and
// other instances do not see it. It is safe for concurrent use.
type Memory struct {
	opts Options

	mu   sync.Mutex
	seq  uint64
	rows map[string]*memRecord // by partition key + "\x00" + record key
	// order is the keys in the order their records were made, for the
	// bound on how many the instance keeps.
	order []string
	// jobs is when each periodic job last ran (Due).
	jobs      map[string]time.Time
	binds     map[string]string // Bind
	bindOrder []string          // binds' keys, oldest first
}

// MaxMemoryRecords bounds the in-memory ledger: every create records its
// request id, and callers choose those (or each create makes a new one),
// so an unbounded map would grow with traffic. Past it the oldest records
// go; the service then finds a caller's request id by the token marker,
// as it does after a restart, since this ledger is not durable.
const MaxMemoryRecords = 4096

type memRecord struct {
	row        Row // Status as stored
	prevStatus Status
	etag       string
}

var _ Ledger = (*Memory)(nil)

// NewMemory returns an empty in-memory ledger.
func NewMemory(opts Options) *Memory {
	return &Memory{opts: opts, rows: make(map[string]*memRecord)}
}

func (m *Memory) String() string { return "in memory (this instance only)" }

func memKey(k Key) string { return partitionKey(k.Workspace) + "\x00" + recordKey(k.RequestID) }

func (m *Memory) nextETag() string {
	m.seq++
	return strconv.FormatUint(m.seq, 10)
}

// read returns a copy of a record with its status as of now.
func (m *Memory) read(rec *memRecord, now time.Time) Row {
	r := rec.row
	r.Token = cloneToken(r.Token)
	r.Status = effective(r.Status, r.ExpiresAt, now)
	return r
}

// Acquire implements [Ledger].
func (m *Memory) Acquire(ctx context.Context, key Key, terms Terms) (Acquisition, error) {
	if err := ctx.Err(); err != nil {
		return Acquisition{}, tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.now()
	lease := Lease{Key: key, Owner: terms.owner(), Until: now.Add(terms.For)}
	rec := m.rows[memKey(key)]
	if rec == nil {
		lease.etag = m.nextETag()
		m.rows[memKey(key)] = &memRecord{etag: lease.etag, row: Row{Key: key, Status: StatusPending, LeaseOwner: lease.Owner, LeaseUntil: lease.Until}}
		m.order = append(m.order, memKey(key))
		m.evict()
		return Acquisition{Outcome: Leased, Lease: lease}, nil
	}
	before := m.read(rec, now)
	switch {
	case rec.row.Status == StatusPending && rec.row.LeaseUntil.After(now) && !terms.resumes(rec.row.LeaseOwner):
		return Acquisition{Outcome: Busy, Row: before}, nil
	case rec.row.Status == StatusPending:
		lease.TakenOver = true
	case usable(before.Status):
		return Acquisition{Outcome: Recorded, Row: before}, nil
	default: // ended: the request id issues a new token
		rec.prevStatus = rec.row.Status
	}
	lease.etag = m.nextETag()
	rec.etag = lease.etag
	rec.row.Status, rec.row.LeaseOwner, rec.row.LeaseUntil = StatusPending, lease.Owner, lease.Until
	return Acquisition{Outcome: Leased, Lease: lease, Row: before}, nil
}

func (m *Memory) holds(lease Lease) (*memRecord, bool) {
	rec := m.rows[memKey(lease.Key)]
	return rec, rec != nil && rec.etag == lease.etag && rec.row.Status == StatusPending && rec.row.LeaseOwner == lease.Owner
}

// evict drops the oldest records past MaxMemoryRecords, never one whose
// lease is held. Keys already gone are skipped.
func (m *Memory) evict() {
	for len(m.rows) > MaxMemoryRecords && len(m.order) > 0 {
		k := m.order[0]
		m.order = m.order[1:]
		if rec, ok := m.rows[k]; ok && rec.row.Status == StatusPending {
			m.order = append(m.order, k) // busy: look at it again later
			continue
		}
		delete(m.rows, k)
	}
	if len(m.order) > 2*MaxMemoryRecords { // keys released or purged since
		live := m.order[:0]
		for _, k := range m.order {
			if _, ok := m.rows[k]; ok {
				live = append(live, k)
			}
		}
		m.order = live
	}
}

// Complete implements [Ledger].
func (m *Memory) Complete(ctx context.Context, lease Lease, t Token) (Row, error) {
	if err := validToken(t); err != nil {
		return Row{}, err
	}
	if err := ctx.Err(); err != nil {
		return Row{}, tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.holds(lease)
	now := m.opts.now()
	if !ok {
		// The same token recorded already (a repeated Complete) is success,
		// as it is for Table, where a retry may find its own earlier write.
		if rec != nil && rec.row.Status != StatusPending && rec.row.TokenID == t.TokenID {
			return m.read(rec, now), nil
		}
		return Row{}, ErrLeaseLost
	}
	rec.row = Row{Key: lease.Key, Token: cloneToken(t), Status: StatusLive, StatusChangedAt: now}
	rec.prevStatus = ""
	rec.etag = m.nextETag()
	return m.read(rec, now), nil
}

// Release implements [Ledger].
func (m *Memory) Release(ctx context.Context, lease Lease) error {
	if err := ctx.Err(); err != nil {
		return tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.holds(lease)
	if !ok {
		return ErrLeaseLost
	}
	if rec.row.TokenID == "" {
		delete(m.rows, memKey(lease.Key))
		return nil
	}
	rec.row.Status, rec.row.LeaseOwner, rec.row.LeaseUntil = rec.prevStatus, "", time.Time{}
	rec.prevStatus = ""
	rec.etag = m.nextETag()
	return nil
}

// Get implements [Ledger].
func (m *Memory) Get(ctx context.Context, key Key) (Row, bool, error) {
	if err := ctx.Err(); err != nil {
		return Row{}, false, tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.rows[memKey(key)]
	if rec == nil {
		return Row{}, false, nil
	}
	return m.read(rec, m.opts.now()), true, nil
}

// MarkStatus implements [Ledger].
func (m *Memory) MarkStatus(ctx context.Context, ws tokens.WorkspaceID, tokenID string, status Status) (Row, bool, error) {
	if err := validMark(tokenID, status); err != nil {
		return Row{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return Row{}, false, tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.now()
	for _, rec := range m.rows {
		if rec.row.TokenID != tokenID || !rec.row.Workspace.Equal(ws) {
			continue
		}
		// A pending record holds an ended token (a reissue is under way):
		// ended is final, so there is nothing to write, and writing would
		// cost the holder its lease.
		if rec.row.Status != StatusPending {
			cur := effective(rec.row.Status, rec.row.ExpiresAt, now)
			if next := transition(cur, status); next != rec.row.Status {
				rec.row.Status, rec.row.StatusChangedAt = next, now
				rec.etag = m.nextETag()
			}
		}
		return m.read(rec, now), true, nil
	}
	return Row{}, false, nil
}

// Query implements [Ledger].
func (m *Memory) Query(ctx context.Context, f Filter) (Page, error) {
	f, after, err := normalize(f)
	if err != nil {
		return Page{}, err
	}
	if err := ctx.Err(); err != nil {
		return Page{}, tokens.AsError(err)
	}
	m.mu.Lock()
	now := m.opts.now()
	var all []indexed
	for _, rec := range m.rows {
		// A record is listed once it holds a token, also while a reissue
		// lease is pending on it (it shows the old token, as Table's
		// inventory entry does).
		if rec.row.TokenID == "" {
			continue
		}
		r := m.read(rec, now)
		if rec.row.Status == StatusPending {
			r.Status = effective(rec.prevStatus, r.ExpiresAt, now)
			r.LeaseOwner, r.LeaseUntil = "", time.Time{}
		}
		p := positionOf(r)
		if (after != nil && p.compare(*after) <= 0) || !matches(f, r, now) {
			continue
		}
		all = append(all, indexed{p, r})
	}
	m.mu.Unlock()
	// The policy callback runs outside the lock: it is the caller's code.
	all = slices.DeleteFunc(all, func(e indexed) bool { return !workspaceAllowed(f, e.row.Workspace) })
	return pageOf(all, f.Top), nil
}

// Purge implements [Ledger].
func (m *Memory) Purge(ctx context.Context) (PurgeReport, error) {
	if err := ctx.Err(); err != nil {
		return PurgeReport{}, tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.now()
	cutoff := now.Add(-m.opts.retention())
	var rep PurgeReport
	for k, rec := range m.rows {
		switch {
		case rec.row.Status == StatusPending && !rec.row.LeaseUntil.After(now):
			rep.Stranded = append(rep.Stranded, m.read(rec, now))
		case removable(rec.row, rec.row.Status, cutoff):
			delete(m.rows, k)
			rep.Deleted++
		}
	}
	slices.SortFunc(rep.Stranded, func(a, b Row) int { return a.LeaseUntil.Compare(b.LeaseUntil) })
	return rep, nil
}

func validToken(t Token) error {
	if t.TokenID == "" {
		return &tokens.Error{Code: tokens.CodeInternal, Message: "internal error", Err: errorString("ledger: Complete without a token id")}
	}
	if t.CreatedAt.IsZero() {
		return &tokens.Error{Code: tokens.CodeInternal, Message: "internal error", Err: errorString("ledger: Complete without a creation time")}
	}
	return nil
}

func validMark(tokenID string, status Status) error {
	if tokenID == "" {
		return &tokens.Error{Code: tokens.CodeInternal, Message: "internal error", Err: errorString("ledger: MarkStatus without a token id")}
	}
	if _, ok := ParseStatus(string(status)); !ok || status == StatusLive {
		return &tokens.Error{Code: tokens.CodeInternal, Message: "internal error", Err: errorString("ledger: MarkStatus to " + string(status))}
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Bind records owner under key unless it has one, and returns its owner.
// At most MaxMemoryRecords keys are kept, the oldest dropped first: in one
// instance a binding matters only while two creates race into a new
// secret, after which the secret's own versions say whose it is, so
// names a caller makes up cannot grow memory.
func (m *Memory) Bind(ctx context.Context, key, owner string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.binds[key]; ok {
		return cur, nil
	}
	if m.binds == nil {
		m.binds = map[string]string{}
	}
	for len(m.bindOrder) >= MaxMemoryRecords {
		delete(m.binds, m.bindOrder[0])
		m.bindOrder = m.bindOrder[1:]
	}
	m.binds[key] = owner
	m.bindOrder = append(m.bindOrder, key)
	return owner, nil
}

// Due implements [Ledger] for this instance alone.
func (m *Memory) Due(ctx context.Context, job string, every time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, tokens.AsError(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.opts.now()
	if last, ok := m.jobs[job]; ok && now.Sub(last) < every {
		return false, nil
	}
	if m.jobs == nil {
		m.jobs = map[string]time.Time{}
	}
	m.jobs[job] = now
	return true, nil
}
