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
