package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// TestSystemTopicWatchesItsOwnResourceGroup proves the Event Grid system
// topic is created where its source is and the template's choice is
// explicit: a resource-group topic watches the resource group it is deployed
// in (Event Grid keeps a system topic in its source's resource group), no
// parameter points it at another one, and eventGridScope says that a source
// has one system topic only, so a second environment on the same source
// fails with "Only one system topic is allowed per source".
func TestSystemTopicWatchesItsOwnResourceGroup(t *testing.T) {
	eg := readRepo(t, "infra", "bicep", "modules", "eventgrid.bicep")
	src := regexp.MustCompile(`(?m)^var source = (.+)$`).FindStringSubmatch(eg)
	if src == nil {
		t.Fatal("eventgrid.bicep has no `var source = …`")
	}
	if want := "topicScope == 'subscription' ? subscription().id : resourceGroup().id"; src[1] != want {
		t.Errorf("eventgrid.bicep: source = %s, want %s (the topic's own resource group, or the subscription)", src[1], want)
	}
	mainBicep := readRepo(t, "infra", "bicep", "main.bicep")
	for name, text := range map[string]string{"eventgrid.bicep": eg, "main.bicep": mainBicep} {
		if m := regexp.MustCompile(`(?m)^param (\w*[Ss]ource\w*ResourceGroup\w*)`).FindStringSubmatch(text); m != nil {
			t.Errorf("%s declares %s: a system topic for another resource group would live outside its source's resource group", name, m[1])
		}
	}
	block := regexp.MustCompile(`(?ms)^module eventGrid 'modules/eventgrid\.bicep' = .*?^\}`).FindString(mainBicep)
	if block == "" {
		t.Fatal("main.bicep has no eventGrid module")
	}
	if strings.Contains(block, "scope:") {
		t.Error("main.bicep deploys the eventgrid module to another scope; it belongs in this resource group")
	}
	desc := regexp.MustCompile(`(?m)^@description\('([^\n]+)'\)\n@allowed\(\[\n  'none'\n  'subscription'\n  'resourceGroup'\n\]\)\nparam eventGridScope`).FindStringSubmatch(mainBicep)
	if desc == nil || !strings.Contains(desc[1], "one system topic") {
		t.Error("main.bicep: eventGridScope's @description does not say that a source has only one system topic")
	}
}
