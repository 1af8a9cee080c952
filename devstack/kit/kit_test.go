package kit_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// TestFaults: Next takes the oldest fault that fits the operation, Take
// only one queued for exactly it; each fault is served once.
func TestFaults(t *testing.T) {
	t.Parallel()
	var q kit.Faults[int]
	q.Add("set", 1)
	q.Add("", 2)
	q.Add("get", 3)
	q.Add("get", 4)
	steps := []struct {
		take   bool // Take instead of Next
		op     string
		want   int
		wantOK bool
	}{
		{false, "get", 2, true}, // "set" does not fit; "" does
		{true, "set", 1, true},
		{true, "list", 0, false},
		{false, "get", 3, true},
		{false, "list", 0, false},
		{false, "get", 4, true},
		{false, "get", 0, false},
	}
	for i, s := range steps {
		next := q.Next
		if s.take {
			next = q.Take
		}
		if got, ok := next(s.op); got != s.want || ok != s.wantOK {
			t.Errorf("step %d (%q): %d, %v; want %d, %v", i, s.op, got, ok, s.want, s.wantOK)
		}
	}
	q.Add("", 5)
	q.Clear()
	if _, ok := q.Next(""); ok {
		t.Error("Clear left a fault")
	}
}

// TestRecords: counts and logs are copies, so a caller cannot change the
// stand-in's record.
func TestRecords(t *testing.T) {
	t.Parallel()
	var c kit.Counter
	if got := c.Snapshot(); got == nil || len(got) != 0 {
		t.Errorf("fresh counter: %v", got)
	}
	c.Inc("get")
	c.Inc("get")
	snap := c.Snapshot()
	snap["get"] = 99
	if got := c.Snapshot()["get"]; got != 2 {
		t.Errorf("get = %d, want 2", got)
	}
	var l kit.Log[string]
	l.Add("a")
	all := l.All()
	all[0] = "changed"
	l.Add("b")
	if got := strings.Join(l.All(), ","); got != "a,b" {
		t.Errorf("log = %s, want a,b", got)
	}
}

func TestStatusRecorder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		want  int
	}{
		{"nothing written", func(http.ResponseWriter) {}, 0},
		{"body first", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, http.StatusOK},
		{"first status wins", func(w http.ResponseWriter) { w.WriteHeader(429); w.WriteHeader(500) }, 429},
		{"redirect", func(w http.ResponseWriter) { kit.Redirect(w, 307, "https://elsewhere", "moved") }, 307},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		sr := &kit.StatusRecorder{ResponseWriter: rec}
		tt.write(sr)
		if sr.Status != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, sr.Status, tt.want)
		}
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := kit.Clock{Base: func() time.Time { return base }}
	c.Advance(time.Hour)
	c.Advance(-time.Minute)
	if got, want := c.Now(), base.Add(59*time.Minute); !got.Equal(want) {
		t.Errorf("Now = %v, want %v", got, want)
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	guid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if a, b := kit.GUID(), kit.GUID(); !guid.MatchString(a) || a == b {
		t.Errorf("GUIDs %s, %s", a, b)
	}
	if h := kit.Hex(6); !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(h) {
		t.Errorf("Hex(6) = %s", h)
	}
	if n := kit.WorkspaceNumber(); !regexp.MustCompile(`^[1-9][0-9]{15}$`).MatchString(n) {
		t.Errorf("WorkspaceNumber = %s", n)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	tail := &kit.Tail{Max: 4}
	for _, s := range []string{"ab", "cde", "f"} {
		_, _ = tail.Write([]byte(s))
	}
	if got := string(tail.Bytes()); got != "cdef" {
		t.Errorf("tail = %q, want cdef", got)
	}
}

// TestFaultServe: a pure delay lets the request through; a status comes
// with its Retry-After through the stand-in's own error writer; a
// redirect carries the stand-in's body; FailNext queues quick 429s.
func TestFaultServe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		f          kit.Fault
		answered   bool
		wantStatus int
		wantHeader map[string]string
	}{
		{"delay only", kit.Fault{Delay: time.Millisecond}, false, 200, nil},
		{"status", kit.Fault{Status: 503, RetryAfter: "7"}, true, 503, map[string]string{"Retry-After": "7"}},
		{"redirect", kit.Fault{Status: 307, Location: "https://elsewhere/x"}, true, 307, map[string]string{"Location": "https://elsewhere/x"}},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		answered := tt.f.Serve(rec, httptest.NewRequest("GET", "/", nil), nil, "moved", func() { rec.WriteHeader(tt.f.Status) })
		if answered != tt.answered || rec.Code != tt.wantStatus {
			t.Errorf("%s: answered %v with %d; want %v, %d", tt.name, answered, rec.Code, tt.answered, tt.wantStatus)
		}
		for k, v := range tt.wantHeader {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", tt.name, k, got, v)
			}
		}
	}
	var q kit.Faults[kit.Fault]
	kit.FailNext(&q, 2, http.StatusTooManyRequests)
	for range 2 {
		if f, ok := q.Next("get"); !ok || f.Status != 429 || f.RetryAfter != "0" {
			t.Errorf("FailNext queued %+v, %v", f, ok)
		}
	}
	if _, ok := q.Next("get"); ok {
		t.Error("FailNext queued more than asked")
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	var n kit.Names
	n.Set("Secret-A", true)
	if !n.Has("secret-a") || n.Has("secret-b") {
		t.Error("case-insensitive membership is wrong")
	}
	n.Set("SECRET-A", false)
	if n.Has("Secret-A") {
		t.Error("Set false kept the name")
	}
}
