package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/contoso/databricks-token-broker/internal/allowlist"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
)

// Table is the ledger in Azure Table Storage (aztables), shared by every
// instance of the app: conditional inserts and ETag updates on the record
// rows are the cross-instance lock. It is safe for concurrent use.
type Table struct {
	client   *aztables.Client
	name     string
	endpoint string
	opts     Options

	created  atomic.Bool
	createMu sync.Mutex
	known    sync.Map // partition keys already in the registry
}

var _ Ledger = (*Table)(nil)

// TableOptions configure a Table.
type TableOptions struct {
	Options
	// ClientOptions are the SDK's: set Cloud to AZURE_CLOUD's (it picks
	// the storage audience of the identity's tokens); Transport for tests.
	// Retries are set here: those of every Azure call, bounded by the
	// context's UPSTREAM_RETRY_BUDGET.
	ClientOptions policy.ClientOptions
	// AllowInsecureLoopback (ALLOW_INSECURE_LOOPBACK) permits an http://
	// endpoint on a loopback address: Azurite. Nothing else goes over
	// plain http.
	AllowInsecureLoopback bool
}

// NewTable returns the ledger in table name of the table service at
// endpoint (AzureWebJobsStorage__tableServiceUri), authorised with the
// service's one credential. It makes no network call: the table is created
// on first use if it does not exist (the Bicep creates it in Azure).
func NewTable(endpoint, name string, cred azcore.TokenCredential, opts TableOptions) (*Table, error) {
	u, err := checkEndpoint(endpoint, opts.AllowInsecureLoopback)
	if err != nil {
		return nil, err
	}
	co := clientOptions(opts)
	sdkURL := u.String()
	if u.Scheme == "http" {
		// The SDK's bearer-token policy refuses plain http and has no
		// switch for it; it is given https and the transport goes over
		// http to this one loopback host (checkEndpoint allowed nothing
		// else).
		sdkURL = "https://" + u.Host + u.Path
		co.Transport = plainHTTP{host: u.Host, next: transporter(co.Transport)}
	}
	svc, err := aztables.NewServiceClient(sdkURL, cred, &aztables.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return newTable(svc, u.String(), name, opts), nil
}

// NewTableFromConnectionString returns the ledger in table name of the
// account a connection string (AzureWebJobsStorage) names: for local use,
// Azurite included.
func NewTableFromConnectionString(conn ConnectionString, name string, opts TableOptions) (*Table, error) {
	u, err := checkEndpoint(conn.TableEndpoint, opts.AllowInsecureLoopback)
	if err != nil {
		return nil, err
	}
	co := &aztables.ClientOptions{ClientOptions: clientOptions(opts)}
	var svc *aztables.ServiceClient
	if conn.accountKey != "" {
		cred, err := aztables.NewSharedKeyCredential(conn.AccountName, conn.accountKey)
		if err != nil {
			return nil, errors.New("ledger: the connection string's AccountKey is not usable")
		}
		svc, err = aztables.NewServiceClientWithSharedKey(u.String(), cred, co)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
	} else {
		svc, err = aztables.NewServiceClientWithNoCredential(u.String()+"?"+conn.sas, co)
		if err != nil {
			return nil, errors.New("ledger: the connection string's SharedAccessSignature is not usable")
		}
	}
	return newTable(svc, u.String(), name, opts), nil
}

func newTable(svc *aztables.ServiceClient, endpoint, name string, opts TableOptions) *Table {
	return &Table{client: svc.NewClient(name), name: name, endpoint: endpoint, opts: opts.Options}
}

func (t *Table) String() string { return "table " + t.name + " at " + t.endpoint }

func checkEndpoint(raw string, allowInsecureLoopback bool) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return nil, errors.New("ledger: the table endpoint is not an absolute URL without a query")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowInsecureLoopback && allowlist.IsLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("ledger: %s://%s: only https, or http to a loopback address with ALLOW_INSECURE_LOOPBACK=true", u.Scheme, u.Host)
	}
	return u, nil
}

