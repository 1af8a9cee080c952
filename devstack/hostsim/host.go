// Package hostsim is a stand-in for the Azure Functions host in front of a
// custom handler, for local runs and tests. It speaks the protocol described
// in docs/functions-custom-handler-spec.md: it starts the handler binary with
// the host's environment, polls GET / until the handler answers, forwards raw
// HTTP requests for one-in/one-out HTTP functions, POSTs the host's JSON
// invocation envelope for Service Bus queue and timer triggers, completes or
// abandons Service Bus messages on the handler's reply, and kills and
// restarts the handler on a function timeout or a crash.
package hostsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// HostVersion is the version the simulator reports in
// X-Azure-Functions-HostVersion and User-Agent (Azure-Functions-Host/<v>).
const HostVersion = "4.1040.300"

// Defaults used when neither Options nor host.json set a value.
const (
	DefaultFunctionTimeout    = 5 * time.Minute
	DefaultMaxConcurrentCalls = 16
	DefaultMaxLockRenewal     = 5 * time.Minute
)

// Options configure a simulated host. Zero values take the defaults noted.
type Options struct {
	// AppRoot holds host.json and one folder per function with a
	// function.json, like the real host's wwwroot. Required.
	AppRoot string
	// Executable is the handler binary. Default: host.json
	// customHandler.description.defaultExecutablePath resolved against
	// workingDirectory, then AppRoot, then PATH.
	Executable string
	// Env are app settings given to the child (KEY=value), on top of the
	// simulator's own environment; they also resolve %SETTING% references.
	Env []string
	// ServiceBusConnectionString is used for every serviceBusTrigger
	// function (an emulator-style connection string for
	// azservicebus.NewClientFromConnectionString). When empty, the app
	// setting named by the binding's "connection" (or AzureWebJobsServiceBus)
	// is used if it holds a connection string; otherwise Service Bus
	// functions are not started (logged).
	ServiceBusConnectionString string
	// FunctionTimeout bounds every invocation. Default: host.json
	// functionTimeout, else 5m. On timeout the handler is killed and
	// restarted and every in-flight invocation fails.
	FunctionTimeout time.Duration
	// MaxConcurrentCalls per Service Bus function. Default: host.json
	// extensions.serviceBus.maxConcurrentCalls, else 16.
	MaxConcurrentCalls int
	// FunctionKey, when set, is required (?code= or x-functions-key) by HTTP
	// functions with authLevel function or admin (there is no separate
	// master key); 401 otherwise. Without it no key is checked, as in Core
	// Tools.
	FunctionKey string
	// Authenticate is an optional Easy Auth stand-in, called for every
	// front-door request before routing. It returns headers to add to the
	// request (e.g. X-MS-CLIENT-PRINCIPAL*), or a non-zero status to refuse
	// the request with (nothing reaches the handler then). Client-sent
	// X-MS-CLIENT-PRINCIPAL* headers are always removed first, as App
	// Service does.
	Authenticate func(r *http.Request) (http.Header, int)
	// Stdout and Stderr receive the handler's output. Default: lines go to
	// Logf, or nowhere without Logf.
	Stdout, Stderr io.Writer
	// Logf receives the simulator's log lines (the host's own log). Optional.
	Logf func(format string, args ...any)
}

// Invocation is the record of one function invocation.
type Invocation struct {
	ID       string // X-Azure-Functions-InvocationId
	Function string // function (folder) name
	Trigger  string // TriggerHTTP, TriggerServiceBus or TriggerTimer
	Start    time.Time
	Duration time.Duration

	// StatusCode, ContentType and Body are the handler's reply (0/empty when
	// there was none).
	StatusCode  int
	ContentType string
	Body        []byte
	// Logs is the reply's Logs array (kept even when the invocation failed,
	// which the real host would not log).
	Logs []string
	// Request is the envelope POSTed to the handler (nil for forwarded HTTP).
	Request []byte

	// Service Bus only.
	MessageID     string
	DeliveryCount uint32
	Settlement    string // "complete" or "abandon"

	// Err is why the invocation failed; nil on success. A forwarded HTTP
	// request fails only when no response came back (non-2xx is success).
	// For Service Bus it also reports a failed Complete/Abandon (e.g. a lost
	// lock), with Settlement saying which was attempted.
	Err error
}

