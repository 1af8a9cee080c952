package kit

import (
	"io"
	"os"
	"syscall"
	"time"
)

// Stop ends a child process that quits when its stdin closes (the Node.js
// stand-ins do, so that they never outlive a test binary that died): it
// closes stdin and waits; after 2 s it sends SIGTERM, and after 3 s more
// it kills. exited must be closed once the child has been waited for.
// Stop returns when it has; killed reports whether it had to be killed.
func Stop(stdin io.Closer, p *os.Process, exited <-chan struct{}) (killed bool) {
	_ = stdin.Close()
	select {
	case <-exited:
		return false
	case <-time.After(2 * time.Second):
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return false
	case <-time.After(3 * time.Second):
	}
	_ = p.Kill()
	<-exited
	return true
}
