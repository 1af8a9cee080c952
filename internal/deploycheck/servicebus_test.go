package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

func readRepo(t *testing.T, rel ...string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(append([]string{root(t)}, rel...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// isoDuration parses the ISO 8601 durations the templates use (PnD, PTnH,
// PTnM, PTnS and their combinations).
func isoDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`).FindStringSubmatch(s)
	if m == nil || s == "P" || s == "PT" {
		t.Fatalf("%q is not an ISO 8601 duration this test reads", s)
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * unit
		}
	}
	return d
}

// TestEventGridRedeliveriesAreDuplicates proves the workspace-events queue
// remembers MessageIds for at least as long as Event Grid keeps retrying an
// event: Event Grid redelivers with the same MessageId until the event's
// time to live (eventTimeToLiveInMinutes, at most 24 h) runs out, and a copy
// arriving after the duplicate detection window would be processed again.
func TestEventGridRedeliveriesAreDuplicates(t *testing.T) {
	eg := readRepo(t, "infra", "bicep", "modules", "eventgrid.bicep")
	m := regexp.MustCompile(`eventTimeToLiveInMinutes:\s*(\d+)`).FindStringSubmatch(eg)
	if m == nil {
		t.Fatal("eventgrid.bicep sets no eventTimeToLiveInMinutes literal")
	}
	minutes, _ := strconv.Atoi(m[1])
	ttl := time.Duration(minutes) * time.Minute

	sb := readRepo(t, "infra", "bicep", "modules", "servicebus.bicep")
	// The workspace-events queue's window: the parameter its queue entry uses.
	// The workspace-events queue's window: the parameter its own queue entry
	// names, else the one every queue shares.
	entry := regexp.MustCompile(`(?s)name:\s*workspaceEventsQueueName\s+duplicateDetectionWindow:\s*(\w+)`).FindStringSubmatch(sb)
	if entry == nil {
		entry = regexp.MustCompile(`duplicateDetectionHistoryTimeWindow:\s*(\w+)\s`).FindStringSubmatch(sb)
	}
	if entry == nil {
		t.Fatal("servicebus.bicep: cannot tell the workspace-events queue's duplicateDetectionHistoryTimeWindow")
	}
	def := regexp.MustCompile(`(?m)^param ` + entry[1] + ` string = '([^']+)'`).FindStringSubmatch(sb)
	if def == nil {
		t.Fatalf("servicebus.bicep: no default for param %s", entry[1])
	}
	if w := isoDuration(t, def[1]); w < ttl {
		t.Errorf("workspace-events duplicate detection window %s (%s) is shorter than Event Grid's event time to live %s: a redelivery after %s is taken for a new event", def[1], w, ttl, w)
	}
	mainBicep := readRepo(t, "infra", "bicep", "main.bicep")
	if regexp.MustCompile(`(?m)^\s+` + entry[1] + `:`).MatchString(mainBicep) {
		t.Errorf("main.bicep overrides %s; the check above reads only the default", entry[1])
	}
}
