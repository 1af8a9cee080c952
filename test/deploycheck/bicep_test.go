package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBicepTemplatesPass proves that every template under infra/bicep
// parses with the Bicep grammar and has no problem the checker knows:
// undeclared identifiers, module calls that miss or invent parameters, bad
// resource types, duplicate symbols, secrets as parameters or in app settings.
func TestBicepTemplatesPass(t *testing.T) {
	dir := filepath.Join(root(t), "infra", "bicep")
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".bicep") {
			rel, _ := filepath.Rel(root(t), p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, filepath.Join("infra", "bicep", "main.bicep")) {
		t.Fatalf("no infra/bicep/main.bicep among %q", files)
	}
	stdout, stderr, code := runChecker(t, files...)
	if code != 0 {
		t.Fatalf("bicepcheck exit %d on %d file(s):\n%s%s", code, len(files), stdout, stderr)
	}
	t.Logf("%s", strings.TrimSpace(stdout))
}

// requiredCases are the broken variants the checker must keep rejecting.
var requiredCases = []string{
	"misspelled-keyword", "truncated-file", "missing-module-param", "unknown-module-param",
	"undeclared-identifier", "no-api-version", "wrong-module-path", "duplicate-symbol", "secure-param",
	"listkeys-in-app-settings", "connection-string-setting", "unknown-function", "missing-loaded-file",
}

// TestBicepCheckRejectsBrokenCases proves the checker is not vacuous: each
// case under tools/bicepcheck/cases is rejected with the problem its
// `expect` file names, and the good case (valid Bicep using every construct
// the templates use) passes.
func TestBicepCheckRejectsBrokenCases(t *testing.T) {
	dir := filepath.Join(root(t), "tools", "bicepcheck", "cases")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, e := range entries {
		if e.IsDir() {
			cases = append(cases, e.Name())
		}
	}
	for _, need := range append([]string{"good"}, requiredCases...) {
		if !slices.Contains(cases, need) {
			t.Errorf("case %s is missing from tools/bicepcheck/cases", need)
		}
	}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join(dir, name, "expect"))
			if err != nil {
				t.Fatal(err)
			}
			expect := strings.TrimSpace(string(raw))
			file := filepath.Join("tools", "bicepcheck", "cases", name, "main.bicep")
			stdout, stderr, code := runChecker(t, file)
			if name == "good" {
				if code != 0 {
					t.Fatalf("valid Bicep rejected (exit %d):\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != 1 {
				t.Fatalf("exit %d, want 1 (rejected):\n%s%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, expect) {
				t.Fatalf("problems do not mention %q:\n%s", expect, stdout)
			}
			// Every problem line is file:line:col: message.
			for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
				if strings.HasSuffix(line, "file(s)") {
					continue
				}
				if parts := strings.SplitN(line, ":", 4); len(parts) < 4 || !strings.HasSuffix(parts[0], ".bicep") {
					t.Errorf("problem line %q is not file:line:col: message", line)
				}
			}
		})
	}
}
