package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The targets of docs/PERFORMANCE.md.
const (
	targetColdRatio  = 1.5
	targetSizeMB     = 25.0
	targetRSSMB      = 40.0
	targetCalls      = 1.02
	targetThroughput = 0.8
	targetP99        = 2 * time.Millisecond
	targetQueue      = 1.2
)

type report struct {
	when    time.Time
	machine string

	cold *coldResult
	size int64

	cellDuration time.Duration
	cells        []cell
	rss          int64

	creates, workspaces int
	calls               []callsResult

	queue  *queueResult
	decode *decodeResult
	ledger *ledgerResult
}

type coldResult struct {
	runs       int
	ours, base []time.Duration
}

type cell struct {
	latency     time.Duration
	clients     int
	ours, proxy loadResult
}

func (c cell) ratio() float64             { return c.ours.rps() / c.proxy.rps() }
func (c cell) p99Overhead() time.Duration { return c.ours.pct(.99) - c.proxy.pct(.99) }

type callsResult struct {
	mode                   string
	entra, arm, databricks int
	keyVault               map[string]int // by operation, as the stand-in counts them
}

func (c callsResult) keyVaultTotal() int {
	n := 0
	for _, v := range c.keyVault {
		n += v
	}
	return n
}

type queueResult struct {
	n           int
	latency     time.Duration
	wall, ideal time.Duration
	invocations []time.Duration
}

func (q queueResult) ratio() float64 { return float64(q.wall) / float64(q.ideal) }

type decodeResult struct {
	nsPerOp, bytesPerOp, allocsPerOp float64
}

// decodeBenchmark runs BenchmarkDecodeServiceBus (handler/envelope_test.go)
// and reads its -benchmem line.
func decodeBenchmark(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkDecodeServiceBus$", "-benchmem", "-count", "1", "./handler")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^BenchmarkDecodeServiceBus\S*\s+\d+\s+([0-9.]+) ns/op\s+([0-9.]+) B/op\s+([0-9.]+) allocs/op`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("no benchmark line in:\n%s", out)
	}
	var r decodeResult
	r.nsPerOp, _ = strconv.ParseFloat(string(m[1]), 64)
	r.bytesPerOp, _ = strconv.ParseFloat(string(m[2]), 64)
	r.allocsPerOp, _ = strconv.ParseFloat(string(m[3]), 64)
	rep.decode = &r
	return nil
}

// met says whether a figure meets its target, in the table's last column.
func met(ok bool, missed string) string {
	if ok {
		return "met"
	}
	return strings.TrimSpace("missed " + missed)
}

// thousands writes n with thousands separators, as the document does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// msTrue is ms with a true minus sign.
func msTrue(d time.Duration) string { return strings.Replace(ms(d), "-", "−", 1) }