func clientOptions(opts TableOptions) policy.ClientOptions {
	co := opts.ClientOptions
	// Every call is safe to repeat: inserts are conditional (a repeat finds
	// its own row, see Acquire) and updates and deletes carry an ETag.
	co.Retry = retryOptions()
	co.PerCallPolicies = append(slices.Clone(co.PerCallPolicies), upstream.PlainHTTPGuard(opts.AllowInsecureLoopback))
	return co
}

// --- entities

// The record of (workspace, request id) and its inventory entry are two
// entities of the same shape in the workspace's partition. Property names
// are PascalCase as Table Storage tools show them. Times are Edm.DateTime.
type entity struct {
	PartitionKey    string
	RowKey          string
	ETag            string `json:"odata.etag,omitempty"`
	Workspace       string
	RequestID       string `json:"RequestId"`
	Status          Status
	PrevStatus      Status // a pending reissue: the status Release restores
	LeaseOwner      string
	LeaseUntil      string
	TokenID         string `json:"TokenId"`
	SecretURI       string `json:"SecretUri"`
	Comment         string
	Scopes          string // JSON array; empty: unscoped
	RequestedBy     string
	RequestedByKey  string // lower-cased RequestedBy: OData has no case-insensitive compare
	CreatedAt       string
	ExpiresAt       string // never-expiring tokens store the year 9999
	StatusChangedAt string
	IndexKey        string // the record's inventory entry, when it has one
}

const dateLayout = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return msUTC(t).Format(dateLayout)
}

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return msUTC(t)
}

func (e entity) marshal() []byte {
	m := map[string]any{"PartitionKey": e.PartitionKey, "RowKey": e.RowKey}
	str := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	date := func(k, v string) {
		if v != "" {
			m[k] = v
			m[k+"@odata.type"] = "Edm.DateTime"
		}
	}
	str("Workspace", e.Workspace)
	str("RequestId", e.RequestID)
	str("Status", string(e.Status))
	str("PrevStatus", string(e.PrevStatus))
	str("LeaseOwner", e.LeaseOwner)
	date("LeaseUntil", e.LeaseUntil)
	str("TokenId", e.TokenID)
	str("SecretUri", e.SecretURI)
	str("Comment", e.Comment)
	str("Scopes", e.Scopes)
	str("RequestedBy", e.RequestedBy)
	str("RequestedByKey", e.RequestedByKey)
	date("CreatedAt", e.CreatedAt)
	date("ExpiresAt", e.ExpiresAt)
	date("StatusChangedAt", e.StatusChangedAt)
	str("IndexKey", e.IndexKey)
	b, _ := json.Marshal(m) // strings only: cannot fail
	return b
}

func (e *entity) setToken(tok Token) {
	e.TokenID, e.SecretURI, e.Comment, e.RequestedBy = tok.TokenID, tok.SecretURI, tok.Comment, tok.RequestedBy
	e.RequestedByKey = strings.ToLower(tok.RequestedBy)
	e.Scopes = ""
	if tok.Scopes != nil {
		b, _ := json.Marshal(tok.Scopes)
		e.Scopes = string(b)
	}
	e.CreatedAt = formatTime(tok.CreatedAt)
	e.ExpiresAt = formatTime(never)
	if !tok.ExpiresAt.IsZero() {
		e.ExpiresAt = formatTime(tok.ExpiresAt)
	}
}

// row reads an entity; ok is false for one this package did not write.
func (e entity) row(now time.Time) (Row, bool) {
	ws, err := tokens.ParseWorkspaceID(e.Workspace)
	if err != nil || e.RequestID == "" {
		return Row{}, false
	}
	r := Row{Key: Key{Workspace: ws, RequestID: e.RequestID}, Status: e.Status,
		StatusChangedAt: parseTime(e.StatusChangedAt), LeaseOwner: e.LeaseOwner, LeaseUntil: parseTime(e.LeaseUntil)}
	r.TokenID, r.SecretURI, r.Comment, r.RequestedBy = e.TokenID, e.SecretURI, e.Comment, e.RequestedBy
	r.CreatedAt, r.ExpiresAt = parseTime(e.CreatedAt), parseTime(e.ExpiresAt)
	if !r.ExpiresAt.Before(never) {
		r.ExpiresAt = time.Time{}
	}
	if e.Scopes != "" {
		_ = json.Unmarshal([]byte(e.Scopes), &r.Scopes)
	}
	r.Status = effective(r.Status, r.ExpiresAt, now)
	return r, true
}

