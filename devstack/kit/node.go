package kit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// NodeEnv names the environment variable that overrides the node
// executable of every stand-in that is a Node.js project (the Service Bus
// broker, Azurite).
const NodeEnv = "DEVSTACK_NODE"

// FindNode returns the node executable a Node.js stand-in runs: explicit,
// else $DEVSTACK_NODE, else node on PATH. notFound is the stand-in's own
// "node not found" error, wrapped with what was looked for, so that callers
// can tell a machine without Node.js from a broken stand-in.
func FindNode(explicit string, notFound error) (string, error) {
	name := explicit
	if name == "" {
		name = os.Getenv(NodeEnv)
	}
	if name == "" {
		name = "node"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (looked for %q: %v); install Node.js 18+ or set %s", notFound, name, err, NodeEnv)
	}
	return p, nil
}

// ProjectDir returns where a stand-in's Node.js project (its script and
// node_modules) is: $env when set, else the folder sub beside the source
// file of the stand-in that calls it. The source path is what the
// compiler recorded, so the tests (run in their package's folder) and the
// demo (run from the repository root) find the same folder.
func ProjectDir(env, sub string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(1)
	if !ok {
		return sub
	}
	return filepath.Join(filepath.Dir(file), sub)
}

// NodeProject is a stand-in that is a Node.js project: the folder it lives
// in, the script it runs and the npm package whose presence shows that
// `make deps` has installed it, with the stand-in's own errors for a
// machine without Node.js and for a project not yet installed.
type NodeProject struct {
	// Env names the variable that overrides the folder; DefaultDir gives
	// it otherwise (the stand-in's ProjectDir, called from its own file).
	Env        string
	DefaultDir func() string
	Script     string // relative to the folder
	Package    string // in the folder's node_modules
	NoNode     error  // wrapped when there is no node executable
	NoPackages error  // wrapped when Package is missing
}

// Locate returns the node executable and the project folder a start uses
// (node and dir when given), or why the stand-in cannot start here.
func (p NodeProject) Locate(node, dir string) (nodePath, folder string, err error) {
	if nodePath, err = FindNode(node, p.NoNode); err != nil {
		return "", "", err
	}
	if dir == "" {
		dir = p.DefaultDir()
	}
	if err := p.Installed(dir); err != nil {
		return "", "", err
	}
	return nodePath, dir, nil
}

// Available reports why the project could not start here with its
// defaults (no node: NoNode; not installed: NoPackages), or nil.
func (p NodeProject) Available() error {
	_, _, err := p.Locate("", "")
	return err
}

// Installed reports whether the project's script and npm package are in
// dir (the default folder when empty).
func (p NodeProject) Installed(dir string) error {
	if dir == "" {
		dir = p.DefaultDir()
	}
	script := filepath.Join(dir, p.Script)
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%s not found (set %s to the folder holding %s): %w", script, p.Env, p.Script, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", p.Package, "package.json")); err != nil {
		return fmt.Errorf("%w; %s is missing", p.NoPackages, filepath.Join(dir, "node_modules", p.Package))
	}
	return nil
}
