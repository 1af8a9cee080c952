package kit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NodeOptions configure StartNode.
type NodeOptions struct {
	// Name is how errors name the process, after its stand-in's prefix:
	// "servicebus: broker", "tablestore: azurite".
	Name string
	// Node is the node executable (FindNode's answer) and Args its
	// arguments, the script first.
	Node string
	Args []string
	// Dir is the working directory; Env, when not nil, the whole
	// environment (as exec.Cmd's).
	Dir string
	Env []string
	// Log receives what the process writes on stderr and, with EchoStdout,
	// the lines it writes on stdout; nil discards them. The last 8 KiB are
	// kept either way and quoted in start-up errors, under OutputName
	// ("broker stderr", "azurite output").
	Log        io.Writer
	EchoStdout bool
	OutputName string
	// Ready is given each line the process writes on stdout (without its
	// line ending) until it reports the process ready (true) or failed (an
	// error, which StartNode returns): the broker's first line carries its
	// ports, Azurite says "successfully started" among other lines. It is
	// called on another goroutine; what it stores is the caller's to read
	// once StartNode has returned without an error. It must be set.
	Ready func(line string) (bool, error)
	// Dial, when not empty, is an address that must then accept a TCP
	// connection before the start counts: for a process whose ready line
	// comes before its listen call has taken effect.
	Dial string
	// Timeout bounds the wait for Ready (and Dial) in addition to ctx; 0
	// leaves it to ctx.
	Timeout time.Duration
}

// NodeProcess is a Node.js stand-in's child process (the Service Bus
// broker, Azurite). It quits when its stdin closes, so that it never
// outlives a test binary that died; Close closes stdin first and signals
// only a process that does not take the hint.
type NodeProcess struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed

	closeOnce sync.Once
	closeErr  error
}

// StartError is a Node.js stand-in's failure to start, with the end of
// what the process wrote before it (Output, under Label), which usually
// says why.
type StartError struct {
	Err    error
	Label  string
	Output []byte
}

func (e *StartError) Error() string {
	if len(e.Output) == 0 {
		return e.Err.Error()
	}
	return e.Err.Error() + "; " + e.Label + ":\n" + string(e.Output)
}

func (e *StartError) Unwrap() error { return e.Err }

// StartNode starts the process and waits until it is ready (o.Ready, then
// o.Dial). ctx bounds only the start: the process lives until Close. When
// the start fails, the process is stopped again and the error is a
// *StartError quoting what it wrote.
func StartNode(ctx context.Context, o NodeOptions) (*NodeProcess, error) {
	cmd := exec.Command(o.Node, o.Args...)
	cmd.Dir, cmd.Env = o.Dir, o.Env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// A pipe of our own, so reading the ready line does not race with cmd.Wait.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	tail := &Tail{Max: 8 << 10}
	var log io.Writer = tail
	if o.Log != nil {
		// stderr and echoed stdout are copied by two goroutines: one lock
		// for both, so that their lines do not interleave.
		log = Serialized(io.MultiWriter(tail, o.Log))[0]
	}
	cmd.Stdout, cmd.Stderr = stdoutW, log
	err = cmd.Start()
	_ = stdoutW.Close()
	if err != nil {
		_ = stdoutR.Close()
		return nil, fmt.Errorf("%s did not start: %w", o.Name, err)
	}
	p := &NodeProcess{name: o.Name, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()

	ready := make(chan error, 1)
	go func() {
		defer stdoutR.Close()
		echo := io.Discard
		if o.EchoStdout {
			echo = log
		}
		r := bufio.NewReader(stdoutR)
		waiting := true
		for {
			line, err := r.ReadString('\n')
			if line == "" && err != nil {
				return // stdout closed: the process is exiting, which Wait reports
			}
			line = strings.TrimRight(line, "\r\n")
			_, _ = io.WriteString(echo, line+"\n")
			if waiting {
				ok, rerr := o.Ready(line)
				if ok || rerr != nil {
					waiting = false
					ready <- rerr
				}
			}
		}
	}()

	fail := func(cause error) (*NodeProcess, error) {
		_ = p.Close()
		return nil, &StartError{Err: cause, Label: o.OutputName, Output: bytes.TrimSpace(tail.Bytes())}
	}
	var timedOut error // the Timeout's own cause, told apart from ctx's
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		timedOut = fmt.Errorf("%s did not listen within %s", o.Name, o.Timeout)
		ctx, cancel = context.WithTimeoutCause(ctx, o.Timeout, timedOut)
		defer cancel()
	}
	select {
	case err := <-ready:
		if err != nil {
			return fail(err)
		}
	case <-p.exited:
		return fail(p.exitedBeforeListening())
	case <-ctx.Done():
		return fail(p.gaveUp(ctx, timedOut, "did not listen"))
	}
	for o.Dial != "" {
		c, err := net.DialTimeout("tcp", o.Dial, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case <-p.exited:
			return fail(p.exitedBeforeListening())
		case <-ctx.Done():
			return fail(p.gaveUp(ctx, timedOut, "did not accept connections"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p, nil
}

func (p *NodeProcess) exitedBeforeListening() error {
	return fmt.Errorf("%s exited before listening (%s)", p.name, exitStatus(p.err))
}

// gaveUp says why the wait ended: timedOut, when it was the Timeout's,
// else what the caller's context says.
func (p *NodeProcess) gaveUp(ctx context.Context, timedOut error, what string) error {
	if cause := context.Cause(ctx); cause == timedOut {
		return cause
	}
	return fmt.Errorf("%s %s: %w", p.name, what, ctx.Err())
}

// PID returns the process id.
func (p *NodeProcess) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *NodeProcess) Done() <-chan struct{} { return p.exited }

// Close stops the process (stdin closed, then SIGTERM, then SIGKILL) and
// waits for it to exit. It reports an error if the process had already
// exited on its own (it crashed or was killed) or had to be killed. It is
// safe to call more than once.
func (p *NodeProcess) Close() error {
	p.closeOnce.Do(func() {
		select {
		case <-p.exited:
			p.closeErr = fmt.Errorf("%s had exited before Close (%s)", p.name, exitStatus(p.err))
			_ = p.stdin.Close()
			return
		default:
		}
		if p.stop() {
			p.closeErr = fmt.Errorf("%s did not stop on SIGTERM and was killed", p.name)
		}
	})
	return p.closeErr
}

// stop closes stdin and waits; after 2 s it sends SIGTERM, and after 3 s
// more it kills. It returns when the process has exited; killed reports
// whether it had to be killed.
func (p *NodeProcess) stop() (killed bool) {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
		return false
	case <-time.After(2 * time.Second):
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-time.After(3 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return true
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
