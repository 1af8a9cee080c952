// Package kql runs tools/kqlcheck, the offline Kusto check of the queries
// under infra/monitoring, for the tests: it tells which tables, audit
// events and audit fields each query uses, and what the Kusto parser and
// analyser found wrong with it.
package kql

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Query is what kqlcheck --describe says of one .kql file.
type Query struct {
	File        string       `json:"file"`
	Tables      []string     `json:"tables"`
	Audit       []string     `json:"audit"`  // variables bound to parse_json(Message)
	Events      []string     `json:"events"` // event names the query compares the event field with
	Fields      []string     `json:"fields"` // audit fields the query reads
	Diagnostics []Diagnostic `json:"diagnostics"`
}

// Diagnostic is one problem the Kusto analyser (or the header check) found.
type Diagnostic struct {
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
}

// ErrUnavailable: node or the npm package is missing (make deps).
var ErrUnavailable = errors.New("kqlcheck is not available")

// Tool returns the node binary and kqlcheck.js under root, or ErrUnavailable.
func Tool(root string) (node, script string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("%w: node is not on PATH", ErrUnavailable)
	}
	dir := filepath.Join(root, "tools", "kqlcheck")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@kusto", "language-service-next", "package.json")); err != nil {
		return "", "", fmt.Errorf("%w: tools/kqlcheck/node_modules is missing; run: make deps", ErrUnavailable)
	}
	return node, filepath.Join(dir, "kqlcheck.js"), nil
}

// Run runs kqlcheck with args in root and returns its output and exit code.
func Run(root string, args ...string) (stdout, stderr string, code int, err error) {
	node, script, err := Tool(root)
	if err != nil {
		return "", "", -1, err
	}
	cmd := exec.Command(node, append([]string{script}, args...)...)
	cmd.Dir = root
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), errOut.String(), exit.ExitCode(), nil
	}
	if err != nil {
		return "", "", -1, err
	}
	return out.String(), errOut.String(), 0, nil
}

// Describe returns kqlcheck's description of the .kql files (or the ones
// under directories) at paths, relative to root.
func Describe(root string, paths ...string) ([]Query, error) {
	stdout, stderr, code, err := Run(root, append([]string{"--describe"}, paths...)...)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("kqlcheck --describe: exit %d: %s", code, stderr)
	}
	var qs []Query
	if err := json.Unmarshal([]byte(stdout), &qs); err != nil {
		return nil, fmt.Errorf("kqlcheck --describe: %w", err)
	}
	return qs, nil
}

// DescribeFile is Describe for one file.
func DescribeFile(root, file string) (Query, error) {
	qs, err := Describe(root, file)
	if err != nil {
		return Query{}, err
	}
	if len(qs) != 1 {
		return Query{}, fmt.Errorf("kqlcheck described %d queries for %s", len(qs), file)
	}
	return qs[0], nil
}