func latencyLabel(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s" }

func (r *report) cellsAt(latency time.Duration) []cell {
	var out []cell
	for _, c := range r.cells {
		if c.latency == latency {
			out = append(out, c)
		}
	}
	return out
}

// render writes the figures in docs/PERFORMANCE.md's own format: the
// machine, the results table, then each measurement's detail.
func (r *report) render(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("Machine: %s; %s (UTC).", r.machine, r.when.Format("2 January 2006 15:04"))
	if *note != "" {
		p(" %s", *note)
	}
	p("\n\n## Results\n\n| measure | result | target | |\n|---|---|---|---|\n")
	if c := r.cold; c != nil {
		mo, mb := median(c.ours), median(c.base)
		ratio := float64(mo) / float64(mb)
		p("| cold start: exec → first answer to `GET /`, median of %d | %s vs %s for a minimal net/http server: **%.2f×** | ≤ %.1f× | %s |\n",
			c.runs, ms(mo), ms(mb), ratio, targetColdRatio, met(ratio <= targetColdRatio, fmt.Sprintf("by %.2f", ratio-targetColdRatio)))
	}
	if r.size > 0 {
		mb := float64(r.size) / 1e6
		p("| binary size (linux/amd64, static, stripped) | **%.1f MB** | ≤ %.0f MB | %s |\n", mb, targetSizeMB, met(mb <= targetSizeMB, ""))
	}
	if r.rss > 0 {
		mb := float64(r.rss) / 1e6
		p("| peak RSS at 64 concurrent creates | **%.1f MB** | ≤ %.0f MB | %s |\n", mb, targetRSSMB, met(mb <= targetRSSMB, fmt.Sprintf("by %.1f MB", mb-targetRSSMB)))
	}
	if len(r.calls) > 0 {
		var parts []string
		ok := true
		for i, c := range r.calls {
			per := float64(c.entra+c.arm+c.databricks) / float64(r.creates)
			ok = ok && per <= targetCalls
			if i == 0 {
				parts = append(parts, fmt.Sprintf("**%.3f** Entra+ARM+Databricks (%s Entra, %s ARM, %s Databricks)", per, thousands(c.entra), thousands(c.arm), thousands(c.databricks)))
			} else {
				parts = append(parts, fmt.Sprintf("%.3f with %s delivery (+ %s Key Vault calls: %s)", per, c.mode, thousands(c.keyVaultTotal()), byOperation(c.keyVault)))
			}
		}
		p("| upstream calls per token, %s creates over %d workspaces | %s | ≤ %.2f (naive flow: 4) | %s |\n",
			thousands(r.creates), r.workspaces, strings.Join(parts, "; "), targetCalls, met(ok, ""))
	}
	r.renderLedgerRow(p)
	for _, latency := range []time.Duration{20 * time.Millisecond, 0} {
		cells := r.cellsAt(latency)
		if len(cells) == 0 {
			continue
		}
		var ratios, clients, misses []string
		for _, c := range cells {
			ratios = append(ratios, fmt.Sprintf("%.2f×", c.ratio()))
			clients = append(clients, strconv.Itoa(c.clients))
			if c.ratio() < targetThroughput {
				misses = append(misses, strconv.Itoa(c.clients))
			}
		}
		status := "met"
		if len(misses) > 0 {
			status = "missed at " + joinAnd(misses) + " client" + plural(len(misses)) + " (below)"
		}
		p("| throughput vs reverse proxy, %s workspace latency, %s clients | **%s** | ≥ %.1f× | %s |\n",
			latencyLabel(latency), strings.Join(clients, "/"), strings.Join(ratios, " / "), targetThroughput, status)
	}
	if a, b := r.cellAt(0, 32), r.cellAt(20*time.Millisecond, 32); a != nil && b != nil {
		ok := a.p99Overhead() <= targetP99 && b.p99Overhead() <= targetP99
		p("| p99 overhead at 32 clients (0 ms / 20 ms latency) | **%s / %s** | ≤ %d ms | %s |\n", msTrue(a.p99Overhead()), msTrue(b.p99Overhead()), targetP99.Milliseconds(), met(ok, ""))
	}
	if q := r.queue; q != nil {
		p("| queue: %s creates, concurrency 16, %s latency | %.3f s vs ideal %.2f s: **%.2f×** | ≤ %.1f× | %s |\n",
			thousands(q.n), latencyLabel(q.latency), q.wall.Seconds(), q.ideal.Seconds(), q.ratio(), targetQueue, met(q.ratio() <= targetQueue, fmt.Sprintf("by %.2f (below)", q.ratio()-targetQueue)))
	}
	if d := r.decode; d != nil {
		p("| envelope decode (`BenchmarkDecodeServiceBus`) | %.1f µs, **%.0f allocs**, %.1f KB per envelope | — | |\n", d.nsPerOp/1000, d.allocsPerOp, d.bytesPerOp/1000)
	}

	if c := r.cold; c != nil {
		p("\n### Cold start\n\n`exec` of the binary to the first HTTP answer on `GET /`, polled every millisecond, %d runs\n", c.runs)
		p("interleaved with a minimal `net/http` server built the same way (`-trimpath`): median %s (min %s, max\n%s) against %s (%s–%s).\n",
			ms(median(c.ours)), ms(slices.Min(c.ours)), ms(slices.Max(c.ours)), ms(median(c.base)), ms(slices.Min(c.base)), ms(slices.Max(c.base)))
	}
	if len(r.cells) > 0 {
		p("\n### Per-request overhead\n\n`POST /api/create-token` (inline delivery, 1-hour tokens) for %s per cell, beside an\n", seconds(r.cellDuration))
		p("`httputil.ReverseProxy` that forwards the same create to the same workspace stand-in with the same\nthree headers (tokens fetched once), run as its own process with the same HTTP/1.1 connection pool.\n\n")
		p("| workspace latency | clients | handler req/s | proxy req/s | ratio | handler p50 / p99 | proxy p50 / p99 | p99 overhead |\n|---|---|---|---|---|---|---|---|\n")
		for _, c := range r.cells {
			p("| %s | %d | %.0f | %.0f | %.2f× | %s / %s | %s / %s | %s |\n", latencyLabel(c.latency), c.clients, c.ours.rps(), c.proxy.rps(), c.ratio(),
				strings.TrimSuffix(ms(c.ours.pct(.5)), " ms"), ms(c.ours.pct(.99)), strings.TrimSuffix(ms(c.proxy.pct(.5)), " ms"), ms(c.proxy.pct(.99)), msTrue(c.p99Overhead()))
		}
		if c := r.cellAt(0, 1); c != nil {
			p("\nAt 0 ms and one client the difference of the medians is the handler's own work per request: %s.\n", ms(c.ours.pct(.5)-c.proxy.pct(.5)))
		}
	}
	if len(r.calls) > 0 {
		p("\n### Upstream calls per token\n\n%s creates over %d workspaces from 8 concurrent clients, counted by the stand-ins:\n\n", thousands(r.creates), r.workspaces)
		p("| delivery | Entra | ARM | Databricks | Key Vault | Entra+ARM+Databricks per token |\n|---|---|---|---|---|---|\n")
		for _, c := range r.calls {
			kv := "0"
			if c.keyVault != nil {
				kv = fmt.Sprintf("%s (%s)", thousands(c.keyVaultTotal()), byOperation(c.keyVault))
			}
			p("| %s | %s | %s | %s | %s | **%.3f** |\n", c.mode, thousands(c.entra), thousands(c.arm), thousands(c.databricks), kv, float64(c.entra+c.arm+c.databricks)/float64(r.creates))
		}
		p("| naive flow | %s | %s | %s | — | 4.000 |\n", thousands(2*r.creates), thousands(r.creates), thousands(r.creates))
	}
	r.renderLedgerSection(p)
	if q := r.queue; q != nil {
		p("\n### Queue throughput\n\n%s create commands sent in batches to `token-requests`; the host simulator keeps 16 invocations\n", thousands(q.n))
		p("in flight; the workspace answers in %s; the clock stops when the %s result has been read back\nfrom `token-results`. %.3f s against the ideal %.2f s (%s × %s / 16): **%.2f×**. The host simulator\n",
			latencyLabel(q.latency), ordinal(q.n), q.wall.Seconds(), q.ideal.Seconds(), thousands(q.n), latencyLabel(q.latency), q.ratio())
		p("timed each invocation (envelope, HTTP hop, handler, reply) at a median %s, p99 %s.\n", ms(median(q.invocations)), ms(pct(q.invocations, .99)))
	}
	if r.rss > 0 || r.size > 0 {
		p("\n### Memory and size\n\nPeak RSS (`VmHWM`) of the handler process after the overhead runs and a further %s at 64\n", seconds(r.cellDuration))
		p("concurrent creates: %.1f MB. The binary `make package` ships (linux/amd64, `CGO_ENABLED=0 -trimpath\n-ldflags=\"-s -w\"`): %.1f MB.\n", float64(r.rss)/1e6, float64(r.size)/1e6)
	}
}

func (r *report) cellAt(latency time.Duration, clients int) *cell {
	for i, c := range r.cells {
		if c.latency == latency && c.clients == clients {
			return &r.cells[i]
		}
	}
	return nil
}

// byOperation lists the stand-in's call counts, largest first.
func byOperation(calls map[string]int) string {
	ops := slices.Collect(maps.Keys(calls))
	slices.SortFunc(ops, func(a, b string) int {
		if calls[a] != calls[b] {
			return calls[b] - calls[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = thousands(calls[op]) + " " + op
	}
	return strings.Join(parts, ", ")
}

func joinAnd(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return thousands(n) + suffix
}
