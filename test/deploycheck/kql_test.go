package deploycheck

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/contoso/databricks-token-broker/internal/audit"
	"github.com/contoso/databricks-token-broker/test/kql"
)

// monitoringDir holds every KQL query the alerts and the workbook run.
const monitoringDir = "infra/monitoring"

func kqlRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code, err := kql.Run(root(t), args...)
	if errors.Is(err, kql.ErrUnavailable) {
		unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	if code == 2 {
		t.Fatalf("kqlcheck could not run: %s%s", stdout, stderr)
	}
	return stdout, code
}

func describeQueries(t *testing.T) []kql.Query {
	t.Helper()
	qs, err := kql.Describe(root(t), monitoringDir)
	if errors.Is(err, kql.ErrUnavailable) {
		unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	return qs
}

// TestKQLQueriesParse proves that every query under infra/monitoring parses
// and analyses without a single diagnostic with Microsoft's Kusto parser,
// against the schema of the tables it reads (infra/monitoring/tables.json).
func TestKQLQueriesParse(t *testing.T) {
	out, code := kqlRun(t, monitoringDir)
	if code != 0 {
		t.Fatalf("kqlcheck found problems:\n%s", out)
	}
	qs := describeQueries(t)
	var alerts, panels int
	for _, q := range qs {
		switch {
		case strings.Contains(q.File, "/alerts/"):
			alerts++
		case strings.Contains(q.File, "/workbook/"):
			panels++
		}
	}
	if alerts < 5 || panels < 6 {
		t.Errorf("%d alert and %d workbook queries under %s; want at least 5 and 6", alerts, panels, monitoringDir)
	}
	t.Logf("%s", strings.TrimSpace(out))
}

// TestKQLCheckRejectsBrokenCases proves the check is not vacuous: each case
// under tools/kqlcheck/cases (an unknown column, function or table, a
// syntax error, a type mismatch, a missing header) is rejected with the
// diagnostic it names.
func TestKQLCheckRejectsBrokenCases(t *testing.T) {
	out, code := kqlRun(t, "--cases", filepath.Join("tools", "kqlcheck", "cases"))
	if code != 0 {
		t.Fatalf("a broken case was not rejected as expected:\n%s", out)
	}
	if !strings.Contains(out, "7 passed, 0 failed") {
		t.Errorf("cases: %s", out)
	}
}

// TestKQLQueriesUseTheAuditVocabulary ties the queries to the binary's
// event table: every event a query compares with, and every field it
// reads from an audit line, is one internal/audit declares. Renaming an
// event or a field in Go without the queries (or the other way round)
// fails here, instead of muting an alert.
func TestKQLQueriesUseTheAuditVocabulary(t *testing.T) {
	for _, q := range describeQueries(t) {
		if slices.Contains(q.Tables, "AppTraces") && len(q.Audit) == 0 {
			t.Errorf("%s reads AppTraces but binds no parse_json(Message): it cannot select audit lines by event", q.File)
		}
		for _, e := range q.Events {
			if !audit.Known(audit.Event(e)) {
				t.Errorf("%s selects event %q, which the binary never writes (internal/audit.Events)", q.File, e)
			}
		}
		for _, f := range q.Fields {
			if _, ok := audit.Fields[f]; !ok {
				t.Errorf("%s reads field %q, which no audit line carries (internal/audit.Fields)", q.File, f)
			}
		}
		if strings.Contains(q.File, "/alerts/") && len(q.Events) == 0 {
			t.Errorf("%s: an alert query must select its lines by event name", q.File)
		}
	}
}
