// Command bench measures the handler against the local stand-ins and prints
// the figures of docs/PERFORMANCE.md in the document's own Markdown: the
// results table, then each measurement's detail. Every ratio is measured
// side by side in one run, so a noisy machine moves both sides.
//
//	go run ./cmd/bench -handler bin/handler [-quick]          print the figures
//	go run ./cmd/bench -handler bin/handler -doc docs/PERFORMANCE.md
//	                                                          also write them into the document,
//	                                                          between its bench:begin/end markers
//
// `make bench` does the latter, so the document is always one run's output.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

var (
	handlerPath = flag.String("handler", "bin/handler", "the handler binary")
	quick       = flag.Bool("quick", false, "short runs (a smoke test of the benchmark itself)")
	only        = flag.String("only", "", "run only the steps whose name contains this")
	docPath     = flag.String("doc", "", "write the figures into this Markdown file, between <!-- bench:begin --> and <!-- bench:end -->")
	note        = flag.String("note", "", "a sentence about the machine's load, printed under the machine line")
)

// rep collects every figure; render prints them.
var rep report

func main() {
	if os.Getenv("BENCH_PROXY") != "" {
		runProxy()
		return
	}
	flag.Parse()
	if *docPath != "" && (*only != "" || *quick) {
		fail(errors.New("-doc needs a full run: drop -only and -quick"))
	}
	abs, err := filepath.Abs(*handlerPath)
	if err != nil {
		fail(err)
	}
	*handlerPath = abs
	ctx := context.Background()
	rep.when = time.Now().UTC()
	rep.machine = fmt.Sprintf("%d vCPU %s, %s, %s/%s, %s", runtime.NumCPU(), cpuModel(), memTotal(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"cold start", coldStart},
		{"binary size", binarySize},
		{"per-request overhead", overhead},
		{"upstream calls per token", upstreamCalls},
		{"ledger calls and latency", ledgerCalls},
		{"queue throughput", queueThroughput},
		{"envelope decode", decodeBenchmark},
	}
	for _, s := range steps {
		if !strings.Contains(s.name, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s…\n", s.name)
		if err := s.fn(ctx); err != nil {
			fail(fmt.Errorf("%s: %w", s.name, err))
		}
	}
	var out bytes.Buffer
	rep.render(&out)
	os.Stdout.Write(out.Bytes())
	if *docPath != "" {
		if err := splice(*docPath, out.Bytes()); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote the figures into %s\n", *docPath)
	}
}

// splice replaces what lies between the document's markers with block.
func splice(path string, block []byte) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	const begin, end = "<!-- bench:begin -->\n", "<!-- bench:end -->"
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q markers", path, strings.TrimSpace(begin), end)
	}
	out := append(append(append([]byte{}, doc[:i+len(begin)]...), block...), doc[j:]...)
	return os.WriteFile(path, out, 0o644)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.0f GiB", kb/(1<<20))
		}
	}
	return "unknown memory"
}

// --- cold start -------------------------------------------------------------

const minimalServer = `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	http.ListenAndServe("127.0.0.1:"+os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"), nil)
}
`