// index is the inventory entry of a record that holds a token.
func (e entity) index() entity {
	x := e
	x.RowKey, x.ETag, x.IndexKey = e.IndexKey, "", ""
	x.LeaseOwner, x.LeaseUntil = "", ""
	if x.Status == StatusPending {
		x.Status, x.PrevStatus = e.PrevStatus, ""
	}
	return x
}

// --- operations

// Acquire implements [Ledger]. The first caller's conditional insert wins
// (409 EntityAlreadyExists for everyone else); a lapsed lease or an ended
// token is taken by an update conditional on the ETag just read (412
// UpdateConditionNotSatisfied when someone else was quicker, and the loop
// looks again).
func (t *Table) Acquire(ctx context.Context, key Key, terms Terms) (Acquisition, error) {
	pk, rk := partitionKey(key.Workspace), recordKey(key.RequestID)
	if err := t.register(ctx, key.Workspace, pk); err != nil {
		return Acquisition{}, err
	}
	// One owner for every attempt: if a write of ours succeeded but its
	// answer was lost, the retry's 409 or 412 leads back to a record
	// bearing this owner, which is then ours.
	owner := terms.owner()
	var tookOver bool
	var before Row
	for range 8 {
		now := t.opts.now()
		lease := Lease{Key: key, Owner: owner, Until: now.Add(terms.For)}
		fresh := entity{PartitionKey: pk, RowKey: rk, Workspace: key.Workspace.String(), RequestID: key.RequestID,
			Status: StatusPending, LeaseOwner: owner, LeaseUntil: formatTime(lease.Until)}
		var resp aztables.AddEntityResponse
		err := t.withTable(ctx, func() (err error) {
			resp, err = t.client.AddEntity(ctx, fresh.marshal(), nil)
			return err
		})
		if err == nil {
			lease.etag = string(resp.ETag)
			return Acquisition{Outcome: Leased, Lease: lease}, nil
		}
		if !hasCode(err, aztables.EntityAlreadyExists) {
			return Acquisition{}, translate("add the record of a request", err)
		}
		cur, found, err := t.get(ctx, pk, rk)
		if err != nil {
			return Acquisition{}, err
		}
		if !found {
			continue // purged between the two calls: insert again
		}
		row, ok := cur.row(now)
		if !ok {
			return Acquisition{}, corrupt(pk, rk)
		}
		if cur.Status == StatusPending && cur.LeaseOwner == owner {
			lease.Until, lease.etag, lease.TakenOver, lease.prevIndex = parseTime(cur.LeaseUntil), cur.ETag, tookOver, cur.IndexKey
			return Acquisition{Outcome: Leased, Lease: lease, Row: before}, nil
		}
		next := cur
		switch {
		case cur.Status == StatusPending && parseTime(cur.LeaseUntil).After(now) && !terms.resumes(cur.LeaseOwner):
			return Acquisition{Outcome: Busy, Row: row}, nil
		case cur.Status == StatusPending:
			tookOver = true
		case usable(row.Status):
			return Acquisition{Outcome: Recorded, Row: row}, nil
		default: // ended: the request id issues a new token
			next.Status, next.PrevStatus = StatusPending, cur.Status
		}
		before = row
		next.ETag, next.LeaseOwner, next.LeaseUntil = "", owner, formatTime(lease.Until)
		uresp, err := t.client.UpdateEntity(ctx, next.marshal(), &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeReplace, IfMatch: to.Ptr(azcore.ETag(cur.ETag))})
		if hasStatus(err, http.StatusPreconditionFailed) || hasStatus(err, http.StatusNotFound) {
			continue // someone else wrote it first: look again
		}
		if err != nil {
			return Acquisition{}, translate("take over the record of a request", err)
		}
		lease.etag, lease.TakenOver, lease.prevIndex = string(uresp.ETag), tookOver, cur.IndexKey
		return Acquisition{Outcome: Leased, Lease: lease, Row: before}, nil
	}
	return Acquisition{}, unavailable(errors.New("ledger: the record changed on every attempt to acquire it"))
}

