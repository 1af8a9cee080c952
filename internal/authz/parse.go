package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/contoso/databricks-token-broker/internal/input"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// LoadPolicy reads the AUTHZ_POLICY setting: empty means no policy (nil,
// nil); "@path" reads the policy from a file with readFile (os.ReadFile when
// nil; a relative path is relative to the working directory, the app root);
// anything else is the policy's JSON. Errors are one per problem, joined.
func LoadPolicy(setting string, readFile func(string) ([]byte, error)) (*Policy, error) {
	setting = strings.TrimSpace(setting)
	if setting == "" {
		return nil, nil
	}
	path, isFile := strings.CutPrefix(setting, "@")
	if !isFile {
		return ParsePolicy([]byte(setting))
	}
	path = strings.TrimSpace(path)
	if path == "" {
		return nil, errors.New(`"@" must be followed by the path of the policy file`)
	}
	if readFile == nil {
		readFile = os.ReadFile
	}
	data, err := readFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("reading policy file %s: %v", path, err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, prefixErrors(path, err)
	}
	return p, nil
}

func prefixErrors(prefix string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s: %w", prefix, e)
	}
	return errors.Join(out...)
}

// fields checks an object's keys against the known ones (reporting unknown
// and repeated keys) and returns the known members by key.
func fields(ps *input.Problems, path string, raw json.RawMessage, known ...string) (map[string]json.RawMessage, bool) {
	ms, ok := input.Members(raw)
	if !ok {
		if path == "" {
			path = "policy"
		}
		ps.Add(path, "must be a JSON object")
		return nil, false
	}
	out := make(map[string]json.RawMessage, len(ms))
	for _, m := range ms {
		at := join(path, m.Key)
		switch {
		case !slices.Contains(known, m.Key):
			if i := slices.IndexFunc(known, func(k string) bool { return strings.EqualFold(k, m.Key) }); i >= 0 {
				ps.Add(at, "unknown field %q (field names are case-sensitive: did you mean %q?)", m.Key, known[i])
			} else {
				ps.Add(at, "unknown field %q; want one of %s", m.Key, strings.Join(known, ", "))
			}
		case out[m.Key] != nil:
			ps.Add(at, "appears more than once")
		default:
			out[m.Key] = m.Value
		}
	}
	return out, true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// array decodes a required, non-empty JSON array.
func array(ps *input.Problems, path string, raw json.RawMessage, what string) []json.RawMessage {
	if raw == nil {
		ps.Add(path, "is required (%s)", what)
		return nil
	}
	var items []json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &items) != nil {
		ps.Add(path, "must be an array (%s)", what)
		return nil
	}
	if len(items) == 0 {
		ps.Add(path, "must not be empty (%s)", what)
	}
	return items
}

func str(raw json.RawMessage) (string, bool) {
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// ParsePolicy parses and validates a policy (see the package comment for
// the format). Every problem is reported, one error each, joined with
// errors.Join; each names its place (rules[1].workspaces[0]: …) and none
// holds more of the input than the offending field's own value.
func ParsePolicy(data []byte) (*Policy, error) {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return nil, errors.New("the policy is empty")
	case len(data) > maxPolicySize:
		return nil, fmt.Errorf("the policy is larger than %d bytes", maxPolicySize)
	case !utf8.Valid(data):
		return nil, errors.New("the policy is not UTF-8 text")
	case !json.Valid(data):
		var v any
		err := json.Unmarshal(data, &v)
		return nil, fmt.Errorf("the policy is not valid JSON: %s", jsonProblem(err))
	}
	var ps input.Problems
	top, ok := fields(&ps, "", data, "version", "description", "rules")
	if !ok {
		return nil, ps.Err()
	}
	switch raw := top["version"]; {
	case raw == nil:
		ps.Add("version", "is required (%d)", PolicyVersion)
	default:
		var v int
		if err := json.Unmarshal(raw, &v); err != nil || v != PolicyVersion {
			ps.Add("version", "must be %d; got %s", PolicyVersion, tokens.Clip(string(raw), 80))
		}
	}
	if raw := top["description"]; raw != nil {
		checkDescription(&ps, "description", raw)
	}
	p := &Policy{}
	for i, raw := range array(&ps, "rules", top["rules"], "the rules that grant access") {
		if r, ok := parseRule(&ps, fmt.Sprintf("rules[%d]", i), raw); ok {
			p.rules = append(p.rules, r)
		}
	}
	if len(ps) > 0 {
		return nil, ps.Err()
	}
	return p, nil
}

