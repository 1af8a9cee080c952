package input

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProblems(t *testing.T) {
	t.Parallel()
	var ps Problems
	if ps.Err() != nil {
		t.Fatal("no problems, yet an error")
	}
	ps.Add("LOG_LEVEL", "%q is not one of %s", "loud", "debug, info")
	ps.Add("rules[0].actions", "must not be empty")
	err := ps.Err()
	if got, want := err.Error(), "LOG_LEVEL: \"loud\" is not one of debug, info\nrules[0].actions: must not be empty"; got != want {
		t.Errorf("Err = %q, want %q", got, want)
	}
	var p Problem
	if !errors.As(err, &p) || p.At != "LOG_LEVEL" {
		t.Errorf("the first problem is not reachable: %v", p)
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw    string
		want   []Member
		wantOK bool
	}{
		{`{"b":1,"a":{"x":[2]},"b":"again"}`, []Member{{"b", []byte(`1`)}, {"a", []byte(`{"x":[2]}`)}, {"b", []byte(`"again"`)}}, true},
		{`{}`, nil, true},
		{`[{"a":1}]`, nil, false},
		{`null`, nil, false},
		{`"{}"`, nil, false},
	}
	for _, tt := range tests {
		got, ok := Members([]byte(tt.raw))
		if d := cmp.Diff(tt.want, got); d != "" || ok != tt.wantOK {
			t.Errorf("Members(%s): ok %v (-want +got):\n%s", tt.raw, ok, d)
		}
	}
}
