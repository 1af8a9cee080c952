package deploycheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// apiVersions are the monitoring resource types the alerts module deploys,
// each at a stable API version of the Azure REST API specifications
// (Azure/azure-rest-api-specs, specification/monitor and
// specification/applicationinsights, stable/<version>).
var apiVersions = map[string]string{
	"Microsoft.Insights/scheduledQueryRules":   "2023-12-01", // monitor/.../stable/2023-12-01/scheduledQueryRule_API.json
	"Microsoft.Insights/actionGroups":          "2023-01-01", // monitor/.../stable/2023-01-01/actionGroups_API.json
	"Microsoft.Insights/workbooks":             "2023-06-01", // applicationinsights/.../stable/2023-06-01/workbooks_API.json
	"Microsoft.OperationalInsights/workspaces": "2023-09-01", // as in monitoring.bicep
}

var (
	resourceTypeRE = regexp.MustCompile(`resource \w+ '([^'@]+)@([^']+)'`)
	loadRE         = regexp.MustCompile(`loadTextContent\('([^']+)'\)`)
)

// TestAlertsModule checks infra/bicep/modules/alerts.bicep against the
// queries: every query under infra/monitoring/alerts and /workbook is
// loaded by the module exactly once (no query that nothing runs, none run
// twice), the resource types are real ones at stable API versions, and the
// module is deployed by default, behind main.bicep's deployAlerts.
func TestAlertsModule(t *testing.T) {
	r := root(t)
	src, err := os.ReadFile(filepath.Join(r, "infra", "bicep", "modules", "alerts.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	module := string(src)

	var loaded []string
	for _, m := range loadRE.FindAllStringSubmatch(module, -1) {
		rel, err := filepath.Rel(r, filepath.Join(r, "infra", "bicep", "modules", m[1]))
		if err != nil {
			t.Fatal(err)
		}
		loaded = append(loaded, filepath.ToSlash(rel))
	}
	var files []string
	for _, dir := range []string{"alerts", "workbook"} {
		matches, err := filepath.Glob(filepath.Join(r, monitoringDir, dir, "*.kql"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range matches {
			rel, _ := filepath.Rel(r, f)
			files = append(files, filepath.ToSlash(rel))
		}
	}
	sort.Strings(loaded)
	sort.Strings(files)
	if !slices.Equal(loaded, files) {
		t.Errorf("alerts.bicep loads\n  %q\nbut infra/monitoring holds\n  %q", loaded, files)
	}
	if n := strings.Count(module, "loadTextContent('../../monitoring/alerts/"); n != strings.Count(module, "displayName: 'Token broker:") {
		t.Errorf("%d alert queries for %d alert rules", n, strings.Count(module, "displayName: 'Token broker:"))
	}
	if n := strings.Count(module, "Runbook: infra/README.md"); n != 1 || strings.Count(module, "${runbook}") != 6 {
		t.Errorf("every rule's description must carry the runbook line (%d definitions, %d uses)", n, strings.Count(module, "${runbook}"))
	}

	types := resourceTypeRE.FindAllStringSubmatch(module, -1)
	if len(types) == 0 {
		t.Fatal("no resource in alerts.bicep")
	}
	for _, m := range types {
		want, ok := apiVersions[m[1]]
		if !ok {
			t.Errorf("resource type %s is not one whose API version was verified (apiVersions)", m[1])
		} else if m[2] != want {
			t.Errorf("%s@%s; the verified stable version is %s", m[1], m[2], want)
		}
	}

	mainSrc, err := os.ReadFile(filepath.Join(r, "infra", "bicep", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"param deployAlerts bool = true", "module alerts 'modules/alerts.bicep' = if (deployAlerts) {"} {
		if !strings.Contains(string(mainSrc), want) {
			t.Errorf("main.bicep lacks %q", want)
		}
	}
}

// TestHostJSONKeepsAuditLines: the alerts read the handler's stdout lines,
// which the host logs as traces of category Host.Function.Console at
// Information. host.json must not filter that category out, and adaptive
// sampling (on by default) must not drop traces, or an alert could miss
// the one line that matters.
func TestHostJSONKeepsAuditLines(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Logging struct {
			LogLevel            map[string]string `json:"logLevel"`
			ApplicationInsights struct {
				SamplingSettings struct {
					IsEnabled     *bool  `json:"isEnabled"`
					ExcludedTypes string `json:"excludedTypes"`
				} `json:"samplingSettings"`
			} `json:"applicationInsights"`
		} `json:"logging"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	if lvl := h.Logging.LogLevel["Host.Function.Console"]; lvl != "Information" && lvl != "Debug" && lvl != "Trace" {
		t.Errorf(`logging.logLevel["Host.Function.Console"] = %q; the audit lines are logged at Information`, lvl)
	}
	s := h.Logging.ApplicationInsights.SamplingSettings
	if (s.IsEnabled == nil || *s.IsEnabled) && !slices.Contains(strings.Split(s.ExcludedTypes, ";"), "Trace") {
		t.Errorf("sampling is on and excludedTypes %q does not exclude Trace: audit lines could be sampled away", s.ExcludedTypes)
	}
}
