package kit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
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

// startSh starts script under sh as kit.StartNode starts a Node.js
// stand-in: sh stands in for node, so that these tests need no Node.js.
func startSh(t *testing.T, script string, o kit.NodeOptions) (*kit.NodeProcess, error) {
	t.Helper()
	sh := shell(t)
	o.Name, o.Node, o.Args, o.OutputName = "kit: child", sh, []string{"-c", script}, "child output"
	if o.Ready == nil {
		o.Ready = func(line string) (bool, error) { return line == "ready", nil }
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	return kit.StartNode(t.Context(), o)
}

// TestNodeProcess: the ready line ends the start; lines before it are
// echoed to Log with stderr; Close closes stdin, which the child heeds.
func TestNodeProcess(t *testing.T) {
	t.Parallel()
	var log kit.Buffer
	var seen []string
	p, err := startSh(t, `echo one; echo warn >&2; sleep 0.1; printf 'ready\r\n'; cat >/dev/null`, kit.NodeOptions{
		Log:        &log,
		EchoStdout: true,
		Ready: func(line string) (bool, error) {
			seen = append(seen, line)
			return line == "ready", nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "one,ready" {
		t.Errorf("Ready saw %q, want one,ready", got)
	}
	if p.PID() <= 0 {
		t.Errorf("PID = %d", p.PID())
	}
	kittest.WantClosed(t, p)
	for _, want := range []string{"one\n", "warn\n", "ready\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q lacks %q", log.String(), want)
		}
	}
}

// TestNodeProcessStartErrors: every way a start fails stops the child and
// quotes what it wrote last.
func TestNodeProcessStartErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script string
		o            kit.NodeOptions
		want         []string
	}{
		{"exits", `echo "cannot bind" >&2; exit 3`, kit.NodeOptions{},
			[]string{"kit: child exited before listening (exit status 3)", "; child output:\ncannot bind"}},
		{"bad ready line", `echo "{}"; cat >/dev/null`, kit.NodeOptions{Ready: func(line string) (bool, error) {
			return false, fmt.Errorf("kit: unexpected first line %q", line)
		}}, []string{`kit: unexpected first line "{}"`}},
		{"timeout", `cat >/dev/null`, kit.NodeOptions{Timeout: 50 * time.Millisecond},
			[]string{"kit: child did not listen within 50ms"}},
		{"nothing listens", `echo ready; cat >/dev/null`, kit.NodeOptions{Timeout: 300 * time.Millisecond, Dial: "127.0.0.1:1"},
			[]string{"kit: child did not listen within 300ms"}},
	}
	for _, tt := range tests {
		_, err := startSh(t, tt.script, tt.o)
		var se *kit.StartError
		if !errors.As(err, &se) {
			t.Errorf("%s: %v, want a *kit.StartError", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tt.name, err, w)
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	sh := shell(t)
	_, err := kit.StartNode(ctx, kit.NodeOptions{Name: "kit: child", Node: sh, Args: []string{"-c", "cat"}, Ready: func(string) (bool, error) { return true, nil }})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "kit: child did not listen: context canceled") {
		t.Errorf("cancelled start: %v", err)
	}
}

// TestNodeProcessCloseReports: Close says so when the child had died
// before it, and when the child had to be killed.
func TestNodeProcessCloseReports(t *testing.T) {
	t.Parallel()
	// exec: a cat left behind would hold stderr open, and Wait with it.
	p, err := startSh(t, `echo ready; exec cat >/dev/null`, kit.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "kit: child had exited before Close (signal: killed)") {
		t.Errorf("Close after the child died: %v", err)
	}

	// Deaf to stdin and to SIGTERM: killed after 2 s + 3 s.
	p, err = startSh(t, `trap '' TERM; echo ready; exec sleep 60`, kit.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err == nil || err.Error() != "kit: child did not stop on SIGTERM and was killed" {
		t.Errorf("Close of a child that ignores SIGTERM: %v", err)
	}
}

// TestNodeProject: a folder without the script, or with the script but
// without the npm package, is refused with the stand-in's own errors; a
// folder with both is where the project starts.
func TestNodeProject(t *testing.T) {
	t.Parallel()
	errNoNode, errNoPackages := errors.New("no node"), errors.New("not installed")
	dir := t.TempDir()
	p := kit.NodeProject{
		Env: "KIT_TEST_PROJECT_DIR", DefaultDir: func() string { return dir }, Script: "start.js", Package: "pkg",
		NoNode: errNoNode, NoPackages: errNoPackages,
	}
	if err := p.Installed(""); err == nil || errors.Is(err, errNoPackages) || !strings.Contains(err.Error(), "KIT_TEST_PROJECT_DIR") {
		t.Errorf("without the script: %v, want a missing start.js naming the variable", err)
	}
	write(t, filepath.Join(dir, "start.js"))
	if err := p.Installed(""); !errors.Is(err, errNoPackages) {
		t.Errorf("without the package: %v, want %v", err, errNoPackages)
	}
	write(t, filepath.Join(dir, "node_modules", "pkg", "package.json"))
	if err := p.Installed(""); err != nil {
		t.Errorf("installed: %v", err)
	}
	if _, _, err := p.Locate(filepath.Join(dir, "no-such-node"), ""); !errors.Is(err, errNoNode) {
		t.Errorf("no node: %v, want %v", err, errNoNode)
	}
	if _, got, err := p.Locate(shell(t), ""); err != nil || got != dir {
		t.Errorf("Locate = %q, %v; want the default folder %q", got, err, dir)
	}
}

func write(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// shell is sh, which these tests run in node's place.
func shell(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("these tests run their child processes under sh, which is not on PATH: %v", err)
	}
	return sh
}
