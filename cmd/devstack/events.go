package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// eventCount is one row of the demo's closing summary.
type eventCount struct {
	Event string
	Lines int
}

// countEvents counts the handler's audit lines by event name: what
// infra/monitoring/workbook/events-summary.kql shows in the workbook
// (lines with an event, by event, in name order).
func countEvents(logs []byte) []eventCount {
	counts := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var l struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(line, &l) == nil && l.Event != "" {
			counts[l.Event]++
		}
	}
	out := make([]eventCount, 0, len(counts))
	for ev, n := range counts {
		out = append(out, eventCount{ev, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Event < out[j].Event })
	return out
}

// printEvents writes the summary table.
func printEvents(w io.Writer, counts []eventCount) {
	total := 0
	width := len("event")
	for _, c := range counts {
		total += c.Lines
		width = max(width, len(c.Event))
	}
	fmt.Fprintf(w, "What happened, by event (the workbook's \"Events\" panel, from the same %d audit lines):\n", total)
	fmt.Fprintf(w, "  %-*s  %s\n", width, "event", "lines")
	fmt.Fprintf(w, "  %s  %s\n", strings.Repeat("-", width), "-----")
	for _, c := range counts {
		fmt.Fprintf(w, "  %-*s  %5d\n", width, c.Event, c.Lines)
	}
}
