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
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// DirEnv names the environment variable that overrides where start.js and
// its node_modules are looked for.
const DirEnv = "DEVSTACK_AZURITE_DIR"

// ErrNodeNotFound is returned (wrapped) by Start when there is no node.
var ErrNodeNotFound = errors.New("tablestore: node (Node.js) not found")

// ErrDependenciesMissing is returned (wrapped) by Start when Azurite has not
// been installed.
var ErrDependenciesMissing = errors.New("tablestore: Azurite is not installed (run: make deps, or npm ci --prefix devstack/faketables/azurite)")

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
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	port   int
	dir    string
	exited chan struct{}
	err    error

	closeOnce sync.Once
	closeErr  error
}

// DefaultDir is where Start looks for Azurite when Options.Dir is empty.
func DefaultDir() string { return kit.ProjectDir(DirEnv, "azurite") }

// FindNode returns the node executable Start would use, or an error
// wrapping ErrNodeNotFound.
func FindNode(explicit string) (string, error) { return kit.FindNode(explicit, ErrNodeNotFound) }

// Installed reports whether Azurite's npm package is present in dir
// (DefaultDir when empty), with an error wrapping ErrDependenciesMissing
// when it is not.
func Installed(dir string) error {
	if dir == "" {
		dir = DefaultDir()
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "azurite", "package.json")); err != nil {
		return fmt.Errorf("%w; %s/node_modules/azurite is missing", ErrDependenciesMissing, dir)
	}
	return nil
}

// Start launches the table service on a free loopback port and waits until
// it accepts connections. It lives until Close, or until this process
// exits (start.js quits when its stdin closes). ctx bounds only the start.
func Start(ctx context.Context, opts Options) (*Server, error) {
	node, err := FindNode(opts.NodePath)
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		dir = DefaultDir()
	}
	if err := Installed(dir); err != nil {
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
	cmd := exec.Command(node, args...)
	cmd.Dir = work
	stdin, err := cmd.StdinPipe()
	if err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	tail := &kit.Tail{Max: 8 << 10}
	var log io.Writer = tail
	if opts.Log != nil {
		// stdout and stderr are copied by two goroutines: one lock for both.
		log = kit.Serialized(io.MultiWriter(tail, opts.Log))[0]
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = stdoutW, log
	err = cmd.Start()
	_ = stdoutW.Close()
	if err != nil {
		_ = stdoutR.Close()
		_ = os.RemoveAll(work)
		return nil, fmt.Errorf("tablestore: starting %s: %w", node, err)
	}
	s := &Server{cmd: cmd, stdin: stdin, port: port, dir: work, exited: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer stdoutR.Close()
		sc := bufio.NewScanner(stdoutR)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			if !signalled && strings.Contains(line, "successfully started") {
				signalled = true
				close(started)
			}
		}
		_, _ = io.Copy(log, stdoutR)
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	fail := func(cause error) (*Server, error) {
		_ = s.Close()
		msg := cause.Error()
		if t := bytes.TrimSpace(tail.Bytes()); len(t) > 0 {
			msg += "; azurite output:\n" + string(t)
		}
		if bytes.Contains(tail.Bytes(), []byte("EADDRINUSE")) {
			return nil, fmt.Errorf("%w: %s", errAddressInUse, msg)
		}
		return nil, errors.New(msg)
	}
	select {
	case <-started:
	case <-s.exited:
		return fail(fmt.Errorf("tablestore: azurite exited before listening (%v)", s.err))
	case <-ctx.Done():
		return fail(fmt.Errorf("tablestore: azurite did not listen in time: %w", ctx.Err()))
	}
	// "successfully started" follows the listen call; a connection proves it.
	for {
		c, err := net.DialTimeout("tcp", s.address(), time.Second)
		if err == nil {
			_ = c.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return fail(fmt.Errorf("tablestore: azurite exited before listening (%v)", s.err))
		case <-ctx.Done():
			return fail(fmt.Errorf("tablestore: azurite did not accept connections in time: %w", ctx.Err()))
		case <-time.After(20 * time.Millisecond):
		}
	}
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
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.exited }

// Close stops the service (stdin closed, then SIGTERM, then SIGKILL) and
// waits for it. It reports an error if the process had exited on its own
// before, or had to be killed. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		defer os.RemoveAll(s.dir)
		select {
		case <-s.exited:
			s.closeErr = fmt.Errorf("tablestore: azurite had exited before Close (%v)", s.err)
			_ = s.stdin.Close()
			return
		default:
		}
		if kit.Stop(s.stdin, s.cmd.Process, s.exited) {
			s.closeErr = errors.New("tablestore: azurite did not stop on SIGTERM and was killed")
		}
	})
	return s.closeErr
}