// Complete implements [Ledger]: one entity group transaction replaces the
// record (conditional on the lease's ETag), writes its inventory entry and
// deletes the entry of the token it replaces, so the inventory never
// disagrees with the record and a lost lease writes nothing at all.
func (t *Table) Complete(ctx context.Context, lease Lease, tok Token) (Row, error) {
	if err := validToken(tok); err != nil {
		return Row{}, err
	}
	now := t.opts.now()
	pk, rk := partitionKey(lease.Key.Workspace), recordKey(lease.Key.RequestID)
	rec := entity{PartitionKey: pk, RowKey: rk, Workspace: lease.Key.Workspace.String(), RequestID: lease.Key.RequestID,
		Status: StatusLive, StatusChangedAt: formatTime(now), IndexKey: indexKey(tok.CreatedAt, lease.Key.RequestID)}
	rec.setToken(tok)
	want, _ := rec.row(now)
	dropOld := lease.prevIndex != "" && lease.prevIndex != rec.IndexKey
	for range 2 {
		actions := []aztables.TransactionAction{
			{ActionType: aztables.TransactionTypeUpdateReplace, Entity: rec.marshal(), IfMatch: to.Ptr(azcore.ETag(lease.etag))},
			{ActionType: aztables.TransactionTypeInsertReplace, Entity: rec.index().marshal()},
		}
		if dropOld {
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete,
				Entity: entity{PartitionKey: pk, RowKey: lease.prevIndex}.marshal()})
		}
		_, err := t.client.SubmitTransaction(ctx, actions, nil)
		if err == nil {
			return want, nil
		}
		status, failed := batchFailure(err)
		if !failed {
			return Row{}, translate("record a token", err)
		}
		// The transaction was refused as a whole. Whether the lease was
		// lost, or an earlier try of this very call had landed, or the old
		// entry was already gone, the record says.
		cur, found, gerr := t.get(ctx, pk, rk)
		switch {
		case gerr != nil:
			return Row{}, gerr
		case found && cur.Status != StatusPending && cur.TokenID == tok.TokenID:
			row, _ := cur.row(now)
			return row, nil
		case !found || cur.ETag != lease.etag || cur.LeaseOwner != lease.Owner:
			return Row{}, ErrLeaseLost
		case status == http.StatusNotFound && dropOld:
			dropOld = false // the old entry is gone already: nothing to delete
			continue
		}
		return Row{}, translate("record a token", err)
	}
	return Row{}, translate("record a token", errors.New("ledger: the transaction was refused twice"))
}

// Release implements [Ledger].
func (t *Table) Release(ctx context.Context, lease Lease) error {
	pk, rk := partitionKey(lease.Key.Workspace), recordKey(lease.Key.RequestID)
	cur, found, err := t.get(ctx, pk, rk)
	if err != nil {
		return err
	}
	if !found || cur.ETag != lease.etag || cur.Status != StatusPending || cur.LeaseOwner != lease.Owner {
		return ErrLeaseLost
	}
	etag := to.Ptr(azcore.ETag(cur.ETag))
	if cur.TokenID == "" {
		_, err = t.client.DeleteEntity(ctx, pk, rk, &aztables.DeleteEntityOptions{IfMatch: etag})
	} else {
		back := cur
		back.ETag, back.Status, back.PrevStatus, back.LeaseOwner, back.LeaseUntil = "", cur.PrevStatus, "", "", ""
		_, err = t.client.UpdateEntity(ctx, back.marshal(), &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeReplace, IfMatch: etag})
	}
	if hasStatus(err, http.StatusPreconditionFailed) || hasStatus(err, http.StatusNotFound) {
		return ErrLeaseLost
	}
	if err != nil {
		return translate("release a lease", err)
	}
	return nil
}

// Get implements [Ledger].
func (t *Table) Get(ctx context.Context, key Key) (Row, bool, error) {
	pk, rk := partitionKey(key.Workspace), recordKey(key.RequestID)
	cur, found, err := t.get(ctx, pk, rk)
	if err != nil || !found {
		return Row{}, false, err
	}
	row, ok := cur.row(t.opts.now())
	if !ok {
		return Row{}, false, corrupt(pk, rk)
	}
	return row, true, nil
}

