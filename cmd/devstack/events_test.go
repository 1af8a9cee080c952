package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCountEvents(t *testing.T) {
	logs := strings.Join([]string{
		`{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"create done","event":"token.issued","token_id":"1"}`,
		`{"time":"2026-01-01T00:00:01Z","level":"INFO","msg":"create done","event":"token.reused","token_id":"1"}`,
		`{"time":"2026-01-01T00:00:02Z","level":"INFO","msg":"listening"}`,
		`not json at all`,
		`{"level":"WARN","msg":"create refused","event":"token.refused","code":"NotAuthorized"}`,
		`{"level":"INFO","msg":"event: token issued","event":"token.issued","token_id":"2"}`,
		``,
	}, "\n")
	got := countEvents([]byte(logs))
	want := []eventCount{{"token.issued", 2}, {"token.refused", 1}, {"token.reused", 1}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("countEvents (-want +got):\n%s", d)
	}
	var out bytes.Buffer
	printEvents(&out, got)
	for _, s := range []string{"from the same 4 audit lines", "token.issued       2", "token.refused      1"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
}
