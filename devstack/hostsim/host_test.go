package hostsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/kit"
)

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// The child gets the §1.3 environment, the expanded host.json arguments, the
// working directory, and defaultExecutablePath is resolved against it; its
// stdout and stderr reach Options.Stdout/Stderr.
func TestStartEnvironmentArgumentsAndExecutable(t *testing.T) {
	t.Parallel()
	hostJSON := `{"version":"2.0","customHandler":{"description":{
	  "defaultExecutablePath":"handler","workingDirectory":"bin",
	  "arguments":["--mode","%APP_MODE%","%APP_MISSING_SETTING%"]},
	  "enableForwardingHttpRequest":true}}`
	app := writeApp(t, hostJSON, standardFunctions)
	if err := os.Mkdir(filepath.Join(app, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fakeHandler(t), filepath.Join(app, "bin", "handler")); err != nil {
		t.Fatal(err)
	}
	stdout, stderr := &kit.Buffer{}, &kit.Buffer{}
	h, err := hostsim.Start(context.Background(), hostsim.Options{
		AppRoot: app, // no Executable: host.json's defaultExecutablePath is used
		Env:     []string{"APP_MODE=test", "APP_SETTING=visible"},
		Stdout:  stdout, Stderr: stderr, Logf: testLogf(t),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })

	e := decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", nil))
	port := e.Env["FUNCTIONS_CUSTOMHANDLER_PORT"]
	id := e.Env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]
	if port == "" || e.Env["FUNCTIONS_HTTPWORKER_PORT"] != port {
		t.Errorf("FUNCTIONS_CUSTOMHANDLER_PORT=%q FUNCTIONS_HTTPWORKER_PORT=%q, want the same port", port, e.Env["FUNCTIONS_HTTPWORKER_PORT"])
	}
	if !guidRE.MatchString(id) || e.Env["FUNCTIONS_HTTPWORKER_ID"] != id {
		t.Errorf("FUNCTIONS_CUSTOMHANDLER_WORKER_ID=%q FUNCTIONS_HTTPWORKER_ID=%q, want the same GUID", id, e.Env["FUNCTIONS_HTTPWORKER_ID"])
	}
	if got := e.Env["FUNCTIONS_APP_ROOT_PATH"]; got != app {
		t.Errorf("FUNCTIONS_APP_ROOT_PATH=%q, want %q", got, app)
	}
	if got := e.Env["APP_SETTING"]; got != "visible" {
		t.Errorf("app setting APP_SETTING=%q, want visible", got)
	}
	if diff := cmp.Diff([]string{"--mode", "test", ""}, e.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if want := filepath.Join(app, "bin"); e.Cwd != want {
		t.Errorf("cwd = %q, want workingDirectory %q", e.Cwd, want)
	}
	eventually(t, 5*time.Second, "handler output", func() bool {
		return strings.Contains(stdout.String(), "fakehandler: listening on 127.0.0.1:"+port) &&
			strings.Contains(stderr.String(), "fakehandler: stderr works")
	})
}

// Any HTTP answer to GET / means ready, 404 included; a slow start is waited for.
func TestReadinessAcceptsAnyResponse(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{Env: []string{"FAKE_ROOT_STATUS=404", "FAKE_START_DELAY=300ms"}})
	if r := do(t, "GET", h.URL()+"/api/anon", "", nil); r.status != 200 {
		t.Errorf("status %d after start", r.status)
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("Restarts = %d, want 0", n)
	}
}