// MarkStatus implements [Ledger]. Token ids are unique in a workspace, so
// the record is found by a query within the workspace's partition.
func (t *Table) MarkStatus(ctx context.Context, ws tokens.WorkspaceID, tokenID string, status Status) (Row, bool, error) {
	if err := validMark(tokenID, status); err != nil {
		return Row{}, false, err
	}
	pk := partitionKey(ws)
	filter := "PartitionKey eq " + quote(pk) + " and RowKey ge " + quote(recordPrefix) + " and RowKey lt " + quote(recordPrefix+"~") +
		" and TokenId eq " + quote(tokenID)
	for range 8 {
		found, err := t.list(ctx, filter, 1, 1)
		if err != nil {
			return Row{}, false, err
		}
		if len(found) == 0 {
			return Row{}, false, nil
		}
		cur := found[0]
		now := t.opts.now()
		row, ok := cur.row(now)
		if !ok {
			return Row{}, false, corrupt(cur.PartitionKey, cur.RowKey)
		}
		// A pending record holds an ended token (a reissue is under way):
		// ended is final, so there is nothing to write, and writing would
		// cost the holder its lease.
		if cur.Status == StatusPending {
			return row, true, nil
		}
		next := transition(row.Status, status)
		if next == cur.Status {
			return row, true, nil
		}
		upd := cur
		upd.ETag, upd.Status, upd.StatusChangedAt = "", next, formatTime(now)
		actions := []aztables.TransactionAction{{ActionType: aztables.TransactionTypeUpdateReplace, Entity: upd.marshal(), IfMatch: to.Ptr(azcore.ETag(cur.ETag))}}
		if upd.IndexKey != "" {
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeInsertReplace, Entity: upd.index().marshal()})
		}
		_, err = t.client.SubmitTransaction(ctx, actions, nil)
		if err == nil {
			row, _ = upd.row(now)
			return row, true, nil
		}
		if st, failed := batchFailure(err); !failed || (st != http.StatusPreconditionFailed && st != http.StatusNotFound) {
			return Row{}, false, translate("record a token's status", err)
		}
		// Changed since it was read: read it again.
	}
	return Row{}, false, unavailable(errors.New("ledger: the record changed on every attempt to mark it"))
}

// Query implements [Ledger].
//
// Table Storage sorts only by PartitionKey and RowKey and has no secondary
// index, so each workspace partition keeps an inventory entry per record,
// keyed by inverted creation time: a range query over one partition
// returns its tokens newest first, filtered on the server. Across
// workspaces, the page is a merge: each allowed partition (from the
// registry) is asked for at most top+1 entries past the continuation
// position, and the newest top of them make the page. That costs one query
// per workspace per page, bounded by the workspaces rather than the rows:
// the rows are never all read to sort them, and the order is exact.
func (t *Table) Query(ctx context.Context, f Filter) (Page, error) {
	f, after, err := normalize(f)
	if err != nil {
		return Page{}, err
	}
	var workspaces []tokens.WorkspaceID
	if f.Workspace.Name != "" {
		workspaces = []tokens.WorkspaceID{f.Workspace}
	} else if workspaces, err = t.workspaces(ctx); err != nil {
		return Page{}, err
	}
	workspaces = slices.DeleteFunc(workspaces, func(ws tokens.WorkspaceID) bool { return !workspaceAllowed(f, ws) })
	now := t.opts.now()
	selection := selectionFilter(f, now)

	type result struct {
		entities []entity
		err      error
	}
	results := make([]result, len(workspaces))
	sem := make(chan struct{}, 4) // a few partitions at a time: one instance, one storage account
	var wg sync.WaitGroup
	for i, ws := range workspaces {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pk := partitionKey(ws)
			filter := "PartitionKey eq " + quote(pk) + " and " + rowKeyRange(pk, after)
			if selection != "" {
				filter += " and (" + selection + ")"
			}
			results[i].entities, results[i].err = t.list(ctx, filter, f.Top+1, f.Top+1)
		})
	}
	wg.Wait()
	var all []indexed
	for _, r := range results {
		if r.err != nil {
			return Page{}, r.err
		}
		for _, e := range r.entities {
			row, ok := e.row(now)
			if !ok || !strings.HasPrefix(e.RowKey, indexPrefix) || len(e.RowKey) < len(indexPrefix)+13 {
				continue // not an entry this package wrote
			}
			all = append(all, indexed{position{Inverted: e.RowKey[len(indexPrefix) : len(indexPrefix)+13], Partition: e.PartitionKey, RowKey: e.RowKey}, row})
		}
	}
	return pageOf(all, f.Top), nil
}