// Settlement outcomes.
const (
	SettlementComplete = "complete"
	SettlementAbandon  = "abandon"
)

var errClosed = errors.New("hostsim: host is closed")

// Host is a running simulated Functions host.
type Host struct {
	opts        Options
	cfg         hostConfig
	functions   []*function
	appRoot     string
	exe         string
	args        []string
	workDir     string
	env         []string
	settings    func(string) (string, bool)
	stdout      io.Writer
	stderr      io.Writer
	timeout     time.Duration // <= 0: none
	maxCalls    int
	lockRenewal time.Duration
	routes      []*httpRoute

	mu          sync.Mutex
	cur         *worker       // the ready handler, nil while (re)starting
	ready       chan struct{} // closed when cur is set
	proc        *worker       // the latest started process, ready or not
	restarts    int
	isClosing   bool
	inflight    int
	invocations []Invocation
	lastTimer   map[string]time.Time

	closing        chan struct{}
	supervisorDone chan struct{}
	invWG          sync.WaitGroup

	ln  net.Listener
	srv *http.Server
	url string

	sbClient   *azservicebus.Client
	sbFuncs    []*sbFunction
	recvCancel context.CancelFunc
	recvWG     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Start reads AppRoot, starts the handler and waits until it answers GET /,
// opens the front door and starts the Service Bus receivers. ctx bounds the
// start-up only; call Close to stop the host.
func Start(ctx context.Context, opts Options) (*Host, error) {
	if opts.AppRoot == "" {
		return nil, errors.New("hostsim: Options.AppRoot is required")
	}
	appRoot, err := filepath.Abs(opts.AppRoot)
	if err != nil {
		return nil, fmt.Errorf("hostsim: %w", err)
	}
	h := &Host{
		opts:           opts,
		appRoot:        appRoot,
		ready:          make(chan struct{}),
		closing:        make(chan struct{}),
		supervisorDone: make(chan struct{}),
		lastTimer:      map[string]time.Time{},
	}
	h.env = append(os.Environ(), opts.Env...)
	h.settings = envLookup(h.env)

	if h.cfg, err = readHostConfig(appRoot); err != nil {
		return nil, fmt.Errorf("hostsim: %w", err)
	}
	if !h.cfg.hasCustomHandlerConfig && opts.Executable == "" {
		return nil, errors.New("hostsim: host.json has no customHandler section and Options.Executable is empty")
	}
	if h.functions, err = readFunctions(appRoot, h.settings); err != nil {
		return nil, fmt.Errorf("hostsim: %w", err)
	}
	if err := h.resolveExecutable(); err != nil {
		return nil, fmt.Errorf("hostsim: %w", err)
	}
	for _, a := range h.cfg.Arguments {
		h.args = append(h.args, expandSettings(a, h.settings))
	}

	switch {
	case opts.FunctionTimeout > 0:
		h.timeout = opts.FunctionTimeout
	case h.cfg.FunctionTimeout > 0:
		h.timeout = h.cfg.FunctionTimeout
	case h.cfg.FunctionTimeout < 0:
		h.timeout = 0
	default:
		h.timeout = DefaultFunctionTimeout
	}
	switch {
	case opts.MaxConcurrentCalls > 0:
		h.maxCalls = opts.MaxConcurrentCalls
	case h.cfg.MaxConcurrentCalls > 0:
		h.maxCalls = h.cfg.MaxConcurrentCalls
	default:
		h.maxCalls = DefaultMaxConcurrentCalls
	}
	h.lockRenewal = DefaultMaxLockRenewal
	if h.cfg.MaxAutoLockRenewal != 0 {
		h.lockRenewal = h.cfg.MaxAutoLockRenewal
	}

	out := kit.Serialized(h.outputWriter(opts.Stdout, "stdout"), h.outputWriter(opts.Stderr, "stderr"))
	h.stdout, h.stderr = out[0], out[1]

	if h.routes, err = buildRoutes(h.functions); err != nil {
		return nil, fmt.Errorf("hostsim: %w", err)
	}
	if err := h.checkServiceBusFunctions(); err != nil {
		return nil, fmt.Errorf("hostsim: %w", err)
	}

	// Front door.
	h.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("hostsim: listen: %w", err)
	}
	h.url = "http://" + h.ln.Addr().String()
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = h.srv.Serve(h.ln) }()

	// Handler process.
	first := make(chan error, 1)
	go h.supervise(first)
	select {
	case err = <-first:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("hostsim: start handler: %w", err)
	}

	if err := h.startServiceBus(ctx); err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("hostsim: %w", err)
	}
	h.logf("hostsim: host started at %s (%d functions, handler %s)", h.url, len(h.functions), h.exe)
	return h, nil
}