func checkDescription(ps *input.Problems, path string, raw json.RawMessage) {
	s, ok := str(raw)
	switch {
	case !ok:
		ps.Add(path, "must be a string")
	case utf8.RuneCountInString(s) > 500:
		ps.Add(path, "must be at most 500 characters")
	}
}

func parseRule(ps *input.Problems, path string, raw json.RawMessage) (rule, bool) {
	before := len(*ps)
	f, ok := fields(ps, path, raw, "description", "principals", "actions", "workspaces", "maxLifetime", "scopes", "requireScopes")
	if !ok {
		return rule{}, false
	}
	var r rule
	if raw := f["description"]; raw != nil {
		checkDescription(ps, path+".description", raw)
	}
	for j, item := range array(ps, path+".principals", f["principals"], `objects {"objectId"|"appId"|"appRole": …} or "queue"`) {
		at := fmt.Sprintf("%s.principals[%d]", path, j)
		spec, ok := parsePrincipal(ps, at, item)
		if !ok {
			continue
		}
		if slices.Contains(r.principals, spec) {
			ps.Add(at, "repeats an earlier principal of this rule")
			continue
		}
		r.principals = append(r.principals, spec)
	}
	for j, item := range array(ps, path+".actions", f["actions"], actionNames()) {
		at := fmt.Sprintf("%s.actions[%d]", path, j)
		name, ok := str(item)
		a := tokens.Action(name)
		switch {
		case !ok:
			ps.Add(at, "must be a string: %s", actionNames())
		case !slices.Contains(Actions, a):
			ps.Add(at, "unknown action %q; want %s", tokens.Clip(name, 80), actionNames())
		case slices.Contains(r.actions, a):
			ps.Add(at, "repeats action %q", a)
		default:
			r.actions = append(r.actions, a)
		}
	}
	for j, item := range array(ps, path+".workspaces", f["workspaces"], "workspace resource id patterns") {
		at := fmt.Sprintf("%s.workspaces[%d]", path, j)
		s, ok := str(item)
		if !ok {
			ps.Add(at, "must be a string")
			continue
		}
		w, err := parseScope(s)
		if err != nil {
			ps.Add(at, "%v", err)
			continue
		}
		if slices.Contains(r.workspaces, w) {
			ps.Add(at, "repeats an earlier workspace pattern of this rule")
			continue
		}
		r.workspaces = append(r.workspaces, w)
	}
	if raw := f["maxLifetime"]; raw != nil {
		at := path + ".maxLifetime"
		d, err := parseLifetime(raw)
		switch {
		case err != nil:
			ps.Add(at, "%v", err)
		case !slices.Contains(r.actions, ActionCreate) && len(r.actions) > 0:
			ps.Add(at, "applies only to rules that grant %q", ActionCreate)
		default:
			r.maxLifetime = d
		}
	}
	grantsCreate := slices.Contains(r.actions, ActionCreate) || len(r.actions) == 0
	if raw := f["scopes"]; raw != nil {
		for j, item := range array(ps, path+".scopes", raw, `scope patterns, e.g. "sql:read*"`) {
			at := fmt.Sprintf("%s.scopes[%d]", path, j)
			s, ok := str(item)
			if !ok {
				ps.Add(at, "must be a string")
				continue
			}
			if err := parseScopePattern(s); err != nil {
				ps.Add(at, "%v", err)
				continue
			}
			if slices.Contains(r.scopes, s) {
				ps.Add(at, "repeats scope pattern %q", s)
				continue
			}
			r.scopes = append(r.scopes, s)
		}
		if !grantsCreate {
			ps.Add(path+".scopes", "applies only to rules that grant %q", ActionCreate)
		}
	}
	if raw := f["requireScopes"]; raw != nil {
		if json.Unmarshal(raw, &r.requireScopes) != nil || isNull(raw) {
			ps.Add(path+".requireScopes", "must be true or false")
		} else if !grantsCreate {
			ps.Add(path+".requireScopes", "applies only to rules that grant %q", ActionCreate)
		}
	}
	return r, len(*ps) == before
}