// rowKeyRange selects a partition's inventory entries after a position.
// Rows are ordered by (inverted time, partition, row key): in the cursor's
// own partition everything after its row key follows; in partitions that
// sort after it, rows of the cursor's millisecond follow too; in those
// before it, only later milliseconds do.
func rowKeyRange(pk string, after *position) string {
	upper := " and RowKey lt " + quote(indexPrefix+"~")
	switch {
	case after == nil:
		return "RowKey ge " + quote(indexPrefix) + upper
	case pk == after.Partition:
		return "RowKey gt " + quote(after.RowKey) + upper
	case pk > after.Partition:
		return "RowKey ge " + quote(indexPrefix+after.Inverted+"~") + upper
	default:
		return "RowKey ge " + quote(indexPrefix+nextInverted(after.Inverted)) + upper
	}
}

// selectionFilter is matches() in OData, evaluated by the service.
func selectionFilter(f Filter, now time.Time) string {
	n := "datetime'" + formatTime(now) + "'"
	var and []string
	if len(f.Statuses) > 0 {
		var or []string
		for _, s := range f.Statuses {
			switch s {
			case StatusLive, StatusRotated:
				or = append(or, "(Status eq "+quote(string(s))+" and ExpiresAt gt "+n+")")
			case StatusRevoked:
				or = append(or, "Status eq 'revoked'")
			case StatusExpired:
				or = append(or, "Status eq 'expired'", "((Status eq 'live' or Status eq 'rotated') and ExpiresAt le "+n+")")
			}
		}
		and = append(and, "("+strings.Join(or, " or ")+")")
	}
	if f.ExpiringWithin > 0 {
		and = append(and, "(Status eq 'live' or Status eq 'rotated') and ExpiresAt gt "+n+
			" and ExpiresAt le datetime'"+formatTime(now.Add(f.ExpiringWithin))+"'")
	}
	if f.RequestedBy != "" {
		and = append(and, "RequestedByKey eq "+quote(strings.ToLower(f.RequestedBy)))
	}
	return strings.Join(and, " and ")
}

// Purge implements [Ledger]. It reads the whole table's records (one
// filtered scan: it runs from the rotation timer, not on a request) and
// deletes each ended record together with its inventory entry.
func (t *Table) Purge(ctx context.Context) (PurgeReport, error) {
	now := t.opts.now()
	cutoff := now.Add(-t.opts.retention())
	c := "datetime'" + formatTime(cutoff) + "'"
	filter := "RowKey ge " + quote(recordPrefix) + " and RowKey lt " + quote(recordPrefix+"~") +
		" and ((Status ne 'pending' and ExpiresAt lt " + c + ")" +
		" or ((Status eq 'revoked' or Status eq 'expired') and StatusChangedAt lt " + c + ")" +
		" or (Status eq 'pending' and LeaseUntil le datetime'" + formatTime(now) + "'))"
	found, err := t.list(ctx, filter, 1000, 0)
	if err != nil {
		return PurgeReport{}, err
	}
	var rep PurgeReport
	for _, e := range found {
		row, ok := e.row(now)
		if !ok {
			continue
		}
		if e.Status == StatusPending {
			rep.Stranded = append(rep.Stranded, row)
			continue
		}
		stored := row
		stored.Status = e.Status
		if !removable(stored, e.Status, cutoff) {
			continue
		}
		deleted, err := t.deleteRecord(ctx, e)
		if err != nil {
			return rep, err
		}
		if deleted {
			rep.Deleted++
		}
	}
	slices.SortFunc(rep.Stranded, func(a, b Row) int { return a.LeaseUntil.Compare(b.LeaseUntil) })
	return rep, nil
}

