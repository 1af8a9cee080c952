package tokens

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scopes is what a token may call (contract section 6). Databricks API
// scopes name an area ("sql", "unity-catalog", "jobs") and optional
// modifiers that narrow it (":read", ":restricted-query"). A token without
// scopes may call every API its identity may: the service's identity is
// often a workspace admin, so scopes are how a caller asks for less.
type Scopes struct {
	// List is the scopes as the caller wrote them; nil means unscoped.
	List []string
	// Autoscope asks Databricks to narrow the token to the APIs it is seen
	// to use. While Databricks observes, the token holds all-apis, so the
	// policy treats an autoscoped request like an unscoped one.
	Autoscope bool
}

// Unrestricted reports whether the token may call every API its identity
// may: it names no scopes, or Databricks is inferring them (autoscope).
func (s Scopes) Unrestricted() bool { return len(s.List) == 0 || s.Autoscope }

// String is the scopes joined with commas, for log lines ("" when none).
func (s Scopes) String() string { return strings.Join(s.List, ",") }

// Scope limits (contract section 6: 1…32 scopes).
const (
	MaxScopes = 32
	// maxAreaLength bounds an area name; Databricks' are far shorter
	// ("access-management" is among the longest).
	maxAreaLength = 64
)

// Scope areas that let a token mint tokens: "authentication" covers the
// Token API, and "all-apis" covers everything. The policy grants them only
// to a rule that names them literally.
const (
	ScopeAuthentication = "authentication"
	ScopeAllAPIs        = "all-apis"
)

// Modifiers Databricks defines, in the order it writes them
// (sql:read:restricted-query). restricted-query applies to sql only.
var modifiers = []string{"read", "restricted-query"}

// Area returns a scope's area: the part before the first ':'.
func Area(scope string) string {
	area, _, _ := strings.Cut(scope, ":")
	return area
}

// Privileged reports whether a scope lets its token mint tokens of any
// scope (its area is authentication or all-apis).
func Privileged(scope string) bool {
	a := Area(scope)
	return a == ScopeAuthentication || a == ScopeAllAPIs
}

// ValidScope checks one scope's shape: a lower-case area (letters, digits,
// single hyphens between them, at most 64 characters), then optionally
// ":read" and ":restricted-query" (sql only), each once, in that order.
// The area is not checked against Databricks' list, which grows; Databricks
// itself refuses an area it does not know.
func ValidScope(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if strings.ToLower(s) != s {
		return fmt.Errorf("%q must be lower case, as Databricks writes scopes (e.g. %q)", clipScope(s), strings.ToLower(clipScope(s)))
	}
	parts := strings.Split(s, ":")
	area := parts[0]
	if !validArea(area) {
		return fmt.Errorf("%q is not area[:modifier]…: the area must be 1-%d lower-case letters and digits, words joined by single hyphens (e.g. sql, unity-catalog)", clipScope(s), maxAreaLength)
	}
	next := 0 // index into modifiers: each at most once, in order
	for _, m := range parts[1:] {
		i := slices.Index(modifiers, m)
		switch {
		case i < 0:
			return fmt.Errorf("%q has the modifier %q; Databricks defines :read and :restricted-query", clipScope(s), clipScope(m))
		case i < next:
			return fmt.Errorf("%q repeats or reorders its modifiers; write them once each, as Databricks does (e.g. sql:read:restricted-query)", clipScope(s))
		case m == "restricted-query" && area != "sql":
			return fmt.Errorf("%q: the :restricted-query modifier applies only to the sql scope", clipScope(s))
		}
		next = i + 1
	}
	return nil
}

func validArea(a string) bool {
	if a == "" || len(a) > maxAreaLength || a[0] == '-' || a[len(a)-1] == '-' || strings.Contains(a, "--") {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return a[0] >= 'a' && a[0] <= 'z'
}

// clipScope shortens a value quoted in a message.
func clipScope(s string) string {
	if r := []rune(s); len(r) > 80 {
		return string(r[:80]) + "…"
	}
	return s
}

// ParseScopeList reads a comma-separated list of scopes (a setting such
// as EVENT_TOKEN_SCOPES). Empty means unscoped (nil). Every problem is
// reported, one error each.
func ParseScopeList(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	var out []string
	var errs []error
	for i, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		switch err := ValidScope(s); {
		case err != nil:
			errs = append(errs, fmt.Errorf("scope %d: %v", i+1, err))
		case slices.Contains(out, s):
			errs = append(errs, fmt.Errorf("scope %d: %q is listed twice", i+1, s))
		default:
			out = append(out, s)
		}
	}
	if len(out)+len(errs) > MaxScopes {
		errs = append(errs, fmt.Errorf("lists %d scopes; the most a token may have is %d", len(out)+len(errs), MaxScopes))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