func TestStartFailsWhenHandlerExits(t *testing.T) {
	t.Parallel()
	_, err := hostsim.Start(context.Background(), hostsim.Options{
		AppRoot:    writeApp(t, forwardingHostJSON, standardFunctions),
		Executable: fakeHandler(t),
		Env:        []string{"FAKE_EXIT_CODE=2"},
	})
	if err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("Start error = %v, want the handler's exit status 2", err)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		host      string
		functions map[string]string
		want      string
	}{
		{"no customHandler", `{"version":"2.0"}`, nil, "no customHandler section"},
		{"missing executable", `{"customHandler":{"description":{"defaultExecutablePath":"no-such-handler-xyz"}}}`, nil, "not in"},
		{"two triggers", forwardingHostJSON, map[string]string{"bad": `{"bindings":[
		  {"type":"timerTrigger","direction":"in","name":"a","schedule":"* * * * * *"},
		  {"type":"httpTrigger","direction":"in","name":"b"}]}`}, "exactly one trigger"},
		{"sessions", forwardingHostJSON, map[string]string{"s": `{"bindings":[
		  {"type":"serviceBusTrigger","direction":"in","name":"m","queueName":"q","isSessionsEnabled":true}]}`}, "session"},
		{"bad timeout", `{"functionTimeout":"ten minutes","customHandler":{"description":{"defaultExecutablePath":"handler"}}}`, nil, "functionTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := hostsim.Options{AppRoot: writeApp(t, tt.host, tt.functions)}
			if tt.name != "no customHandler" && tt.name != "missing executable" {
				opts.Executable = fakeHandler(t)
			}
			h, err := hostsim.Start(context.Background(), opts)
			if err == nil {
				_ = h.Close()
				t.Fatalf("Start succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Forwarded HTTP functions: raw method, path, query, headers and body reach
// the handler with the host's headers added; the raw response comes back.
func TestHTTPForwarding(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{})

	t.Run("request reaches the handler raw with host headers", func(t *testing.T) {
		r := do(t, "POST", h.URL()+"/api/echo/42?x=1&code=abc&x=2", `{"qty":2}`, http.Header{
			"Content-Type": {"application/json"}, "X-Custom": {"a", "b"}, "User-Agent": {"curl/8"},
		})
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		e := decodeEcho(t, r)
		if e.Method != "POST" || e.Path != "/api/echo/42" || e.RawQuery != "x=1&code=abc&x=2" {
			t.Errorf("method/path/query = %s %s ?%s", e.Method, e.Path, e.RawQuery)
		}
		if e.Body != `{"qty":2}` || e.ContentLength != 9 {
			t.Errorf("body = %q (length %d)", e.Body, e.ContentLength)
		}
		hd := http.Header(e.Headers)
		if diff := cmp.Diff([]string{"a", "b"}, hd.Values("X-Custom")); diff != "" {
			t.Errorf("X-Custom (-want +got):\n%s", diff)
		}
		if got := hd.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
		if got := hd.Get("X-Azure-Functions-HostVersion"); got != hostsim.HostVersion {
			t.Errorf("X-Azure-Functions-HostVersion = %q", got)
		}
		if got := hd.Get("User-Agent"); got != "curl/8 Azure-Functions-Host/"+hostsim.HostVersion {
			t.Errorf("User-Agent = %q", got)
		}
		id := hd.Get("X-Azure-Functions-InvocationId")
		if !guidRE.MatchString(id) {
			t.Fatalf("X-Azure-Functions-InvocationId = %q", id)
		}
		var inv *hostsim.Invocation
		for _, i := range h.Invocations() {
			if i.ID == id {
				inv = &i
			}
		}
		if inv == nil {
			t.Fatalf("no invocation %s recorded", id)
		}
		if inv.Function != "echo" || inv.Trigger != hostsim.TriggerHTTP || inv.StatusCode != 200 || inv.Err != nil {
			t.Errorf("invocation record:%s", summary(*inv))
		}
	})

	t.Run("non-2xx response is returned unchanged and is no failure", func(t *testing.T) {
		r := do(t, "GET", h.URL()+"/api/echo?status=418&ct=text/plain%3B%20charset=x", "", nil)
		if r.status != 418 || r.header.Get("Content-Type") != "text/plain; charset=x" || r.header.Get("X-Fake") != "yes" {
			t.Errorf("got %d %v", r.status, r.header)
		}
		e := decodeEcho(t, r) // the body is still the echo
		var inv hostsim.Invocation
		for _, i := range h.Invocations() {
			if i.ID == http.Header(e.Headers).Get("X-Azure-Functions-InvocationId") {
				inv = i
			}
		}
		if inv.StatusCode != 418 || inv.Err != nil || string(inv.Body) != string(r.body) {
			t.Errorf("invocation = status %d err %v body %q", inv.StatusCode, inv.Err, inv.Body)
		}
	})

	t.Run("redirects are not followed", func(t *testing.T) {
		r := do(t, "GET", h.URL()+"/api/echo?redirect=1", "", nil)
		if r.status != http.StatusFound || r.header.Get("Location") != "/elsewhere" {
			t.Errorf("got %d Location %q", r.status, r.header.Get("Location"))
		}
	})

	t.Run("encoded path is kept", func(t *testing.T) {
		e := decodeEcho(t, do(t, "GET", h.URL()+"/api/echo/a%2Fb", "", nil))
		if e.RawPath != "/api/echo/a%2Fb" {
			t.Errorf("raw path = %q", e.RawPath)
		}
	})

	routing := []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/echo", 200},
		{"GET", "/API/Echo/7/", 200}, // case-insensitive, trailing slash
		{"PUT", "/api/echo", 404},    // method not in function.json methods
		{"GET", "/api/nope", 404},
		{"GET", "/echo", 404}, // no route prefix
		{"GET", "/api/echo/1/2", 404},
		{"GET", "/api/orders/7", 200},
		{"GET", "/api/orders/x", 404}, // {id:int}
		{"DELETE", "/api/anon", 200},  // no methods = any
		{"GET", "/api/rotate", 404},   // timer functions have no route
		{"GET", "/", 200},             // the host's home page
	}
	for _, tt := range routing {
		t.Run("route "+tt.method+" "+tt.path, func(t *testing.T) {
			if r := do(t, tt.method, h.URL()+tt.path, "", nil); r.status != tt.want {
				t.Errorf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
		})
	}

	t.Run("function that does not qualify for forwarding", func(t *testing.T) {
		r := do(t, "POST", h.URL()+"/api/enqueue", "{}", nil)
		if r.status != 500 || !strings.Contains(string(r.body), "not forwarded") {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})

	t.Run("body without Content-Length is not forwarded (legacy forwarding)", func(t *testing.T) {
		if e := postChunked(t, h.URL()+"/api/echo", "chunked"); e.Body != "" {
			t.Errorf("chunked body reached the handler: %q", e.Body)
		}
	})
}

// enableProxyingHttpRequest (YARP): x-ms-invocation-id and X-Forwarded-*
// are added, a chunked body is streamed; routePrefix "" drops /api.
func TestHTTPProxyingAndRoutePrefix(t *testing.T) {
	t.Parallel()
	hostJSON := `{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"},
	  "enableProxyingHttpRequest":true},"extensions":{"http":{"routePrefix":""}}}`
	h := startHost(t, hostsim.Options{AppRoot: writeApp(t, hostJSON, standardFunctions)})
	e := postChunked(t, h.URL()+"/echo?q=1", "streamed")
	hd := http.Header(e.Headers)
	if e.Path != "/echo" || e.RawQuery != "q=1" || e.Body != "streamed" {
		t.Errorf("path %q query %q body %q", e.Path, e.RawQuery, e.Body)
	}
	if hd.Get("x-ms-invocation-id") == "" || hd.Get("x-ms-invocation-id") != hd.Get("X-Azure-Functions-InvocationId") {
		t.Errorf("x-ms-invocation-id = %q, X-Azure-Functions-InvocationId = %q", hd.Get("x-ms-invocation-id"), hd.Get("X-Azure-Functions-InvocationId"))
	}
	if hd.Get("X-Forwarded-Host") == "" || hd.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("X-Forwarded-* = %v", hd)
	}
	if r := do(t, "GET", h.URL()+"/api/echo", "", nil); r.status != 404 {
		t.Errorf("/api/echo with routePrefix \"\" = %d, want 404", r.status)
	}
}

func TestFunctionKey(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{FunctionKey: "s3cret"})
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"anonymous needs no key", "/api/anon", nil, 200},
		{"function level without key", "/api/echo", nil, 401},
		{"wrong code", "/api/echo?code=nope", nil, 401},
		{"code query", "/api/echo?code=s3cret", nil, 200},
		{"x-functions-key header", "/api/echo", http.Header{"X-Functions-Key": {"s3cret"}}, 200},
		{"wrong header", "/api/echo", http.Header{"X-Functions-Key": {"S3CRET"}}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "GET", h.URL()+tt.path, "", tt.header)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d", r.status, tt.want)
			}
			if r.status == 200 && strings.Contains(tt.path, "code=") {
				if e := decodeEcho(t, r); !strings.Contains(e.RawQuery, "code=s3cret") {
					t.Errorf("code not forwarded: %q", e.RawQuery)
				}
			}
		})
	}
	if n := len(invocationsOf(h.Host, "echo")); n != 2 {
		t.Errorf("echo invocations = %d, want 2 (refused requests never reach the handler)", n)
	}
}