// deleteRecord deletes a record, if unchanged since read, with its entry.
func (t *Table) deleteRecord(ctx context.Context, e entity) (bool, error) {
	withIndex := e.IndexKey != ""
	for range 2 {
		actions := []aztables.TransactionAction{{ActionType: aztables.TransactionTypeDelete,
			Entity: entity{PartitionKey: e.PartitionKey, RowKey: e.RowKey}.marshal(), IfMatch: to.Ptr(azcore.ETag(e.ETag))}}
		if withIndex {
			actions = append(actions, aztables.TransactionAction{ActionType: aztables.TransactionTypeDelete,
				Entity: entity{PartitionKey: e.PartitionKey, RowKey: e.IndexKey}.marshal()})
		}
		_, err := t.client.SubmitTransaction(ctx, actions, nil)
		if err == nil {
			return true, nil
		}
		status, failed := batchFailure(err)
		if !failed {
			return false, translate("delete an ended record", err)
		}
		cur, found, gerr := t.get(ctx, e.PartitionKey, e.RowKey)
		switch {
		case gerr != nil:
			return false, gerr
		case !found || cur.ETag != e.ETag:
			return false, nil // changed (reissued) or deleted meanwhile: leave it
		case status == http.StatusNotFound && withIndex:
			withIndex = false // no entry to delete with it
			continue
		}
		return false, translate("delete an ended record", err)
	}
	return false, nil
}

// --- periodic jobs

// Due implements [Ledger]: the job's entity records its last run, and the
// first write of a period wins (a conditional insert, or an update
// conditional on the ETag read); everyone else reads the new time.
func (t *Table) Due(ctx context.Context, job string, every time.Duration) (bool, error) {
	rk := escapeKey(job)
	now := t.opts.now()
	b, _ := json.Marshal(map[string]any{"PartitionKey": jobsPartition, "RowKey": rk, "LastRun": formatTime(now)})
	var cur jobEntity
	etag, found, err := t.getInto(ctx, jobsPartition, rk, &cur, "read a periodic job")
	if err != nil {
		return false, err
	}
	if !found {
		err := t.withTable(ctx, func() error {
			_, err := t.client.AddEntity(ctx, b, nil)
			return err
		})
		if hasCode(err, aztables.EntityAlreadyExists) {
			return false, nil
		}
		if err != nil {
			return false, translate("record a periodic job", err)
		}
		return true, nil
	}
	if last := parseTime(cur.LastRun); !last.IsZero() && now.Sub(last) < every {
		return false, nil
	}
	_, err = t.client.UpdateEntity(ctx, b, &aztables.UpdateEntityOptions{UpdateMode: aztables.UpdateModeReplace, IfMatch: to.Ptr(azcore.ETag(etag))})
	if hasStatus(err, http.StatusPreconditionFailed) || hasStatus(err, http.StatusNotFound) {
		return false, nil // another instance took this period
	}
	if err != nil {
		return false, translate("record a periodic job", err)
	}
	return true, nil
}

// Bind records owner under key with a conditional insert; when the key
// exists (409) it reads the owner recorded there.
func (t *Table) Bind(ctx context.Context, key, owner string) (string, error) {
	rk := escapeKey(key)
	b, _ := json.Marshal(map[string]any{"PartitionKey": bindsPartition, "RowKey": rk, "Owner": owner})
	err := t.withTable(ctx, func() error {
		_, err := t.client.AddEntity(ctx, b, nil)
		return err
	})
	if err == nil {
		return owner, nil
	}
	if !hasCode(err, aztables.EntityAlreadyExists) {
		return "", translate("bind a key", err)
	}
	var cur struct {
		Owner string `json:"Owner"`
	}
	if _, found, err := t.getInto(ctx, bindsPartition, rk, &cur, "read a bound key"); err != nil || !found {
		if err == nil {
			err = translate("read a bound key", errors.New("the bound key is gone"))
		}
		return "", err
	}
	return cur.Owner, nil
}