// buildMinimal builds a minimal net/http server with the flags the handler
// is built with, as the baseline of cold start.
func buildMinimal(dir string) (string, error) {
	src := filepath.Join(dir, "minimal")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(minimalServer), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module minimal\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "minimal-server")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir, cmd.Stderr = src, os.Stderr
	return bin, cmd.Run()
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// timeToReady execs bin and polls GET / every millisecond until any answer.
func timeToReady(bin string, env []string) (time.Duration, error) {
	port := freePort()
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), env...), "FUNCTIONS_CUSTOMHANDLER_PORT="+port)
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for time.Since(start) < 10*time.Second {
		resp, err := client.Get("http://127.0.0.1:" + port + "/")
		if err == nil {
			resp.Body.Close()
			return time.Since(start), nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, errors.New("not ready within 10 s")
}

func coldStart(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	minimal, err := buildMinimal(dir)
	if err != nil {
		return err
	}
	st, err := stack.Start(ctx, stack.Options{Dir: dir})
	if err != nil {
		return err
	}
	defer st.Close()
	runs := 20
	var ours, base []time.Duration
	for range runs { // interleaved, so both see the same machine
		d, err := timeToReady(*handlerPath, st.Env())
		if err != nil {
			return err
		}
		ours = append(ours, d)
		if d, err = timeToReady(minimal, nil); err != nil {
			return err
		}
		base = append(base, d)
	}
	rep.cold = &coldResult{runs: runs, ours: ours, base: base}
	return nil
}

func binarySize(context.Context) error {
	dir, err := os.MkdirTemp("", "bench-size-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "handler")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	rep.size = fi.Size()
	return nil
}

// --- per-request overhead ---------------------------------------------------

// benchStack is a stack whose workspaces never run out of quota.
func benchStack(ctx context.Context, dir string, workspaces int, latency time.Duration, keyVault, serviceBus bool) (*stack.Stack, error) {
	st, err := stack.Start(ctx, stack.Options{Dir: dir, Workspaces: workspaces, KeyVault: keyVault, ServiceBus: serviceBus,
		MaxLiveTokens: -1, BrokerLog: io.Discard})
	if err != nil {
		return nil, err
	}
	for _, w := range st.Workspaces {
		w.SetLatency(latency)
	}
	return st, nil
}

type running struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

func startHandler(env []string) (*running, error) { return startProcess(*handlerPath, env) }

func startProcess(bin string, env []string) (*running, error) {
	port := freePort()
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), env...), "FUNCTIONS_CUSTOMHANDLER_PORT="+port, "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &running{cmd: cmd, url: "http://127.0.0.1:" + port, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	for range 5000 {
		if resp, err := http.Get(r.url + "/"); err == nil {
			resp.Body.Close()
			return r, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.stop()
	return nil, errors.New(bin + " not ready")
}

func (r *running) stop() { _ = r.cmd.Process.Kill(); <-r.done }

// peakRSS is the process's high-water resident set (VmHWM).
func (r *running) peakRSS() int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

type loadResult struct {
	n         int
	errors    int
	elapsed   time.Duration
	latencies []time.Duration
}

// load runs clients concurrent loops of do for d.
func load(clients int, d time.Duration, do func(*http.Client) error) loadResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
	var mu sync.Mutex
	var res loadResult
	var errs atomic.Int64
	stopAt := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(stopAt) {
				t0 := time.Now()
				if err := do(client); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			res.latencies = append(res.latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.n = len(res.latencies)
	res.errors = int(errs.Load())
	slices.Sort(res.latencies)
	return res
}

func (l loadResult) pct(p float64) time.Duration {
	if len(l.latencies) == 0 {
		return 0
	}
	return l.latencies[min(len(l.latencies)-1, int(p*float64(len(l.latencies))))]
}

func (l loadResult) rps() float64 { return float64(l.n) / l.elapsed.Seconds() }

func post(client *http.Client, url string, body []byte, hdr http.Header, want int) error {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// The floor is an httputil.ReverseProxy in front of the same workspace,
// adding the headers the workspace needs (tokens fetched once), run as its
// own process like the handler (the bench re-executes itself with
// BENCH_PROXY set), with the same HTTP/1.1 connection pool.
func runProxy() {
	target, _ := url.Parse(os.Getenv("PROXY_TARGET"))
	pem, err := os.ReadFile(os.Getenv("PROXY_CA_FILE"))
	if err != nil {
		fail(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.MaxConnsPerHost, t.MaxIdleConnsPerHost = 32, 32
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = "/api/2.0/token/create"
			pr.Out.Header.Set("Authorization", "Bearer "+os.Getenv("PROXY_DBX_TOKEN"))
			pr.Out.Header.Set("X-Databricks-Azure-SP-Management-Token", os.Getenv("PROXY_MGMT_TOKEN"))
			pr.Out.Header.Set("X-Databricks-Azure-Workspace-Resource-Id", os.Getenv("PROXY_RESOURCE_ID"))
		},
		Transport: t,
	}
	fail(http.ListenAndServe("127.0.0.1:"+os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"), rp))
}

func startProxy(st *stack.Stack, w *fakedatabricks.Workspace) (*running, error) {
	dbxTok, _ := st.MSI.TokenFor(st.MSI.Identity(), fakeentra.DatabricksResource)
	mgmtTok, _ := st.MSI.TokenFor(st.MSI.Identity(), fakeentra.ManagementResource)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProcess(self, []string{"BENCH_PROXY=1", "PROXY_TARGET=" + w.URL(), "PROXY_CA_FILE=" + st.CAFile,
		"PROXY_DBX_TOKEN=" + dbxTok, "PROXY_MGMT_TOKEN=" + mgmtTok, "PROXY_RESOURCE_ID=" + w.ResourceID()})
}

func overhead(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "bench-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dur := 4 * time.Second
	if *quick {
		dur = 500 * time.Millisecond
	}
	rep.cellDuration = dur
	var rss int64
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		st, err := benchStack(ctx, dir, 1, latency, false, false)
		if err != nil {
			return err
		}
		h, err := startHandler(st.Env())
		if err != nil {
			st.Close()
			return err
		}
		proxy, err := startProxy(st, st.Workspaces[0])
		if err != nil {
			return err
		}
		proxyURL := proxy.url
		body, _ := json.Marshal(map[string]any{"workspaceResourceId": stack.WorkspaceResourceID(0), "lifetimeSeconds": 3600, "comment": "bench"})
		dbxBody := []byte(`{"comment":"bench","lifetime_seconds":3600}`)
		// Warm both paths (ARM lookup, Entra tokens, connections).
		_ = post(http.DefaultClient, h.url+"/api/create-token", body, nil, 201)
		_ = post(http.DefaultClient, proxyURL, dbxBody, nil, 200)
		for _, clients := range []int{1, 8, 32} {
			ours := load(clients, dur, func(c *http.Client) error { return post(c, h.url+"/api/create-token", body, nil, 201) })
			floor := load(clients, dur, func(c *http.Client) error { return post(c, proxyURL, dbxBody, nil, 200) })
			if ours.errors > 0 || floor.errors > 0 {
				return fmt.Errorf("errors under load: handler %d, proxy %d", ours.errors, floor.errors)
			}
			rep.cells = append(rep.cells, cell{latency: latency, clients: clients, ours: ours, proxy: floor})
		}
		if latency == 0 {
			load(64, dur, func(c *http.Client) error { return post(c, h.url+"/api/create-token", body, nil, 201) })
			rss = h.peakRSS()
		}
		proxy.stop()
		h.stop()
		st.Close()
	}
	rep.rss = rss
	return nil
}

// --- upstream calls per token ----------------------------------------------

func upstreamCalls(ctx context.Context) error {
	n, workspaces := 1000, 10
	if *quick {
		n = 100
	}
	rep.creates, rep.workspaces = n, workspaces
	for _, kv := range []bool{false, true} {
		dir, err := os.MkdirTemp("", "bench-calls-")
		if err != nil {
			return err
		}
		st, err := benchStack(ctx, dir, workspaces, 0, kv, false)
		if err != nil {
			return err
		}
		h, err := startHandler(st.Env())
		if err != nil {
			return err
		}
		if failures := fanOut(n, func(i int) error {
			body, _ := json.Marshal(map[string]any{"workspaceResourceId": stack.WorkspaceResourceID(i % workspaces), "lifetimeSeconds": 3600})
			return post(http.DefaultClient, h.url+"/api/create-token", body, nil, 201)
		}); failures > 0 {
			return fmt.Errorf("%d creates failed", failures)
		}
		entraCalls := 0
		for _, c := range st.MSI.Calls() {
			entraCalls += c
		}
		armCalls := len(st.ARM.Requests())
		dbx := 0
		for _, w := range st.Workspaces {
			dbx += len(w.Requests())
		}
		c := callsResult{mode: "inline", entra: entraCalls, arm: armCalls, databricks: dbx}
		if kv {
			c.mode, c.keyVault = "Key Vault", st.Vault.Calls()
		}
		rep.calls = append(rep.calls, c)
		h.stop()
		st.Close()
		os.RemoveAll(dir)
	}
	return nil
}

// --- queue throughput -------------------------------------------------------

func queueThroughput(ctx context.Context) error {
	n := 1000
	if *quick {
		n = 200
	}
	const latency = 20 * time.Millisecond
	dir, err := os.MkdirTemp("", "bench-queue-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := benchStack(ctx, dir, 1, latency, false, true)
	if err != nil {
		return err
	}
	defer st.Close()
	full := st
	env := append(st.Env(), "RESULTS_INCLUDE_TOKEN_VALUE=true", "ROTATE_SCHEDULE=0 0 0 * * *", "LOG_LEVEL=warn")
	var handlerLog io.Writer = io.Discard
	if p := os.Getenv("BENCH_HANDLER_LOG"); p != "" { // for a closer look: LOG_LEVEL=info lines per invocation
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		handlerLog = f
		env = append(env, "LOG_LEVEL=info")
	}
	root, _ := os.Getwd()
	host, err := hostsim.Start(ctx, hostsim.Options{AppRoot: root, Executable: *handlerPath, Env: env, ServiceBusConnectionString: full.Broker.ConnectionString(),
		MaxConcurrentCalls: 16, Stdout: handlerLog, Stderr: os.Stderr})
	if err != nil {
		return err
	}
	defer host.Close()
	sb, err := azservicebus.NewClientFromConnectionString(full.Broker.ConnectionString(), nil)
	if err != nil {
		return err
	}
	defer sb.Close(context.Background())
	// Warm up: one command, so the ARM lookup and Entra tokens are cached as they would be in steady state.
	sender, _ := sb.NewSender("token-requests", nil)
	rcv, _ := sb.NewReceiverForQueue("token-results", &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
	cmd := []byte(`{"action":"create","workspaceResourceId":"` + stack.WorkspaceResourceID(0) + `","lifetimeSeconds":3600}`)
	if err := sender.SendMessage(ctx, &azservicebus.Message{Body: cmd}, nil); err != nil {
		return err
	}
	if _, err := receiveN(ctx, rcv, 1); err != nil {
		return err
	}
	batch, _ := sender.NewMessageBatch(ctx, nil)
	for range n {
		if err := batch.AddMessage(&azservicebus.Message{Body: cmd}, nil); err != nil {
			if err := sender.SendMessageBatch(ctx, batch, nil); err != nil {
				return err
			}
			batch, _ = sender.NewMessageBatch(ctx, nil)
			_ = batch.AddMessage(&azservicebus.Message{Body: cmd}, nil)
		}
	}
	start := time.Now()
	if err := sender.SendMessageBatch(ctx, batch, nil); err != nil {
		return err
	}
	got, err := receiveN(ctx, rcv, n)
	if err != nil {
		return fmt.Errorf("%d of %d results: %w", got, n, err)
	}
	wall := time.Since(start)
	ideal := time.Duration(n) * latency / 16
	var inv []time.Duration
	for _, i := range host.Invocations() {
		if i.Function == "token-requests" {
			inv = append(inv, i.Duration)
		}
	}
	rep.queue = &queueResult{n: n, latency: latency, wall: wall, ideal: ideal, invocations: inv}
	return nil
}

func receiveN(ctx context.Context, rcv *azservicebus.Receiver, n int) (int, error) {
	got := 0
	deadline := time.Now().Add(5 * time.Minute)
	for got < n && time.Now().Before(deadline) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msgs, err := rcv.ReceiveMessages(rctx, min(n-got, 500), nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return got, err
		}
		got += len(msgs)
	}
	if got < n {
		return got, errors.New("timed out")
	}
	return got, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// fanOut runs do for 0…n-1 on eight workers, the concurrency of a busy
// Logic App, and returns how many failed.
func fanOut(n int, do func(i int) error) int64 {
	var next, failures atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if do(i) != nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return failures.Load()
}
