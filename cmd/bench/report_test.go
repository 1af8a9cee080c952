package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// load builds a loadResult of n requests in elapsed, all taking lat.
func loadOf(n int, elapsed, lat time.Duration) loadResult {
	l := loadResult{n: n, elapsed: elapsed}
	for range n {
		l.latencies = append(l.latencies, lat)
	}
	return l
}

// fullReport is a report with every figure, shaped like a real run.
func fullReport() *report {
	r := &report{when: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), machine: "2 vCPU Test CPU, 24 GiB, linux/amd64, go1.26.8"}
	r.cold = &coldResult{runs: 20, ours: []time.Duration{5 * time.Millisecond}, base: []time.Duration{4 * time.Millisecond}}
	r.size, r.rss = 10_700_000, 35_200_000
	r.cellDuration = 4 * time.Second
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		for _, c := range []int{1, 8, 32} {
			ours, proxy := loadOf(1000, time.Second, lat+time.Millisecond), loadOf(1000, time.Second, lat+time.Millisecond)
			if lat == 0 && c < 32 {
				proxy = loadOf(1500, time.Second, lat+time.Millisecond) // the handler at 0.67×
			}
			r.cells = append(r.cells, cell{latency: lat, clients: c, ours: ours, proxy: proxy})
		}
	}
	r.creates, r.workspaces = 1000, 10
	r.calls = []callsResult{{mode: "inline", entra: 2, arm: 10, databricks: 1000},
		{mode: "Key Vault", entra: 3, arm: 10, databricks: 1000, keyVault: map[string]int{"set": 1000, "challenge": 4}}}
	r.queue = &queueResult{n: 1000, latency: 20 * time.Millisecond, wall: 1614 * time.Millisecond, ideal: 1250 * time.Millisecond, invocations: []time.Duration{23 * time.Millisecond}}
	r.decode = &decodeResult{nsPerOp: 14600, bytesPerOp: 2800, allocsPerOp: 49}
	r.ledger = &ledgerResult{creates: 1000, createDatabricks: 1000, createTb: 2000, repeatTb: 2000, latency: 20 * time.Millisecond,
		memory: loadResult{n: 100, elapsed: time.Second, latencies: []time.Duration{21 * time.Millisecond}}, table: loadResult{n: 80, elapsed: time.Second, latencies: []time.Duration{30 * time.Millisecond}}}
	return r
}

// TestRenderSaysWhatTheRunMeasured proves the bench's own output reads as
// the document does: latencies as "0 ms" (not Go's "0s"), the cells that
// miss their target named, Key Vault calls counted by operation, and the
// queue's miss by how much.
func TestRenderSaysWhatTheRunMeasured(t *testing.T) {
	var b bytes.Buffer
	fullReport().render(&b)
	out := b.String()
	for _, want := range []string{
		"| 0 ms | 1 | 1000 | 1500 | 0.67× |",
		"| 20 ms | 32 |",
		"| throughput vs reverse proxy, 0 ms workspace latency, 1/8/32 clients | **0.67× / 0.67× / 1.00×** | ≥ 0.8× | missed at 1 and 8 clients (below) |",
		"(+ 1,004 Key Vault calls: 1,000 set, 4 challenge)",
		"| Key Vault | 3 | 10 | 1,000 | 1,004 (1,000 set, 4 challenge) | **1.013** |",
		"1.614 s vs ideal 1.25 s: **1.29×** | ≤ 1.2× | missed by 0.09 (below) |",
		"| envelope decode (`BenchmarkDecodeServiceBus`) | 14.6 µs, **49 allocs**, 2.8 KB per envelope | — | |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| 0s |") || strings.Contains(out, "20ms") {
		t.Errorf("Go duration formatting in the report:\n%s", out)
	}
}

// TestDocumentIsOneBenchRun proves docs/PERFORMANCE.md's figures are the
// bench's output, pasted whole: they sit between the markers `make bench`
// rewrites, in the shape render produces (the same results rows, in the
// same order, and the same detail sections), so the two cannot drift apart.
func TestDocumentIsOneBenchRun(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "PERFORMANCE.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	m := regexp.MustCompile(`(?s)<!-- bench:begin -->\n(.*)<!-- bench:end -->`).FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("docs/PERFORMANCE.md has no <!-- bench:begin --> … <!-- bench:end --> block for make bench to rewrite")
	}
	var b bytes.Buffer
	fullReport().render(&b)
	shape := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			switch {
			case strings.HasPrefix(l, "Machine: "), strings.HasPrefix(l, "#"), strings.HasPrefix(l, "|---"):
				out = append(out, regexp.MustCompile(`^Machine: .*`).ReplaceAllString(l, "Machine:"))
			case strings.HasPrefix(l, "| "):
				out = append(out, "| "+strings.SplitN(l[2:], " |", 2)[0])
			}
		}
		return out
	}
	want, got := shape(b.String()), shape(m[1])
	if !slices.Equal(got, want) {
		t.Errorf("the document's bench block is not in the bench's shape; run make bench.\n got: %q\nwant: %q", got, want)
	}
	// Outside the block, no figure that a run would change: only the
	// history of what the profile showed keeps the figures of its day.
	outside := strings.Replace(doc, m[0], "", 1)
	outside = regexp.MustCompile(`(?s)\n## What the profile showed.*?(\n## |$)`).ReplaceAllString(outside, "$1")
	figure := regexp.MustCompile(`\d+\.\d+ ?(ms|MB|×|s\b)`)
	for _, line := range strings.Split(outside, "\n") {
		if figure.MatchString(line) {
			t.Errorf("a measured figure outside the bench block, which the next run would not update: %q", line)
		}
	}
}