// Client-sent X-MS-CLIENT-PRINCIPAL* headers never reach the handler; the
// Authenticate hook's headers do; its status refuses the request.
func TestEasyAuthHeaders(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{Authenticate: func(r *http.Request) (http.Header, int) {
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			return http.Header{"X-Ms-Client-Principal-Id": {"oid-1"}, "X-Ms-Client-Principal-Name": {"alice"}}, 0
		case "Bearer bad":
			return nil, http.StatusUnauthorized
		}
		return nil, 0
	}})
	spoof := http.Header{"X-MS-CLIENT-PRINCIPAL-ID": {"attacker"}, "X-Ms-Client-Principal": {"e30="}, "x-ms-client-principal-idp": {"aad"}}

	e := decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", spoof))
	for k := range e.Headers {
		if strings.HasPrefix(strings.ToUpper(k), "X-MS-CLIENT-PRINCIPAL") {
			t.Errorf("spoofed header %s reached the handler", k)
		}
	}

	withAuth := spoof.Clone()
	withAuth.Set("Authorization", "Bearer good")
	e = decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", withAuth))
	hd := http.Header(e.Headers)
	if diff := cmp.Diff([]string{"oid-1"}, hd.Values("X-Ms-Client-Principal-Id")); diff != "" {
		t.Errorf("principal id (-want +got):\n%s", diff)
	}
	if hd.Get("X-Ms-Client-Principal") != "" || hd.Get("X-Ms-Client-Principal-Idp") != "" {
		t.Errorf("spoofed principal headers survived: %v", hd)
	}

	before := len(h.Invocations())
	bad := http.Header{"Authorization": {"Bearer bad"}}
	if r := do(t, "GET", h.URL()+"/api/anon", "", bad); r.status != 401 {
		t.Errorf("refused request: status %d, want 401", r.status)
	}
	if n := len(h.Invocations()); n != before {
		t.Errorf("a refused request was invoked")
	}
}

