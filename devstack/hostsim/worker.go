package hostsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

const (
	readinessInterval = 25 * time.Millisecond // DHWS.IsWorkerReady
	readinessTimeout  = 60 * time.Second      // DOC-CH: "needs to start within 60 seconds"
	stopGrace         = 10 * time.Second      // SIGTERM, then SIGKILL
)

// worker is one run of the handler process.
type worker struct {
	gen    int
	id     string
	port   int
	cmd    *exec.Cmd
	client *http.Client // to 127.0.0.1:port, no redirects, no compression
	tr     *http.Transport
	// ctx is cancelled (with the reason as cause) when the process is killed
	// or has exited; invocations running on this worker fail with that cause.
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when the process has exited
	err    error         // exit status; read after done
}

func (w *worker) baseURL() string { return "http://127.0.0.1:" + strconv.Itoa(w.port) }

// kill fails the worker's invocations with cause and SIGKILLs its process
// group. Use Host.killWorker for a worker that may be in service.
func (w *worker) kill(cause error) {
	w.cancel(cause)
	select {
	case <-w.done: // already reaped; its pid may be reused
	default:
		killProcess(w.cmd)
	}
}

// killWorker takes w out of service, fails its in-flight invocations with
// cause and SIGKILLs it; the supervisor then starts a new process.
func (h *Host) killWorker(w *worker, cause error) {
	h.retire(w, cause)
	w.kill(cause)
}

// errHandlerExited is the cause of in-flight failures when the process dies.
var errHandlerExited = errors.New("handler process exited")

// supervise starts the handler, waits for readiness, and restarts it whenever
// it exits, until the host closes. The first start's outcome goes to first.
func (h *Host) supervise(first chan<- error) {
	defer close(h.supervisorDone)
	backoff := 100 * time.Millisecond
	for gen := 0; ; gen++ {
		if gen > 0 {
			h.mu.Lock()
			h.restarts++
			h.mu.Unlock()
		}
		w, err := h.startWorker(gen)
		if err != nil {
			if first != nil {
				first <- err
				return
			}
			if h.stopping() {
				return
			}
			h.logf("hostsim: handler start failed (restarting in %s): %v", backoff, err)
			select {
			case <-time.After(backoff):
			case <-h.closing:
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		h.mu.Lock()
		h.cur = w
		close(h.ready)
		h.mu.Unlock()
		if first != nil {
			first <- nil
			first = nil
		}
		h.logf("hostsim: handler ready (pid %d, port %d, worker %s)", w.cmd.Process.Pid, w.port, w.id)

		<-w.done
		h.retire(w, fmt.Errorf("%w: %v", errHandlerExited, w.err))
		if h.stopping() {
			return
		}
		h.logf("hostsim: handler exited (%v); restarting", w.err)
	}
}

// retire takes w out of service and fails its in-flight invocations.
func (h *Host) retire(w *worker, cause error) {
	h.mu.Lock()
	if h.cur == w {
		h.cur = nil
		h.ready = make(chan struct{})
	}
	h.mu.Unlock()
	w.cancel(cause)
	w.tr.CloseIdleConnections()
}

// startWorker launches the process and polls GET / until any HTTP response.
func (h *Host) startWorker(gen int) (*worker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	id := kit.GUID()
	cmd := exec.Command(h.exe, h.args...)
	cmd.Dir = h.workDir
	cmd.Env = append(append([]string(nil), h.env...),
		"FUNCTIONS_CUSTOMHANDLER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID="+id,
		"FUNCTIONS_HTTPWORKER_PORT="+strconv.Itoa(port),
		"FUNCTIONS_HTTPWORKER_ID="+id,
		"FUNCTIONS_APP_ROOT_PATH="+h.appRoot,
	)
	cmd.Stdout = h.stdout
	cmd.Stderr = h.stderr
	cmd.WaitDelay = 2 * time.Second
	setProcessGroup(cmd)

	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	w := &worker{
		gen: gen, id: id, port: port, cmd: cmd, tr: tr,
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}

	h.mu.Lock()
	if h.isClosing {
		h.mu.Unlock()
		cancel(errClosed)
		return nil, errClosed
	}
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		cancel(err)
		return nil, fmt.Errorf("start handler %s: %w", h.exe, err)
	}
	h.proc = w
	h.mu.Unlock()
	go func() {
		w.err = cmd.Wait()
		close(w.done)
	}()

	deadline := time.NewTimer(readinessTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readinessInterval)
	defer tick.Stop()
	probe := &http.Client{Transport: tr, Timeout: 2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for {
		resp, err := probe.Get(w.baseURL() + "/")
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			return w, nil
		}
		select {
		case <-w.done:
			cancel(fmt.Errorf("%w: %v", errHandlerExited, w.err))
			return nil, fmt.Errorf("handler exited before it answered GET / on port %d: %v", port, w.err)
		case <-deadline.C:
			w.kill(errors.New("handler not ready"))
			<-w.done
			return nil, fmt.Errorf("handler did not answer GET http://127.0.0.1:%d/ within %s", port, readinessTimeout)
		case <-h.closing:
			w.kill(errClosed)
			<-w.done
			return nil, errClosed
		case <-tick.C:
		}
	}
}

// acquireWorker waits until a ready handler is available.
func (h *Host) acquireWorker(ctx context.Context) (*worker, error) {
	for {
		h.mu.Lock()
		if h.isClosing && h.cur == nil {
			h.mu.Unlock()
			return nil, errClosed
		}
		w, ready := h.cur, h.ready
		h.mu.Unlock()
		if w != nil && w.ctx.Err() == nil {
			return w, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the handler to be ready: %w", context.Cause(ctx))
		case <-h.supervisorDone:
			return nil, errors.New("hostsim: handler supervisor stopped")
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
