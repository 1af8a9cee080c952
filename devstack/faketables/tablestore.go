// Package faketables runs a local stand-in for Azure Table Storage:
// Azurite's table service (npm package azurite, pinned in
// azurite/package.json and installed by `make deps`) in a Node.js child
// process, in memory, on 127.0.0.1. The ledger's aztables client talks to it
// through the connection string ConnectionString returns, exactly as it
// talks to a storage account: Azurite answers conditional inserts of an
// existing entity with 409 EntityAlreadyExists and stale ETags with 412
// UpdateConditionNotSatisfied, as Azure does, and supports entity group
// transactions.
package faketables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// Azurite's well-known development account. The key is public (it is in
// Azurite's documentation) and accepted by every copy of Azurite.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Options configure Start.
type Options struct {
	// Dir holds start.js and node_modules. Empty means $DEVSTACK_AZURITE_DIR,
	// else the azurite/ directory beside this package's source.
	Dir string
	// NodePath is the node executable. Empty means $DEVSTACK_NODE, else
	// node on PATH.
	NodePath string
	// Log receives Azurite's output; nil discards it. The last few KiB are
	// kept either way and quoted in start-up errors.
	Log io.Writer
	// AccessLog makes Azurite log every request (to Log).
	AccessLog bool
	// StartTimeout bounds the wait for the service to listen (default
	// 20 s), in addition to ctx.
	StartTimeout time.Duration
}

// Server is a running Azurite table service.
type Server struct {
	proc *kit.NodeProcess
	port int
	dir  string // Azurite's working directory, removed by Close
}

// Project is Azurite as a Node.js project: where Start finds it (Options.Dir,
// else $DEVSTACK_AZURITE_DIR, else azurite/ beside this file) and how a
// test asks whether it can start here (Project.Available).
// Its errors (Project.NoNode, Project.NoPackages) are wrapped by Start.
var Project = kit.NodeProject{
	Env:        "DEVSTACK_AZURITE_DIR",
	DefaultDir: func() string { return kit.ProjectDir("DEVSTACK_AZURITE_DIR", "azurite") },
	Script:     "start.js",
	Package:    "azurite",
	NoNode:     errors.New("tablestore: node (Node.js) not found"),
	NoPackages: errors.New("tablestore: Azurite is not installed (run: make deps, or npm ci --prefix devstack/faketables/azurite)"),
}

// Start launches the table service on a free loopback port and waits until
// it accepts connections. It lives until Close, or until this process
// exits (start.js quits when its stdin closes). ctx bounds only the start.
func Start(ctx context.Context, opts Options) (*Server, error) {
	node, dir, err := Project.Locate(opts.NodePath, opts.Dir)
	if err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The port is chosen here and handed to Azurite, which cannot report a
	// port of its own choosing; another process may take it in between,
	// so a start that loses that race is tried again on another port.
	var lastErr error
	for range 3 {
		s, err := start(ctx, node, dir, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddressInUse) || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

var errAddressInUse = errors.New("tablestore: port taken")

func start(ctx context.Context, node, dir string, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// Azurite refuses a --location together with --inMemoryPersistence and
	// otherwise works in its current directory: give it an empty one, so
	// nothing it might write lands in the source tree.
	work, err := os.MkdirTemp("", "azurite-table-")
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join(dir, "start.js"),
		"--tableHost", "127.0.0.1", "--tablePort", strconv.Itoa(port),
		"--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck"}
	if !opts.AccessLog {
		args = append(args, "--silent")
	}
	proc, err := kit.StartNode(ctx, kit.NodeOptions{
		Name:       "tablestore: azurite",
		Node:       node,
		Args:       args,
		Dir:        work,
		Log:        opts.Log,
		EchoStdout: true, // Azurite logs on stdout
		OutputName: "azurite output",
		Ready:      func(line string) (bool, error) { return strings.Contains(line, "successfully started"), nil },
		// "successfully started" follows the listen call; a connection proves it.
		Dial: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	})
	if err != nil {
		_ = os.RemoveAll(work)
		var se *kit.StartError
		if errors.As(err, &se) && bytes.Contains(se.Output, []byte("EADDRINUSE")) {
			return nil, fmt.Errorf("%w: %w", errAddressInUse, err)
		}
		return nil, err
	}
	return &Server{proc: proc, port: port, dir: work}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) address() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// TableEndpoint is the table service URL of the development account.
func (s *Server) TableEndpoint() string {
	return "http://" + s.address() + "/" + AccountName
}

// ConnectionString is what AzureWebJobsStorage holds to use this server:
// the development account's explicit form (the Go SDKs do not read
// UseDevelopmentStorage=true, and the port is not Azurite's default).
func (s *Server) ConnectionString() string {
	return "DefaultEndpointsProtocol=http;AccountName=" + AccountName + ";AccountKey=" + AccountKey +
		";TableEndpoint=" + s.TableEndpoint() + ";"
}

// Port is the table service's port.
func (s *Server) Port() int { return s.port }

// PID is the node process's id.
func (s *Server) PID() int { return s.proc.PID() }

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

// Close stops the service (stdin closed, then SIGTERM, then SIGKILL) and
// waits for it. It reports an error if the process had exited on its own
// before, or had to be killed. It is safe to call more than once.
func (s *Server) Close() error {
	defer os.RemoveAll(s.dir)
	return s.proc.Close()
}