// InvokeTimer POSTs the TimerInfo envelope of spec §5 to /<Function> with the
// §1.5 headers and records the reply's Logs.
func TestInvokeTimer(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{})
	ctx := context.Background()
	before := time.Now().UTC()
	inv, err := h.InvokeTimer(ctx, "rotate", true)
	if err != nil {
		t.Fatal(err)
	}
	echo := decodeEnvelopeEcho(t, inv.Body)
	if echo.Echo.Path != "/rotate" || echo.Echo.Method != "POST" {
		t.Errorf("request %s %s", echo.Echo.Method, echo.Echo.Path)
	}
	hd := http.Header(echo.Echo.Headers)
	want := map[string]string{
		"Content-Type":                   "application/json; charset=utf-8",
		"X-Azure-Functions-InvocationId": inv.ID,
		"X-Azure-Functions-HostVersion":  hostsim.HostVersion,
		"User-Agent":                     "Azure-Functions-Host/" + hostsim.HostVersion,
	}
	for k, v := range want {
		if got := hd.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if string(echo.Echo.Envelope) != string(inv.Request) {
		t.Errorf("handler saw %s, recorded %s", echo.Echo.Envelope, inv.Request)
	}
	var env struct {
		Data struct {
			MyTimer struct {
				Schedule       map[string]any
				ScheduleStatus struct{ Last, Next, LastUpdated string }
				IsPastDue      bool
			} `json:"myTimer"`
		}
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(inv.Request, &env); err != nil {
		t.Fatalf("%v: %s", err, inv.Request)
	}
	ti := env.Data.MyTimer
	if ti.Schedule["AdjustForDST"] != true || !ti.IsPastDue {
		t.Errorf("TimerInfo = %+v", ti)
	}
	dateRE := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`)
	for _, s := range []string{ti.ScheduleStatus.Last, ti.ScheduleStatus.Next, ti.ScheduleStatus.LastUpdated} {
		if !dateRE.MatchString(s) {
			t.Errorf("ScheduleStatus date %q, want yyyy-MM-ddTHH:mm:ss+00:00", s)
		}
	}
	next, _ := time.Parse("2006-01-02T15:04:05-07:00", ti.ScheduleStatus.Next)
	if next.Second() != 0 || next.Minute()%5 != 0 || !next.After(before) || next.Sub(before) > 5*time.Minute {
		t.Errorf("Next = %s, want the next 5-minute mark after %s", next, before)
	}
	if len(env.Metadata) != 1 || env.Metadata["sys"] == nil {
		t.Errorf("Metadata = %s, want only sys", env.Metadata)
	}
	var sys map[string]string
	_ = json.Unmarshal(env.Metadata["sys"], &sys)
	if sys["MethodName"] != "rotate" || !guidRE.MatchString(sys["RandGuid"]) || !strings.HasSuffix(sys["UtcNow"], "Z") {
		t.Errorf("sys = %v", sys)
	}
	if diff := cmp.Diff([]string{"handled rotate invocation " + inv.ID + " delivery 0"}, inv.Logs); diff != "" {
		t.Errorf("Logs (-want +got):\n%s", diff)
	}
	if inv.Trigger != hostsim.TriggerTimer || inv.StatusCode != 200 || inv.Err != nil {
		t.Errorf("invocation:%s", summary(inv))
	}

	// useMonitor false: ScheduleStatus is null.
	inv, err = h.InvokeTimer(ctx, "cleanup", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(inv.Request), `"cleanupTimer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}`) {
		t.Errorf("envelope = %s", inv.Request)
	}

	if _, err := h.InvokeTimer(ctx, "nope", false); err == nil {
		t.Error("InvokeTimer of an unknown function succeeded")
	}
	if _, err := h.InvokeTimer(ctx, "echo", false); err == nil || !strings.Contains(err.Error(), "httpTrigger") {
		t.Errorf("InvokeTimer of an HTTP function: %v", err)
	}
}

