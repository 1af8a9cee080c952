package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/stack"
)

// ledgerResult is what the ledger costs and saves.
type ledgerResult struct {
	creates                    int
	createDatabricks, createTb int // calls for the creates with caller-chosen ids
	repeatDatabricks, repeatTb int // calls for the same ids again
	memory, table              loadResult
	latency                    time.Duration
}

// countingProxy forwards to target and counts the requests: how the
// ledger's own Table Storage calls are counted (Azurite counts nothing).
func countingProxy(target string) (*httptest.Server, *atomic.Int64, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, nil, err
	}
	var n atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	return srv, &n, nil
}

// throughProxy rewrites AzureWebJobsStorage's TableEndpoint to go through
// a counting proxy.
func throughProxy(env []string) ([]string, *httptest.Server, *atomic.Int64, error) {
	for i, kv := range env {
		v, ok := strings.CutPrefix(kv, "AzureWebJobsStorage=")
		if !ok {
			continue
		}
		for _, part := range strings.Split(v, ";") {
			endpoint, ok := strings.CutPrefix(part, "TableEndpoint=")
			if !ok {
				continue
			}
			u, err := url.Parse(endpoint)
			if err != nil {
				return nil, nil, nil, err
			}
			srv, n, err := countingProxy(u.Scheme + "://" + u.Host)
			if err != nil {
				return nil, nil, nil, err
			}
			out := append([]string(nil), env...)
			out[i] = "AzureWebJobsStorage=" + strings.Replace(v, u.Scheme+"://"+u.Host, srv.URL, 1)
			return out, srv, n, nil
		}
	}
	return nil, nil, nil, fmt.Errorf("no AzureWebJobsStorage TableEndpoint in the stack's settings")
}

