//go:build unix

package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// lines collects a process's output and lets a test wait for a line.
type lines struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	cond *sync.Cond
	done bool
}

func collect(t *testing.T, r interface{ Read([]byte) (int, error) }) *lines {
	l := &lines{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.buf.WriteString(sc.Text() + "\n")
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.done = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l
}

// waitFor returns the output once it contains s, or fails after d.
func (l *lines) waitFor(t *testing.T, s string, d time.Duration) string {
	t.Helper()
	timer := time.AfterFunc(d, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	for !strings.Contains(l.buf.String(), s) {
		if l.done || time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", s, l.buf.String())
		}
		l.cond.Wait()
	}
	return l.buf.String()
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func alive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// TestMakeUp runs `make up` as a newcomer does: the banner says where the
// handler's log is, what the provisioning workspace is for and that the
// local Service Bus key is not checked; `make send`'s command gets its
// result printed; and a plain `kill` (SIGTERM) of make's process stops
// everything it started: host simulator, handler, broker and stand-ins,
// leaving no port open and no process behind, and the log in place.
func TestMakeUp(t *testing.T) {
	bin := t.TempDir()
	up := exec.Command("make", "-s", "up", "BIN="+bin)
	up.Dir = repoRoot()
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so that cleanup can reach all of it
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	up.Stderr = &stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	handlerPID := 0
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	t.Cleanup(func() {
		// Only what this test started: make's process group, and the handler
		// (which hostsim puts in a group of its own).
		_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
		if alive(handlerPID) {
			_ = syscall.Kill(handlerPID, syscall.SIGKILL)
		}
	})
	out := collect(t, stdout)
	banner := out.waitFor(t, "stops everything.", 5*time.Minute)

	field := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("the banner has no %s:\n%s\nstderr:\n%s", re, banner, stderr.String())
		}
		return m[1]
	}
	host := strings.TrimPrefix(field(`Functions host simulator:\s+(\S+)`), "http://")
	handler := strings.TrimPrefix(field(`handler binary:\s+(\S+)`), "http://")
	handlerPID, _ = strconv.Atoi(field(`handler binary:.*\(pid (\d+)`))
	logPath := field(`handler log:\s+(\S+)`)
	admin := strings.TrimPrefix(strings.TrimSuffix(field(`Service Bus admin:\s+(\S+)`), "/queues"), "http://")
	amqp := field(`Service Bus \(AMQP\):\s+Endpoint=sb://(127\.0\.0\.1:\d+);`)
	for _, want := range []string{"PROVISIONING", "503 WorkspaceNotReady", "checks no key", "SharedAccessKey=any-key-works", "make send", "kept after exit"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner does not say %q:\n%s", want, banner)
		}
	}
	for name, addr := range map[string]string{"host": host, "handler": handler, "broker admin": admin, "AMQP": amqp} {
		if !listening(addr) {
			t.Fatalf("%s %s is not listening while up runs", name, addr)
		}
	}

	send := exec.Command(filepath.Join(bin, "devstack"), "send", "-handler", filepath.Join(bin, "handler"))
	send.Dir = repoRoot()
	got, err := send.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "← token-results") || !strings.Contains(string(got), "Databricks.Token.Created") {
		t.Errorf("devstack send: %v\n%s", err, got)
	}

	if err := up.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("make up still runs 30 s after SIGTERM")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var left []string
		for name, addr := range map[string]string{"host": host, "handler": handler, "broker admin": admin, "AMQP": amqp} {
			if listening(addr) {
				left = append(left, name+" "+addr)
			}
		}
		if alive(handlerPID) {
			left = append(left, "handler pid "+strconv.Itoa(handlerPID))
		}
		if !errors.Is(syscall.Kill(-up.Process.Pid, 0), syscall.ESRCH) {
			left = append(left, "processes in make's group")
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGTERM to make, still running: %s\nmake's output:\n%s%s", strings.Join(left, ", "), out.waitFor(t, "", 0), stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fi, err := os.Stat(logPath); err != nil || fi.Size() == 0 {
		t.Errorf("the handler's log %s is gone or empty after up stopped: %v", logPath, err)
	}
	if _, err := os.Stat(filepath.Join(bin, "devstack.json")); !os.IsNotExist(err) {
		t.Errorf("the state file is still there after up stopped: %v", err)
	}
}