// The success rule for envelope replies: 2xx, a JSON content type and a JSON
// object; anything else fails the invocation.
func TestEnvelopeReplyRules(t *testing.T) {
	t.Parallel()
	modeFile := filepath.Join(t.TempDir(), "mode")
	h := startHost(t, hostsim.Options{Env: []string{"FAKE_TIMER_FILE=" + modeFile}})
	tests := []struct {
		mode    string
		wantErr string // "" = success
	}{
		{"ok", ""},
		{"status500", "500"},
		{"text", "Content-Type"},
		{"null", "null"},
		{"empty", "empty body"},
		{"array", "not a JSON object"},
		{"notjson", "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			if err := os.WriteFile(modeFile, []byte(tt.mode), 0o644); err != nil {
				t.Fatal(err)
			}
			inv, err := h.InvokeTimer(context.Background(), "rotate", false)
			if tt.wantErr == "" {
				if err != nil || inv.Err != nil {
					t.Fatalf("err = %v, inv.Err = %v", err, inv.Err)
				}
				return
			}
			if err == nil || inv.Err == nil || !strings.Contains(inv.Err.Error(), tt.wantErr) {
				t.Errorf("err = %v, inv.Err = %v, want one mentioning %q", err, inv.Err, tt.wantErr)
			}
		})
	}
	if n := h.Restarts(); n != 0 {
		t.Errorf("Restarts = %d; a failed reply must not restart the handler", n)
	}
}

// A function timeout kills and restarts the handler; every invocation in
// flight on it fails, and the new process serves the next request.
func TestFunctionTimeoutRestartsHandler(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{FunctionTimeout: time.Second})
	oldPort := decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", nil)).Env["FUNCTIONS_CUSTOMHANDLER_PORT"]

	var wg sync.WaitGroup
	statuses := make([]int, 2)
	start := time.Now()
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				time.Sleep(400 * time.Millisecond) // its own timeout would be later
			}
			statuses[i] = do(t, "GET", h.URL()+"/api/anon?sleep=30s&n="+string(rune('a'+i)), "", nil).status
		}()
	}
	wg.Wait()
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("in-flight requests took %s; the timeout should end them after ~1s", elapsed)
	}
	if statuses[0] != 500 || statuses[1] != 500 {
		t.Errorf("statuses = %v, want both 500", statuses)
	}
	eventually(t, 30*time.Second, "restart", func() bool { return h.Restarts() == 1 })

	var timedOut, collateral int
	for _, inv := range invocationsOf(h.Host, "anon") {
		switch {
		case inv.Err == nil:
		case strings.Contains(inv.Err.Error(), "ran longer than 1s") && !strings.Contains(inv.Err.Error(), "restarted"):
			timedOut++
		case strings.Contains(inv.Err.Error(), "handler restarted after a function timeout"):
			collateral++
		default:
			t.Errorf("unexpected failure: %v", inv.Err)
		}
		if inv.Err != nil && !errors.Is(inv.Err, hostsim.ErrFunctionTimeout) {
			t.Errorf("error %v does not wrap ErrFunctionTimeout", inv.Err)
		}
	}
	if timedOut != 1 || collateral != 1 {
		t.Errorf("timed out %d, failed by the restart %d; want 1 and 1", timedOut, collateral)
	}

	e := decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", nil))
	if e.Env["FUNCTIONS_CUSTOMHANDLER_PORT"] == oldPort {
		t.Errorf("restarted handler kept port %s; want a new free port", oldPort)
	}
}