// parseScopePattern checks a rule's scope pattern: a scope (area and
// modifiers, as a request names them) in which '*' stands for any run of
// characters, e.g. "sql:read*", "unity-catalog", "*". A pattern without
// '*' must be a scope a request could name, so a typo (sql:write) is
// caught at start instead of silently matching nothing.
func parseScopePattern(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > 128:
		return errors.New("is longer than 128 characters")
	case strings.ToLower(s) != s:
		return fmt.Errorf("%q must be lower case, as Databricks writes scopes", tokens.Clip(s, 80))
	case !strings.Contains(s, "*"):
		if err := tokens.ValidScope(s); err != nil {
			return err
		}
		return nil
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == ':' || c == '*') {
			return fmt.Errorf("%q may hold only lower-case letters, digits, '-', ':' and '*'", tokens.Clip(s, 80))
		}
	}
	return nil
}

func parsePrincipal(ps *input.Problems, path string, raw json.RawMessage) (principalSpec, bool) {
	if s, ok := str(raw); ok {
		if s == PrincipalQueue {
			return principalSpec{kind: byQueue}, true
		}
		ps.Add(path, `unknown principal %q; want "queue" or an object {"objectId"|"appId"|"appRole": …}`, tokens.Clip(s, 80))
		return principalSpec{}, false
	}
	before := len(*ps)
	f, ok := fields(ps, path, raw, "objectId", "appId", "appRole")
	if !ok {
		return principalSpec{}, false
	}
	if len(f) != 1 {
		if len(*ps) == before {
			ps.Add(path, `must have exactly one of "objectId", "appId", "appRole"; has %d`, len(f))
		}
		return principalSpec{}, false
	}
	if len(*ps) != before {
		return principalSpec{}, false
	}
	for key, v := range f {
		at := path + "." + key
		s, ok := str(v)
		if !ok {
			ps.Add(at, "must be a string")
			return principalSpec{}, false
		}
		switch key {
		case "objectId", "appId":
			if !tokens.IsGUID(s) {
				ps.Add(at, "%q is not a GUID", tokens.Clip(s, 80))
				return principalSpec{}, false
			}
			kind := byObjectID
			if key == "appId" {
				kind = byAppID
			}
			return principalSpec{kind: kind, value: strings.ToLower(s)}, true
		case "appRole":
			if err := validAppRole(s); err != nil {
				ps.Add(at, "%v", err)
				return principalSpec{}, false
			}
			return principalSpec{kind: byAppRole, value: s}, true
		}
	}
	return principalSpec{}, false
}

// validAppRole checks an app role value as Entra allows it: 1-249
// printable ASCII characters, no spaces, not starting with a dot.
func validAppRole(s string) error {
	if s == "" || len(s) > 249 {
		return fmt.Errorf("app role must be 1-249 characters")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("app role %q may hold only printable ASCII characters without spaces", tokens.Clip(s, 80))
		}
	}
	if s[0] == '.' {
		return fmt.Errorf("app role %q must not start with '.'", tokens.Clip(s, 80))
	}
	return nil
}

