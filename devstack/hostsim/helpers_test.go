package hostsim_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/kit"
)

var (
	fakeOnce sync.Once
	fakeDir  string
	fakePath string
	fakeErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if fakeDir != "" {
		_ = os.RemoveAll(fakeDir)
	}
	os.Exit(code)
}

// fakeHandler builds testdata/fakehandler once per test binary.
func fakeHandler(t testing.TB) string {
	t.Helper()
	fakeOnce.Do(func() {
		fakeDir, fakeErr = os.MkdirTemp("", "hostsim-fake-")
		if fakeErr != nil {
			return
		}
		fakePath = filepath.Join(fakeDir, "handler")
		cmd := exec.Command("go", "build", "-o", fakePath, "./testdata/fakehandler")
		out, err := cmd.CombinedOutput()
		if err != nil {
			fakeErr = err
			fakeErr = &buildError{err: err, out: string(out)}
		}
	})
	if fakeErr != nil {
		t.Fatalf("build fake handler: %v", fakeErr)
	}
	return fakePath
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

const forwardingHostJSON = `{
  "version": "2.0",
  "customHandler": {
    "description": { "defaultExecutablePath": "handler", "workingDirectory": "", "arguments": [] },
    "enableForwardingHttpRequest": true
  },
  "extensions": { "http": { "routePrefix": "api" } }
}`

// standardFunctions is a function app with every kind the simulator knows.
var standardFunctions = map[string]string{
	"echo": `{"bindings":[
	  {"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get","post"],"route":"echo/{id?}"},
	  {"type":"http","direction":"out","name":"res"}]}`,
	"anon": `{"bindings":[
	  {"type":"httpTrigger","direction":"in","name":"req","authLevel":"anonymous"},
	  {"type":"http","direction":"out","name":"res"}]}`,
	"orders": `{"bindings":[
	  {"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["get"],"route":"orders/{id:int}"},
	  {"type":"http","direction":"out","name":"res"}]}`,
	"enqueue": `{"bindings":[
	  {"type":"httpTrigger","direction":"in","name":"req","authLevel":"function","methods":["post"]},
	  {"type":"http","direction":"out","name":"res"},
	  {"type":"serviceBus","direction":"out","name":"outMsg","queueName":"orders-out","connection":"ServiceBusConnection"}]}`,
	"rotate": `{"bindings":[
	  {"type":"timerTrigger","direction":"in","name":"myTimer","schedule":"0 */5 * * * *"}]}`,
	"cleanup": `{"bindings":[
	  {"type":"timerTrigger","direction":"in","name":"cleanupTimer","schedule":"0 0 3 * * *","useMonitor":false}]}`,
}

// writeApp writes host.json and <name>/function.json files into a new
// directory and returns it.
func writeApp(t testing.TB, hostJSON string, functions map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "host.json"), []byte(hostJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, fj := range functions {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "function.json"), []byte(fj), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testLogf logs through t until the test ends.
func testLogf(t testing.TB) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
	})
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
}

type testHost struct {
	*hostsim.Host
	stdout, stderr *kit.Buffer
}

// startHost starts a host with the fake handler; opts.AppRoot defaults to a
// forwarding app with standardFunctions.
func startHost(t testing.TB, opts hostsim.Options) *testHost {
	t.Helper()
	if opts.AppRoot == "" {
		opts.AppRoot = writeApp(t, forwardingHostJSON, standardFunctions)
	}
	if opts.Executable == "" {
		opts.Executable = fakeHandler(t)
	}
	th := &testHost{stdout: &kit.Buffer{}, stderr: &kit.Buffer{}}
	if opts.Stdout == nil {
		opts.Stdout = th.stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = th.stderr
	}
	if opts.Logf == nil {
		opts.Logf = testLogf(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	h, err := hostsim.Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	th.Host = h
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return th
}

// noRedirect is a client that returns redirects as they are.
var noRedirect = &http.Client{
	Timeout:       60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, method, url string, body string, header http.Header) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// httpEcho is what the fake handler answers to a forwarded request.
// postChunked POSTs body without a Content-Length (the reader hides its
// length, so the client sends it chunked) and returns what the echo
// function saw.
func postChunked(t testing.TB, url, body string) httpEcho {
	t.Helper()
	req, _ := http.NewRequest("POST", url, struct{ *strings.Reader }{strings.NewReader(body)})
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e httpEcho
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return e
}

type httpEcho struct {
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	RawPath       string              `json:"rawPath"`
	RawQuery      string              `json:"rawQuery"`
	Host          string              `json:"host"`
	Headers       map[string][]string `json:"headers"`
	Body          string              `json:"body"`
	ContentLength int64               `json:"contentLength"`
	Env           map[string]string   `json:"env"`
	Args          []string            `json:"args"`
	Cwd           string              `json:"cwd"`
	Inflight      int                 `json:"inflight"`
}

func decodeEcho(t testing.TB, r response) httpEcho {
	t.Helper()
	var e httpEcho
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("decode echo (status %d): %v\n%s", r.status, err, r.body)
	}
	return e
}

// envelopeEcho is the fake handler's reply to an envelope POST.
type envelopeEcho struct {
	Logs []string
	Echo struct {
		Path     string              `json:"path"`
		Method   string              `json:"method"`
		Headers  map[string][]string `json:"headers"`
		Envelope json.RawMessage     `json:"envelope"`
		Body     string              `json:"body"`
		Inflight int                 `json:"inflight"`
	}
}

func decodeEnvelopeEcho(t testing.TB, body []byte) envelopeEcho {
	t.Helper()
	var e envelopeEcho
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode envelope echo: %v\n%s", err, body)
	}
	return e
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// invocationsOf returns the recorded invocations of function.
func invocationsOf(h *hostsim.Host, function string) []hostsim.Invocation {
	var out []hostsim.Invocation
	for _, inv := range h.Invocations() {
		if inv.Function == function {
			out = append(out, inv)
		}
	}
	return out
}

// summary describes invocations compactly for failure messages.
func summary(invs ...hostsim.Invocation) string {
	var b strings.Builder
	for _, inv := range invs {
		fmt.Fprintf(&b, "\n  %s %s msg=%q delivery=%d status=%d settlement=%q err=%v",
			inv.Function, inv.ID, inv.MessageID, inv.DeliveryCount, inv.StatusCode, inv.Settlement, inv.Err)
	}
	return b.String()
}