// ledgerCalls counts Databricks and Table Storage calls for creates with
// caller-chosen request ids (the ledger replaced the list before each)
// and for their repeats, and the latency the ledger adds to a create.
func ledgerCalls(ctx context.Context) error {
	n, workspaces := 1000, 10
	if *quick {
		n = 100
	}
	dir, err := os.MkdirTemp("", "bench-ledger-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := stack.Start(ctx, stack.Options{Dir: dir, Workspaces: workspaces, Ledger: true, MaxLiveTokens: -1, BrokerLog: io.Discard})
	if err != nil {
		return err
	}
	defer st.Close()
	env, proxy, tableCalls, err := throughProxy(st.Env())
	if err != nil {
		return err
	}
	defer proxy.Close()
	h, err := startHandler(env)
	if err != nil {
		return err
	}
	defer h.stop()
	databricksCalls := func() int {
		c := 0
		for _, w := range st.Workspaces {
			c += len(w.Requests())
		}
		return c
	}
	run := func(want int) error {
		if failures := fanOut(n, func(i int) error {
			body, _ := json.Marshal(map[string]any{"workspaceResourceId": stack.WorkspaceResourceID(i % workspaces),
				"requestId": fmt.Sprintf("bench-%05d", i), "lifetimeSeconds": 3600})
			return post(http.DefaultClient, h.url+"/api/create-token", body, nil, want)
		}); failures > 0 {
			return fmt.Errorf("%d of %d creates failed", failures, n)
		}
		return nil
	}
	res := &ledgerResult{creates: n, latency: 20 * time.Millisecond}
	// Warm the ARM lookups and Entra tokens, so only per-token calls count.
	for i := range workspaces {
		body, _ := json.Marshal(map[string]any{"workspaceResourceId": stack.WorkspaceResourceID(i), "lifetimeSeconds": 3600})
		_ = post(http.DefaultClient, h.url+"/api/create-token", body, nil, 201)
	}
	d0, t0 := databricksCalls(), int(tableCalls.Load())
	if err := run(201); err != nil {
		return err
	}
	d1, t1 := databricksCalls(), int(tableCalls.Load())
	if err := run(200); err != nil {
		return err
	}
	d2, t2 := databricksCalls(), int(tableCalls.Load())
	res.createDatabricks, res.createTb = d1-d0, t1-t0
	res.repeatDatabricks, res.repeatTb = d2-d1, t2-t1

	// The latency the ledger adds: the same creates at 20 ms workspace
	// latency, against the in-memory ledger and against the table.
	dur := 4 * time.Second
	if *quick {
		dur = time.Second
	}
	for _, w := range st.Workspaces {
		w.SetLatency(res.latency)
	}
	body, _ := json.Marshal(map[string]any{"workspaceResourceId": stack.WorkspaceResourceID(0), "lifetimeSeconds": 3600})
	res.table = load(8, dur, func(c *http.Client) error { return post(c, h.url+"/api/create-token", body, nil, 201) })
	var memEnv []string
	for _, kv := range st.Env() {
		if !strings.HasPrefix(kv, "AzureWebJobsStorage=") {
			memEnv = append(memEnv, kv)
		}
	}
	hm, err := startHandler(memEnv)
	if err != nil {
		return err
	}
	defer hm.stop()
	_ = post(http.DefaultClient, hm.url+"/api/create-token", body, nil, 201)
	res.memory = load(8, dur, func(c *http.Client) error { return post(c, hm.url+"/api/create-token", body, nil, 201) })
	if res.table.errors > 0 || res.memory.errors > 0 {
		return fmt.Errorf("errors under load: table %d, memory %d", res.table.errors, res.memory.errors)
	}
	rep.ledger = res
	return nil
}

func (r *report) renderLedgerRow(p func(string, ...any)) {
	l := r.ledger
	if l == nil {
		return
	}
	per := float64(l.createDatabricks) / float64(l.creates)
	p("| Databricks calls per token, %s creates with caller-chosen request ids (ledger in Table Storage) | **%.2f** (+ %.2f ledger calls) | 1.00 | %s |\n",
		thousands(l.creates), per, float64(l.createTb)/float64(l.creates), met(per <= 1.0, fmt.Sprintf("at %.2f", per)))
	p("| Databricks calls for %s repeats of those ids | **%d** (+ %.2f ledger calls each) | 0 | %s |\n",
		thousands(l.creates), l.repeatDatabricks, float64(l.repeatTb)/float64(l.creates), met(l.repeatDatabricks == 0, fmt.Sprintf("%d", l.repeatDatabricks)))
	p("| create latency the table ledger adds, %s workspace latency, 8 clients (p50 / p99) | **%s / %s** | — | |\n",
		latencyLabel(l.latency), msTrue(l.table.pct(.5)-l.memory.pct(.5)), msTrue(l.table.pct(.99)-l.memory.pct(.99)))
}

func (r *report) renderLedgerSection(p func(string, ...any)) {
	l := r.ledger
	if l == nil {
		return
	}
	p("\n### The ledger\n\n%s creates with caller-chosen request ids over 10 workspaces from 8 clients, then the same %s\n", thousands(l.creates), thousands(l.creates))
	p("again, with the ledger in Azurite's Table Storage; Databricks calls counted by the stand-ins, the ledger's\n")
	p("own calls by a counting proxy in front of Azurite (after one warm-up create per workspace):\n\n")
	p("| run | Databricks calls | per token | ledger (Table Storage) calls | per token |\n|---|---|---|---|---|\n")
	p("| creates | %s | %.3f | %s | %.2f |\n", thousands(l.createDatabricks), float64(l.createDatabricks)/float64(l.creates), thousands(l.createTb), float64(l.createTb)/float64(l.creates))
	p("| repeats | %s | %.3f | %s | %.2f |\n", thousands(l.repeatDatabricks), float64(l.repeatDatabricks)/float64(l.creates), thousands(l.repeatTb), float64(l.repeatTb)/float64(l.creates))
	p("\nCreates at %s workspace latency from 8 clients for the same time, with the ledger in memory and in\n", latencyLabel(l.latency))
	p("the table: p50 %s vs %s, p99 %s vs %s (%.0f vs %.0f req/s).\n", ms(l.memory.pct(.5)), ms(l.table.pct(.5)), ms(l.memory.pct(.99)), ms(l.table.pct(.99)), l.memory.rps(), l.table.rps())
}
