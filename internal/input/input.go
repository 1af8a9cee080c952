// Package input is what the service's strict readers of outside input
// share: the request decoder (tokens), the policy parser (authz) and the
// settings (config). Each reports every problem it finds, naming where,
// so that whoever wrote the input hears of all of them at once rather
// than one per attempt; Problems collects them. The two JSON readers walk
// an object member by member, in document order and seeing a repeated
// name as often as it appears, with Members; each then says in its own
// words what it makes of an unknown or repeated name.
package input

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Problem is one thing wrong with an input, at the place it names: a
// field of a request, a setting, a path in the policy.
type Problem struct {
	At, Message string
}

// Error is "at: message", the form the settings and the policy report.
func (p Problem) Error() string { return p.At + ": " + p.Message }

// Problems collects every problem with one input, in the order found.
type Problems []Problem

// Add records a problem at at; the message is format with args.
func (ps *Problems) Add(at, format string, args ...any) {
	*ps = append(*ps, Problem{At: at, Message: fmt.Sprintf(format, args...)})
}

// Err joins the problems, one error ("at: message") each, or is nil when
// there are none.
func (ps Problems) Err() error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Member is one member of a JSON object.
type Member struct {
	Key   string
	Value json.RawMessage
}

// Members splits a JSON object into its members, in document order, a
// repeated key as often as it appears. ok is false when raw is not an
// object. raw must be valid JSON.
func Members(raw []byte) (ms []Member, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		ms = append(ms, Member{key, v})
	}
	return ms, true
}
