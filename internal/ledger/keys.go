package ledger

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Table keys (see the package documentation for the layout).
//
// Azure Table Storage forbids '/', '\', '#', '?' and control characters in
// PartitionKey and RowKey, and limits each to 1 KiB. Keys here are built
// by escapeKey: every byte outside [A-Za-z0-9-._:()] becomes %XX, so a key
// is plain ASCII (its size is its length, whatever the service counts in),
// the mapping is injective (the original is recoverable, two inputs never
// share a key), and a single quote never reaches an OData literal. An
// escaped value longer than maxEscaped is replaced by '~' and the hex
// SHA-256 of the original; '~' is always escaped, so a hashed key can never
// equal an escaped one. Request ids the contract allows (1-128 characters of
// A-Z a-z 0-9 . _ : -) and every valid workspace id are escaped, never
// hashed; the hash only keeps odd input from breaking the table.
const maxEscaped = 400

// Row key prefixes. Record rows and index entries share the workspace's
// partition, so one entity group transaction keeps them in step.
const (
	recordPrefix = "r~"
	indexPrefix  = "t~"
	// registryPartition holds one entity per workspace partition. Escaped
	// workspace keys never contain '~', so it cannot collide with one.
	registryPartition = "~workspaces"
	// jobsPartition holds one entity per periodic job (Due): when it last
	// ran. Its row keys match neither prefix, so no query of records or
	// entries reads them.
	jobsPartition = "~jobs"
	// bindsPartition holds one entity per bound key (Bind): its owner.
	bindsPartition = "~binds"
)

func escapeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == ':' || c == '(' || c == ')' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	if b.Len() > maxEscaped || s == "" {
		sum := sha256.Sum256([]byte(s))
		return "~" + hex.EncodeToString(sum[:])
	}
	return b.String()
}

// partitionKey is the workspace's partition: its canonical lower-cased
// resource id, escaped. ARM ids are case-insensitive, so two spellings of
// one workspace share a partition.
func partitionKey(ws tokens.WorkspaceID) string { return escapeKey(ws.Key()) }

// recordKey is the row key of the (workspace, request id) record. Request
// ids are case-sensitive (the contract never folds them), so they are not
// lower-cased.
func recordKey(requestID string) string { return recordPrefix + escapeKey(requestID) }

// indexKey is the row key of a record's inventory entry: newest first,
// because the inverted creation time sorts first for the latest token, and
// ties within a millisecond in a workspace fall back to the request id.
func indexKey(createdAt time.Time, requestID string) string {
	return indexPrefix + invertedMillis(createdAt) + "~" + escapeKey(requestID)
}

// maxMillis makes invertedMillis a fixed 13 digits until the year 2286.
const maxMillis = 9_999_999_999_999

func invertedMillis(t time.Time) string {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	if ms > maxMillis {
		ms = maxMillis
	}
	return fmt.Sprintf("%013d", maxMillis-ms)
}

// position is where a row sits in the inventory order: newest first, then
// by partition and row key. Both implementations order by it, so a page
// boundary falls in the same place whatever the store.
type position struct {
	Inverted  string `json:"i"`
	Partition string `json:"p"`
	RowKey    string `json:"r"`
}

func positionOf(r Row) position {
	return position{Inverted: invertedMillis(r.CreatedAt), Partition: partitionKey(r.Workspace), RowKey: indexKey(r.CreatedAt, r.RequestID)}
}

func (p position) compare(q position) int {
	if c := strings.Compare(p.Inverted, q.Inverted); c != 0 {
		return c
	}
	if c := strings.Compare(p.Partition, q.Partition); c != 0 {
		return c
	}
	return strings.Compare(p.RowKey, q.RowKey)
}

// Continuation tokens are the position of the last row returned, opaque to
// callers: base64url of a small JSON object. A page after it starts just
// past that position, so rows added meanwhile with newer tokens never shift
// later pages (they appear on a fresh first page).
const maxContinuationLength = 2048

// indexed is an inventory row with its place in the order pages follow.
type indexed struct {
	pos position
	row Row
}

// pageOf is the first top rows of all in inventory order, with the
// continuation token of the last one when more follow: the same cut for
// the table and the memory ledger.
func pageOf(all []indexed, top int) Page {
	slices.SortFunc(all, func(a, b indexed) int { return a.pos.compare(b.pos) })
	var page Page
	for i, e := range all {
		if i == top {
			page.ContinuationToken = encodeContinuation(all[i-1].pos)
			break
		}
		page.Rows = append(page.Rows, e.row)
	}
	return page
}

func encodeContinuation(p position) string {
	b, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinuation(s string) (position, error) {
	bad := tokens.FieldError(tokens.CodeInvalidRequest, "continuationToken", "continuationToken is not one this service returned")
	if len(s) > maxContinuationLength {
		return position{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return position{}, bad
	}
	var p position
	if err := json.Unmarshal(raw, &p); err != nil {
		return position{}, bad
	}
	if len(p.Inverted) != 13 || strings.Trim(p.Inverted, "0123456789") != "" ||
		!validKey(p.Partition) || !strings.HasPrefix(p.RowKey, indexPrefix+p.Inverted+"~") || !validKey(p.RowKey) {
		return position{}, bad
	}
	return p, nil
}

// validKey reports whether s could have been built by this package: ASCII
// without the characters Table Storage forbids or OData must quote.
func validKey(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || strings.IndexByte(`/\#?'`, c) >= 0 {
			return false
		}
	}
	return true
}

// nextInverted is the smallest inverted time after p's: where rows of
// partitions sorting before the cursor's start (their rows of the cursor's
// millisecond come before it).
func nextInverted(inv string) string {
	n, _ := strconv.ParseInt(inv, 10, 64)
	return fmt.Sprintf("%013d", n+1)
}
