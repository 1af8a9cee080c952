package kit

import (
	"bytes"
	"io"
	"sync"
)

// Buffer is a bytes.Buffer that goroutines may share: a process's output
// copied by one goroutine while a test reads it, or a handler's log
// written from its request goroutines. The zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Tail keeps the last Max bytes written to it: what a child process said
// just before it failed, for the error that reports it, without keeping
// all of a long run's output. Safe for concurrent use.
type Tail struct {
	Max int
	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer.
func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		t.buf = append(t.buf[:0:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what is kept.
func (t *Tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}

// Serialized returns writers that write to ws, one write at a time across
// all of them: a child's stdout and stderr are copied by two goroutines,
// and their lines must not interleave mid-line in what they share.
func Serialized(ws ...io.Writer) []io.Writer {
	mu := new(sync.Mutex)
	out := make([]io.Writer, len(ws))
	for i, w := range ws {
		out[i] = lockedWriter{mu, w}
	}
	return out
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