func (h *Host) resolveExecutable() error {
	h.workDir = h.appRoot
	if wd := h.cfg.WorkingDirectory; wd != "" {
		if filepath.IsAbs(wd) {
			h.workDir = wd
		} else {
			h.workDir = filepath.Join(h.appRoot, wd)
		}
	}
	if h.opts.Executable != "" {
		exe := h.opts.Executable
		if strings.ContainsRune(exe, filepath.Separator) || strings.Contains(exe, "/") {
			abs, err := filepath.Abs(exe)
			if err != nil {
				return err
			}
			h.exe = abs
			return nil
		}
		p, err := exec.LookPath(exe)
		if err != nil {
			return fmt.Errorf("executable %q: %w", exe, err)
		}
		h.exe = p
		return nil
	}
	exe := h.cfg.Executable
	if exe == "" {
		return errors.New("host.json customHandler.description.defaultExecutablePath is empty")
	}
	if filepath.IsAbs(exe) {
		h.exe = exe
		return nil
	}
	for _, dir := range []string{h.workDir, h.appRoot} {
		p := filepath.Join(dir, exe)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			h.exe = p
			return nil
		}
	}
	p, err := exec.LookPath(exe)
	if err != nil {
		return fmt.Errorf("defaultExecutablePath %q: not in %s, %s or on PATH", exe, h.workDir, h.appRoot)
	}
	h.exe = p
	return nil
}

func (h *Host) outputWriter(w io.Writer, stream string) io.Writer {
	if w != nil {
		return w
	}
	if h.opts.Logf == nil {
		return io.Discard
	}
	return &lineLogger{logf: h.opts.Logf, prefix: "handler " + stream + ": "}
}

func (h *Host) logf(format string, args ...any) {
	if h.opts.Logf != nil {
		h.opts.Logf(format, args...)
	}
}

func (h *Host) stopping() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.isClosing
}

// URL is the front door, e.g. http://127.0.0.1:PORT; HTTP functions are at
// /<routePrefix>/<route>.
func (h *Host) URL() string { return h.url }

// Handler is the handler process in service: its own address (for calls
// that bypass the host, as curl against the binary would) and its process
// id. Zero values while it is (re)starting.
func (h *Host) Handler() (url string, pid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil || h.cur.cmd.Process == nil {
		return "", 0
	}
	return h.cur.baseURL(), h.cur.cmd.Process.Pid
}

// Restarts is how many times the handler has been restarted.
func (h *Host) Restarts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.restarts
}

// Invocations returns every finished invocation, oldest first.
func (h *Host) Invocations() []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Invocation(nil), h.invocations...)
}

// KillHandler SIGKILLs the handler now, as on a crash. In-flight invocations
// fail; the host restarts the handler.
func (h *Host) KillHandler() {
	h.mu.Lock()
	w := h.proc
	h.mu.Unlock()
	if w != nil {
		h.killWorker(w, errors.New("handler killed (KillHandler)"))
	}
}

