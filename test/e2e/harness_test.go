// Package e2e runs the real handler binary, started by the Functions-host
// simulator, against the local stand-ins over real HTTP/TLS and AMQP:
// the code under test is the code that ships.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/fakeservicebus"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

var handlerBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e2e-handler-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	handlerBinary = filepath.Join(dir, "handler")
	args := []string{"build", "-o", handlerBinary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the handler:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// env is one running system: stand-ins, host simulator and handler.
type env struct {
	t      *testing.T
	stack  *stack.Stack
	host   *hostsim.Host
	output *kit.Buffer
	// seen collects every HTTP answer and result message the test read,
	// for the secret scan.
	seen *kit.Buffer
	// hostOpts start another instance of the app (instance).
	hostOpts hostsim.Options
	others   []*hostsim.Host
}

type envOptions struct {
	workspaces int
	serviceBus bool
	keyVault   bool
	plain      bool     // stand-ins over plain http on loopback (ALLOW_INSECURE_LOOPBACK)
	settings   []string // extra app settings, KEY=value
	queues     []fakeservicebus.QueueConfig
	easyAuth   bool // App Service Authentication in front, as the platform does
	ledger     bool // the ledger in Azurite's Table Storage (else in memory)
	before     func(*stack.Stack)
	settingsFn func() []string // settings known only after before ran
	timeout    time.Duration
}

func start(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := t.Context()
	st, err := stack.Start(ctx, stack.Options{Dir: t.TempDir(), Workspaces: o.workspaces, ServiceBus: o.serviceBus, KeyVault: o.keyVault, Plain: o.plain, Queues: o.queues, Ledger: o.ledger, BrokerLog: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if o.before != nil {
		o.before(st)
	}
	out := &kit.Buffer{}
	settings := append(st.Env(), "LOG_LEVEL=debug", "ROTATE_SCHEDULE=0 */5 * * * *")
	settings = append(settings, o.settings...)
	if o.settingsFn != nil {
		settings = append(settings, o.settingsFn()...)
	}
	sbConn := ""
	if st.Broker != nil {
		sbConn = st.Broker.ConnectionString()
	}
	var authenticate func(*http.Request) (http.Header, int)
	if o.easyAuth {
		authenticate = fakeeasyauth.Authenticate(fakeeasyauth.Validator())
	}
	hopts := hostsim.Options{Authenticate: authenticate,
		AppRoot: repoRoot(), Executable: handlerBinary, Env: settings, ServiceBusConnectionString: sbConn,
		Stdout: out, Stderr: out, FunctionTimeout: o.timeout,
		Logf: func(format string, args ...any) { t.Logf("host: "+format, args...) },
	}
	h, err := hostsim.Start(ctx, hopts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, stack: st, host: h, output: out, seen: &kit.Buffer{}, hostOpts: hopts}
	t.Cleanup(func() {
		_ = h.Close()
		for _, o := range e.others {
			_ = o.Close()
		}
		e.assertNoSecretsInLogs()
	})
	return e
}

// instance starts one more instance of the app (a Functions host with its
// handler) on the same stand-ins, queues and ledger: what scale-out does.
// Its HTTP address is its own; it competes for the queues' messages.
// settings (KEY=value) override the first instance's, as a misconfigured
// slot would.
func (e *env) instance(settings ...string) *hostsim.Host {
	e.t.Helper()
	opts := e.hostOpts
	opts.Env = append(slices.Clone(opts.Env), settings...)
	opts.Logf = func(format string, args ...any) { e.t.Logf("host 2: "+format, args...) }
	h, err := hostsim.Start(e.t.Context(), opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.others = append(e.others, h)
	return h
}

// doAt is do against another instance's host.
func (e *env) doAt(h *hostsim.Host, method, path string, body any, header ...string) response {
	e.t.Helper()
	return e.request(h.URL(), method, path, body, header...)
}

// assertNoSecretsInLogs fails the test if any Entra access token or
// Databricks token value the stand-ins handed out appears anywhere a value
// could escape: the handler's stdout and stderr, the Logs and bodies of its
// replies to the host, and every HTTP answer and result message the test
// read — except the tokenValue field, where the contract puts a value.
func (e *env) assertNoSecretsInLogs() {
	e.t.Helper()
	var b strings.Builder
	b.WriteString(e.output.String())
	for _, inv := range e.host.Invocations() {
		for _, l := range inv.Logs {
			b.WriteString(l + "\n")
		}
		if inv.Trigger != hostsim.TriggerHTTP {
			b.Write(inv.Body)
			b.WriteString("\n")
		}
	}
	b.WriteString(e.seen.String())
	logs := b.String()
	lines := strings.Count(logs, "\n")
	for _, s := range e.stack.Secrets() {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a secret (%s…) appears in the handler's output", s[:8])
		}
	}
	if strings.Contains(logs, "dapi") {
		e.t.Errorf("something shaped like a Databricks token value appears in the handler's output")
	}
	e.t.Logf("secret scan: 0 of %d log lines hold a secret (%d secrets checked)", lines, len(e.stack.Secrets()))
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

func (r response) errorCode(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (e *env) do(method, path string, body any, header ...string) response {
	e.t.Helper()
	return e.request(e.host.URL(), method, path, body, header...)
}

func (e *env) request(base, method, path string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	e.see(b)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// see keeps an answer or a result for the secret scan, without its
// tokenValue fields (the one place a value belongs).
func (e *env) see(body []byte) {
	var v any
	if json.Unmarshal(body, &v) != nil {
		_, _ = e.seen.Write(append(body, '\n'))
		return
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "tokenValue")
			for _, c := range x {
				strip(c)
			}
		case []any:
			for _, c := range x {
				strip(c)
			}
		}
	}
	strip(v)
	b, _ := json.Marshal(v)
	_, _ = e.seen.Write(append(b, '\n'))
}

func (e *env) create(body map[string]any, header ...string) response {
	e.t.Helper()
	return e.do(http.MethodPost, "/api/create-token", body, header...)
}

// mustCreate is create for a test that needs the token: anything but 201
// ends the test, naming the request.
func (e *env) mustCreate(body map[string]any, header ...string) response {
	e.t.Helper()
	r := e.create(body, header...)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("create %v: %d %s", body, r.Status, r.Body)
	}
	return r
}

func ws(i int) string { return stack.WorkspaceResourceID(i) }
