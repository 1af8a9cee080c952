package deploycheck

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/contoso/databricks-token-broker/devstack/kit/kittest"
)

// root is the repository root, two levels above this package.
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// unavailable fails a test whose tool is missing: a check that skipped
// itself would pass having checked nothing.
func unavailable(t *testing.T, why string) {
	t.Helper()
	kittest.Require(t, errors.New(why))
}

// checker returns the node command and the bicepcheck script, or skips.
func checker(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node is not on PATH; the Bicep check needs Node.js 18+")
	}
	dir := filepath.Join(root(t), "tools", "bicepcheck")
	for _, dep := range []string{"web-tree-sitter", "tree-sitter-bicep"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", dep, "package.json")); err != nil {
			unavailable(t, "tools/bicepcheck/node_modules/"+dep+" is missing; run: npm ci --prefix tools/bicepcheck")
		}
	}
	return node, filepath.Join(dir, "bicepcheck.js")
}

// runChecker runs bicepcheck.js with args from the repository root and
// returns its stdout, stderr and exit code.
func runChecker(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	node, script := checker(t)
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Dir = root(t)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errOut.String(), 0
	case errors.As(err, &exit):
		return out.String(), errOut.String(), exit.ExitCode()
	default:
		t.Fatalf("running %s: %v", script, err)
		return "", "", -1
	}
}