// WaitIdle returns when no invocation is in flight and every Service Bus
// function's queue has no message left to deliver, observed three times in
// a row 50 ms apart.
func (h *Host) WaitIdle(ctx context.Context) error {
	stable := 0
	var why string
	for {
		idle, reason := h.idleNow(ctx)
		if idle {
			stable++
			if stable >= 3 {
				return nil
			}
		} else {
			stable, why = 0, reason
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hostsim: not idle (%s): %w", why, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (h *Host) idleNow(ctx context.Context) (bool, string) {
	h.mu.Lock()
	n := h.inflight
	h.mu.Unlock()
	if n > 0 {
		return false, fmt.Sprintf("%d invocations in flight", n)
	}
	for _, sf := range h.sbFuncs {
		pending, err := sf.pending(ctx)
		if err != nil {
			return false, fmt.Sprintf("peek %s: %v", sf.entity, err)
		}
		if pending {
			return false, fmt.Sprintf("messages waiting in %s", sf.entity)
		}
	}
	return true, ""
}

// Close stops the Service Bus receivers and the front door, sends SIGTERM to
// the handler (SIGKILL after 10 s), waits for in-flight invocations to settle
// and closes the Service Bus client.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.isClosing = true
		w := h.proc
		h.mu.Unlock()
		close(h.closing)
		var errs []error

		if h.recvCancel != nil {
			h.recvCancel()
		}
		h.recvWG.Wait()

		// The handler is told to stop first, so that a graceful handler can
		// finish the requests it is serving; no new process starts now.
		if w != nil {
			select {
			case <-w.done:
			default:
				terminateProcess(w.cmd)
				select {
				case <-w.done:
				case <-time.After(stopGrace):
					errs = append(errs, errors.New("hostsim: handler ignored SIGTERM; killed"))
					w.kill(errClosed)
					<-w.done
				}
			}
			h.retire(w, errClosed)
		}
		<-h.supervisorDone

		if h.srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), stopGrace)
			if err := h.srv.Shutdown(sctx); err != nil {
				_ = h.srv.Close()
			}
			cancel()
		}
		h.invWG.Wait()

		for _, sf := range h.sbFuncs {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = sf.recv.Close(cctx)
			_ = sf.peeker.Close(cctx)
			cancel()
		}
		if h.sbClient != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := h.sbClient.Close(cctx); err != nil {
				errs = append(errs, fmt.Errorf("hostsim: close service bus client: %w", err))
			}
			cancel()
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}

// beginInvocation counts an invocation as in flight.
func (h *Host) beginInvocation() {
	h.mu.Lock()
	h.inflight++
	h.mu.Unlock()
}

// endInvocation records inv and ends its in-flight count.
func (h *Host) endInvocation(inv Invocation) {
	h.mu.Lock()
	h.inflight--
	h.invocations = append(h.invocations, inv)
	h.mu.Unlock()
	if inv.Err != nil {
		h.logf("hostsim: Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %v", inv.Function, inv.ID, inv.Duration.Milliseconds(), inv.Err)
	} else {
		h.logf("hostsim: Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", inv.Function, inv.ID, inv.Duration.Milliseconds())
	}
}

func (h *Host) function(name string, kind string) (*function, error) {
	var found *function
	for _, fn := range h.functions {
		if fn.Name == name {
			found = fn
			break
		}
		if strings.EqualFold(fn.Name, name) && found == nil {
			found = fn
		}
	}
	if found == nil {
		names := make([]string, 0, len(h.functions))
		for _, fn := range h.functions {
			names = append(names, fn.Name)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("hostsim: no function %q (have %s)", name, strings.Join(names, ", "))
	}
	if found.Kind != kind {
		return nil, fmt.Errorf("hostsim: function %q has a %s, not a %s", found.Name, found.Trigger.Type, kind)
	}
	return found, nil
}

// lineLogger turns written bytes into Logf lines.
type lineLogger struct {
	logf   func(string, ...any)
	prefix string
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.logf("%s%s", l.prefix, strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}
