// Package ledger keeps a record of every token the service issued, one per
// (workspace, request id), shared by all instances of the app: the way
// payment APIs keep idempotency keys. It is what turns "one live token per
// request id" from a promise of one process into one of the whole
// deployment, and it is the inventory behind GET /api/tokens (contract
// section 6). No token value is ever stored: a record holds the token's id,
// its Key Vault secret URI, comment, scopes, caller, times and status.
//
// [Table] keeps it in Azure Table Storage (aztables), in the app's own
// storage account (AzureWebJobsStorage: a connection string locally,
// AzureWebJobsStorage__tableServiceUri with the service's credential in
// Azure), table LEDGER_TABLE. [Memory] is the same ledger for a single
// instance, for a bare `go run .` without storage.
//
// # How the token service uses it
//
// A create (HTTP or queue) with request id R in workspace W:
//
//  1. Acquire(W, R, lease) before anything else; the lease should outlast
//     the invocation's budget (UPSTREAM_RETRY_BUDGET plus a margin). A
//     table that throttles or cannot be reached fails here, as
//     UpstreamUnavailable with Retry-After, before any token exists.
//  2. Recorded: answer 200 with the row (no value). Busy: another instance
//     is creating it; [AcquireWaiting] looks again while the budget lasts
//     (the holder's Complete turns it into Recorded) and past the budget
//     returns the contract's 503, UpstreamUnavailable with Retry-After
//     until the holder's LeaseUntil.
//  3. Leased: if Lease.TakenOver, the previous holder died holding the
//     lease and may have created a token. Its comment carries the marker
//     [dtb:req:R], so list the workspace's tokens by the marker, as the
//     service already does after an ambiguous create: revoke what it left
//     (its value never reached anyone) or, with Key Vault, adopt the one
//     whose version the vault holds. Then create the token, with the
//     marker, and deliver it.
//  4. Complete(lease, token). ErrLeaseLost means the lease ran out while
//     creating and another instance took it: revoke the token just made
//     (it is not recorded, and the new holder will find and revoke it by
//     its marker anyway), then Acquire again to answer with what the new
//     holder records. Either way one live token is left, and the record
//     matches it.
//  5. If nothing was created (a refusal, a failure before the create),
//     Release(lease), so the next attempt need not wait for the lease to
//     run out. If Complete itself fails (the table throttled past the
//     budget) after the token exists, revoke the token and answer 503: the
//     retry takes the lapsed lease over and finds nothing left behind.
//
// Revoke, rotation and expiry call MarkStatus(W, tokenID, status); the
// rotation timer also calls Purge, which deletes records of tokens revoked
// or expired more than LEDGER_RETENTION ago and returns stranded leases
// (holders that died and were never retried), which the service acquires
// (taking them over) and resolves by marker as in step 3.
//
// # Table layout
//
// One table, three kinds of entity:
//
//	PartitionKey                 RowKey                      what
//	<workspace>                  r~<request id>              the record: lock and truth
//	<workspace>                  t~<inverted ms>~<request>   its inventory entry (same fields)
//	~workspaces                  <workspace>                 the registry of workspace partitions
//
// <workspace> is the canonical, lower-cased resource id (ARM ids are
// case-insensitive), <request id> is kept as given (request ids are
// case-sensitive), both escaped: every byte outside A-Z a-z 0-9 - . _ : ( )
// becomes %XX, so no key holds a character Table Storage forbids (/ \ # ?
// and control characters) or a quote, keys are ASCII, and the mapping is
// injective. A value whose escaped form exceeds 400 bytes is replaced by ~
// and its SHA-256 in hex (~ is always escaped, so the two forms never
// meet): every id the contract allows, and every valid workspace id, stays
// readable; odd or oversized input cannot break a key or collide. The
// original strings are stored as properties, never parsed back from keys.
//
// # The lock
//
// A first Acquire is a conditional insert (Insert Entity, which Table
// Storage refuses with 409 EntityAlreadyExists when the row exists: the
// If-None-Match of tables). The record carries the lease (owner, until).
// Everyone else reads it and waits, or, when the lease ran out or the
// token ended, replaces it with an update conditional on the ETag just
// read (412 UpdateConditionNotSatisfied: someone else was quicker; read
// again). Complete is an entity group transaction in the workspace's
// partition: replace the record if its ETag is still the lease's, write
// the inventory entry, delete the entry of the token it replaces. A lost
// lease (412) writes nothing, and the inventory can never disagree with
// the record. Both are expected outcomes, not errors. Leases are judged by
// the instances' clocks: keep them synchronised (Azure's are) to well
// within a lease.
//
// # Newest first, across workspaces
//
// Table Storage sorts by PartitionKey and RowKey only and has no secondary
// indexes. The inventory entry's RowKey starts with the inverted creation
// time, so one partition's range query returns its tokens newest first,
// with the filters evaluated by the service. A page across workspaces is a
// merge: each workspace partition (from the registry, narrowed by
// Filter.Allow) is asked for top+1 entries past the continuation position
// and the newest top make the page. Keeping the entry in the record's
// partition is what lets one transaction keep them in step; a single
// global index partition would need a second, non-atomic write that could
// drift. Reading every row and sorting would make each page cost the whole
// table. The merge costs one small query per workspace per page, which is
// bounded by the number of workspaces, not the rows. The continuation token
// is the position (inverted time, partition, row key) of the page's last
// row, so tokens created later never shift the next page.
package ledger
