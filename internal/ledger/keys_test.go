package ledger

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// unescape inverts escapeKey for keys that were not hashed.
func unescape(k string) (string, bool) {
	if strings.HasPrefix(k, "~") {
		return "", false
	}
	s, err := url.PathUnescape(k)
	return s, err == nil
}

func checkKey(t *testing.T, s string) {
	t.Helper()
	k := escapeKey(s)
	if !validKey(k) || len(k) > maxEscaped+1 {
		t.Fatalf("escapeKey(%q) = %q: not a valid table key", s, k)
	}
	if strings.ContainsAny(k, "/\\#?'") {
		t.Fatalf("escapeKey(%q) = %q holds a forbidden character", s, k)
	}
	if back, ok := unescape(k); ok && back != s {
		t.Fatalf("escapeKey(%q) = %q, which reads back as %q", s, k, back)
	}
	if _, ok := unescape(k); !ok && len(k) != 65 {
		t.Fatalf("escapeKey(%q) = %q: a hashed key is ~ and 64 hex digits", s, k)
	}
}

func TestEscapeKey(t *testing.T) {
	long := strings.Repeat("A", 128)
	tests := map[string]string{
		"req-1":          "req-1",
		"a.b_c:d-e":      "a.b_c:d-e",
		long:             long, // the longest request id the contract allows stays readable
		"a/b":            "a%2Fb",
		"a%2Fb":          "a%252Fb",
		"it's":           "it%27s",
		"~":              "%7E",
		"tab\t":          "tab%09",
		"ü":              "%C3%BC",
		"/subscriptions": "%2Fsubscriptions",
	}
	for in, want := range tests {
		if got := escapeKey(in); got != want {
			t.Errorf("escapeKey(%q) = %q, want %q", in, got, want)
		}
		checkKey(t, in)
	}
	huge := strings.Repeat("/", 2000)
	if k := escapeKey(huge); !strings.HasPrefix(k, "~") || k == escapeKey(huge+"/") {
		t.Errorf("oversized input: %q (and a longer one hashes the same)", k)
	}
	// The longest workspace id is escaped, not hashed: partitions stay
	// readable in Storage Explorer.
	ws, err := tokens.ParseWorkspaceID("/subscriptions/6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f/resourceGroups/" +
		strings.Repeat("g", 90) + "/providers/Microsoft.Databricks/workspaces/" + strings.Repeat("w", 64))
	if err != nil {
		t.Fatal(err)
	}
	if pk := partitionKey(ws); strings.HasPrefix(pk, "~") {
		t.Errorf("the longest workspace id was hashed: %s", pk)
	}
	if rk := indexKey(time.Now(), long); !validKey(rk) || len(rk) > 1024 {
		t.Errorf("index key %q", rk)
	}
}

func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"", "req", "a/b\\c#d?e", "\x00\x1f\x7f", "ünï", strings.Repeat("%", 300), "~abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkKey(t, s)
		if s != "" && escapeKey(s) == escapeKey(s+"x") {
			t.Fatalf("%q and %q share a key", s, s+"x")
		}
	})
}

func TestContinuationRoundTrip(t *testing.T) {
	ws, _ := tokens.ParseWorkspaceID("/subscriptions/6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/dbw")
	p := positionOf(Row{Key: Key{Workspace: ws, RequestID: "it's/odd"}, Token: Token{CreatedAt: time.Now()}})
	got, err := decodeContinuation(encodeContinuation(p))
	if err != nil || got != p {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, p)
	}
	// A forged position could inject OData; it is refused.
	for _, forged := range []position{
		{Inverted: p.Inverted, Partition: "x' or 'a' eq 'a", RowKey: p.RowKey},
		{Inverted: p.Inverted, Partition: p.Partition, RowKey: "r~x"},
		{Inverted: "12345", Partition: p.Partition, RowKey: p.RowKey},
	} {
		if _, err := decodeContinuation(encodeContinuation(forged)); tokens.CodeOf(err) != tokens.CodeInvalidRequest {
			t.Errorf("forged %+v: %v", forged, err)
		}
	}
}
