package audit

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var readmeRow = regexp.MustCompile("^\\| `([a-z_.]+)` \\| ([^|]+) \\| (.+) \\|$")

// TestREADMEListsEveryEvent keeps README.md's "Log events" table equal to
// Events: the names, what they mean and the fields every line carries.
func TestREADMEListsEveryEvent(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var got []Spec
	for _, line := range strings.Split(string(b), "\n") {
		m := readmeRow.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil || !strings.Contains(m[1], ".") {
			continue
		}
		var fields []string
		for _, f := range strings.Split(m[3], ",") {
			fields = append(fields, strings.Trim(strings.TrimSpace(f), "`"))
		}
		got = append(got, Spec{Event: Event(m[1]), Doc: strings.TrimSpace(m[2]), Fields: fields})
	}
	if d := cmp.Diff(Events, got); d != "" {
		t.Errorf("README.md event table differs from audit.Events (-code +README):\n%s", d)
	}
}

// TestEventsAreWellFormed: unique lower-case names, and every guaranteed
// field documented.
func TestEventsAreWellFormed(t *testing.T) {
	name := regexp.MustCompile(`^[a-z]+\.[a-z_]+$`)
	seen := map[Event]bool{}
	for _, s := range Events {
		if !name.MatchString(string(s.Event)) || seen[s.Event] {
			t.Errorf("event %q: names are <subject>.<outcome>, unique", s.Event)
		}
		seen[s.Event] = true
		for _, f := range s.Fields {
			if _, ok := Fields[f]; !ok {
				t.Errorf("%s guarantees field %q, which Fields does not document", s.Event, f)
			}
		}
		if !Known(s.Event) {
			t.Errorf("Known(%q) = false", s.Event)
		}
	}
	if Known("token.created") {
		t.Error(`Known("token.created") = true`)
	}
}