type jobEntity struct {
	LastRun string `json:"LastRun"`
}

// --- the registry of workspace partitions

// register makes sure the workspace's partition is in the registry before
// its first record is written, so a query across workspaces finds it.
// Entries are never removed: a stale one costs an empty query, a missing
// one would hide rows.
func (t *Table) register(ctx context.Context, ws tokens.WorkspaceID, pk string) error {
	if _, ok := t.known.Load(pk); ok {
		return nil
	}
	e := map[string]any{"PartitionKey": registryPartition, "RowKey": pk, "Workspace": ws.String()}
	b, _ := json.Marshal(e)
	err := t.withTable(ctx, func() error {
		_, err := t.client.AddEntity(ctx, b, nil)
		return err
	})
	if err != nil && !hasCode(err, aztables.EntityAlreadyExists) {
		return translate("register a workspace", err)
	}
	t.known.Store(pk, struct{}{})
	return nil
}

func (t *Table) workspaces(ctx context.Context) ([]tokens.WorkspaceID, error) {
	found, err := t.list(ctx, "PartitionKey eq "+quote(registryPartition), 1000, 0)
	if err != nil {
		return nil, err
	}
	out := make([]tokens.WorkspaceID, 0, len(found))
	for _, e := range found {
		if ws, err := tokens.ParseWorkspaceID(e.Workspace); err == nil {
			out = append(out, ws)
		}
	}
	return out, nil
}

// --- plumbing

func (t *Table) get(ctx context.Context, pk, rk string) (entity, bool, error) {
	var e entity
	etag, found, err := t.getInto(ctx, pk, rk, &e, "read a record")
	e.ETag = etag
	return e, found, err
}

// getInto reads one entity into v and returns its ETag; found is false
// when there is none. what names the read in an error.
func (t *Table) getInto(ctx context.Context, pk, rk string, v any, what string) (etag string, found bool, err error) {
	var resp aztables.GetEntityResponse
	err = t.withTable(ctx, func() (err error) {
		resp, err = t.client.GetEntity(ctx, pk, rk, nil)
		return err
	})
	if hasStatus(err, http.StatusNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, translate(what, err)
	}
	if err := json.Unmarshal(resp.Value, v); err != nil {
		return "", false, corrupt(pk, rk)
	}
	return string(resp.ETag), true, nil
}

// list runs a query and returns up to limit entities (0: all), asking the
// service for pageSize at a time. A filtered query may come back with
// fewer entities than asked and a continuation (the service stops after
// five seconds or a partition boundary), so pages are followed.
func (t *Table) list(ctx context.Context, filter string, pageSize, limit int) ([]entity, error) {
	var out []entity
	err := t.withTable(ctx, func() error {
		out = out[:0]
		top := int32(pageSize)
		pager := t.client.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Top: &top})
		for pager.More() && (limit == 0 || len(out) < limit) {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, raw := range page.Entities {
				var e entity
				if err := json.Unmarshal(raw, &e); err != nil {
					continue
				}
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, translate("query the ledger", err)
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// withTable runs op, creating the table first if the service says it does
// not exist. Locally (Azurite) that is how the table comes to be; in Azure
// the Bicep has created it, and the identity's role may not even allow
// creating tables.
func (t *Table) withTable(ctx context.Context, op func() error) error {
	err := op()
	if !hasCode(err, aztables.TableNotFound) {
		return err
	}
	if err := t.ensureTable(ctx); err != nil {
		return err
	}
	return op()
}

// ensureTable creates the table once per Table; concurrent first calls
// that all met TableNotFound wait for the one creation, then try again.
func (t *Table) ensureTable(ctx context.Context) error {
	t.createMu.Lock()
	defer t.createMu.Unlock()
	if t.created.Load() {
		return nil
	}
	_, err := t.client.CreateTable(ctx, nil)
	if err != nil && !hasCode(err, aztables.TableAlreadyExists) {
		return err
	}
	t.created.Store(true)
	return nil
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func corrupt(pk, rk string) error {
	return &tokens.Error{Code: tokens.CodeInternal, Message: "internal error",
		Err: fmt.Errorf("ledger: entity %s/%s was not written by this service", pk, rk)}
}