// parseLifetime reads maxLifetime: a Go duration string or a number of
// seconds, positive, whole seconds, at most MaxRuleLifetime.
func parseLifetime(raw json.RawMessage) (time.Duration, error) {
	var d time.Duration
	if s, ok := str(raw); ok {
		v, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return 0, fmt.Errorf("%q is not a Go duration (e.g. \"24h\", \"90m\") or a number of seconds", tokens.Clip(s, 80))
		}
		d = v
	} else {
		lit := strings.TrimSpace(string(raw))
		n, err := strconv.ParseInt(lit, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s is not a Go duration string or a whole number of seconds", tokens.Clip(lit, 80))
		}
		if n <= 0 || n > int64(MaxRuleLifetime/time.Second) {
			return 0, fmt.Errorf("%d seconds is out of range: must be 1 to %d", n, int64(MaxRuleLifetime/time.Second))
		}
		d = time.Duration(n) * time.Second
	}
	switch {
	case d <= 0:
		return 0, fmt.Errorf("%s must be positive", d)
	case d%time.Second != 0:
		return 0, fmt.Errorf("%s is not a whole number of seconds", d)
	case d > MaxRuleLifetime:
		return 0, fmt.Errorf("%s is above Databricks' limit of %s (730 days)", d, MaxRuleLifetime)
	}
	return d, nil
}

// parseScope parses a workspace pattern (see the package comment).
func parseScope(s string) (scopePattern, error) {
	const shape = "must be /subscriptions/<id|*>[/resourceGroups/<name>[/providers/Microsoft.Databricks/workspaces/<name>]], '*' allowed in names"
	if len(s) > 512 {
		return scopePattern{}, errors.New("is longer than 512 characters")
	}
	parts := strings.Split(s, "/")
	var w scopePattern
	switch len(parts) {
	case 3:
		w.depth = 1
	case 5:
		w.depth = 2
	case 9:
		w.depth = 3
	default:
		return scopePattern{}, fmt.Errorf("%q %s", s, shape)
	}
	if parts[0] != "" || !strings.EqualFold(parts[1], "subscriptions") ||
		(w.depth >= 2 && !strings.EqualFold(parts[3], "resourceGroups")) ||
		(w.depth == 3 && (!strings.EqualFold(parts[5], "providers") || !strings.EqualFold(parts[6], "Microsoft.Databricks") || !strings.EqualFold(parts[7], "workspaces"))) {
		return scopePattern{}, fmt.Errorf("%q %s", s, shape)
	}
	w.sub = strings.ToLower(parts[2])
	if w.sub != "*" && !tokens.IsGUID(w.sub) {
		return scopePattern{}, fmt.Errorf("%q: the subscription must be a GUID or *", s)
	}
	if w.depth >= 2 {
		w.group = strings.ToLower(parts[4])
		if !validSegment(w.group, 90, func(r byte) bool { return isAlnum(r) || strings.IndexByte("-_.()", r) >= 0 }) {
			return scopePattern{}, fmt.Errorf("%q: the resource group must be 1-90 letters, digits, '-', '_', '.', '(', ')' or '*'", s)
		}
	}
	if w.depth == 3 {
		w.name = strings.ToLower(parts[8])
		if !validSegment(w.name, 64, func(r byte) bool { return isAlnum(r) || r == '-' || r == '_' }) {
			return scopePattern{}, fmt.Errorf("%q: the workspace name must be 1-64 letters, digits, '-', '_' or '*'", s)
		}
	}
	return w, nil
}

func isAlnum(r byte) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// validSegment checks a name segment: 1-max characters, each '*' or one
// ok accepts. (Non-ASCII letters, which ARM allows in resource group
// names, are not accepted here; use '*' for them.)
func validSegment(s string, max int, ok func(byte) bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '*' && !ok(s[i]) {
			return false
		}
	}
	return true
}