// KillHandler and a crash both make the host restart the handler; the
// in-flight invocation fails.
func TestHandlerRestartsAfterKillAndCrash(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{})
	firstID := decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", nil)).Env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]

	done := make(chan response, 1)
	go func() { done <- do(t, "GET", h.URL()+"/api/anon?sleep=30s", "", nil) }()
	eventually(t, 10*time.Second, "request in flight", func() bool {
		return strings.Contains(h.stdout.String(), "listening") // started
	})
	time.Sleep(300 * time.Millisecond)
	h.KillHandler()
	select {
	case r := <-done:
		if r.status != 500 {
			t.Errorf("in-flight request status %d, want 500", r.status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not fail after KillHandler")
	}
	eventually(t, 30*time.Second, "restart after kill", func() bool { return h.Restarts() == 1 })
	e := decodeEcho(t, do(t, "GET", h.URL()+"/api/anon", "", nil))
	if id := e.Env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]; id == firstID {
		t.Errorf("worker id unchanged after restart")
	}
	var killed bool
	for _, inv := range h.Invocations() {
		if inv.Err != nil && strings.Contains(inv.Err.Error(), "KillHandler") {
			killed = true
		}
	}
	if !killed {
		t.Errorf("no invocation failed with the KillHandler cause")
	}

	if r := do(t, "GET", h.URL()+"/api/anon?crash=1", "", nil); r.status != 500 {
		t.Errorf("crashing request status %d, want 500", r.status)
	}
	eventually(t, 30*time.Second, "restart after crash", func() bool { return h.Restarts() == 2 })
	if r := do(t, "GET", h.URL()+"/api/anon", "", nil); r.status != 200 {
		t.Errorf("after crash: status %d", r.status)
	}
}

func TestConcurrentHTTPInvocations(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{})
	const n = 24
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxInflight := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(t, "GET", h.URL()+"/api/anon?sleep=300ms", "", nil)
			if r.status != 200 {
				t.Errorf("status %d", r.status)
				return
			}
			e := decodeEcho(t, r)
			mu.Lock()
			maxInflight = max(maxInflight, e.Inflight)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if maxInflight < 2 {
		t.Errorf("max concurrent requests at the handler = %d, want the host to send them concurrently", maxInflight)
	}
	ids := map[string]bool{}
	for _, inv := range invocationsOf(h.Host, "anon") {
		ids[inv.ID] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct invocation ids, want %d", len(ids), n)
	}
	if err := h.WaitIdle(context.Background()); err != nil {
		t.Errorf("WaitIdle: %v", err)
	}
}

// Close sends SIGTERM (the handler shuts down gracefully) and the host
// stops serving.
func TestCloseTerminatesGracefully(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostsim.Options{})
	url := h.URL()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.stdout.String(), "fakehandler: SIGTERM, shutting down") {
		t.Errorf("handler did not see SIGTERM; stdout:\n%s", h.stdout.String())
	}
	if _, err := http.Get(url + "/api/anon"); err == nil {
		t.Error("front door still answers after Close")
	}
	if _, err := h.InvokeTimer(context.Background(), "rotate", false); err == nil {
		t.Error("InvokeTimer after Close succeeded")
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// An unreachable Service Bus namespace fails Start instead of retrying in
// the background.
func TestStartFailsWhenServiceBusUnreachable(t *testing.T) {
	t.Parallel()
	app := writeApp(t, forwardingHostJSON, map[string]string{
		"q": `{"bindings":[{"type":"serviceBusTrigger","direction":"in","name":"m","queueName":"orders"}]}`,
	})
	start := time.Now()
	h, err := hostsim.Start(context.Background(), hostsim.Options{
		AppRoot: app, Executable: fakeHandler(t),
		ServiceBusConnectionString: "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=eA==;UseDevelopmentEmulator=true;",
	})
	if err == nil {
		_ = h.Close()
		t.Fatal("Start succeeded against a closed port")
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error = %v", err)
	}
	t.Logf("failed after %s: %v", time.Since(start), err)
}
