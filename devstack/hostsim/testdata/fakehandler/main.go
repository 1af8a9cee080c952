// Command fakehandler is a custom handler for hostsim's tests. It answers
// GET / (readiness), echoes forwarded HTTP requests and invocation envelopes,
// and fails, sleeps or crashes on request.
//
// Start-up (environment):
//
//	FAKE_START_DELAY=300ms  sleep before listening
//	FAKE_EXIT_CODE=2        exit at once with that code
//	FAKE_ROOT_STATUS=404    status for GET / (default 200)
//	FAKE_TIMER=<mode>       reply mode for envelope POSTs without a message
//	FAKE_TIMER_FILE=<path>  file holding that mode, read on every POST
//
// Forwarded HTTP (anything that is not an envelope; query): status=418, sleep=2s, crash=1, ct=text/plain,
// redirect=1. The reply is a JSON echo of the request, env, args and cwd.
//
// Envelopes (POST /<Function>): the Service Bus body (Data decoded twice) is
// a JSON object with the same controls: {"status":500, "ct":"text/plain",
// "reply":"null|empty|array|notjson|nologs", "sleep":"2s", "crash":true,
// "failUntilDelivery":3, "sleepUntilDelivery":2}. Modes for FAKE_TIMER: ok, status500, text, null,
// empty, sleep:<d>, crash.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var inflight atomic.Int64

func main() {
	if d, err := time.ParseDuration(os.Getenv("FAKE_START_DELAY")); err == nil {
		time.Sleep(d)
	}
	if c := os.Getenv("FAKE_EXIT_CODE"); c != "" {
		n, _ := strconv.Atoi(c)
		fmt.Fprintf(os.Stderr, "fakehandler: exiting with %d as asked\n", n)
		os.Exit(n)
	}
	port := os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT")
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakehandler:", err)
		os.Exit(1)
	}
	fmt.Printf("fakehandler: listening on %s pid %d\n", ln.Addr(), os.Getpid())
	fmt.Fprintf(os.Stderr, "fakehandler: stderr works\n")

	srv := &http.Server{Handler: http.HandlerFunc(serve)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		fmt.Println("fakehandler: SIGTERM, shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "fakehandler:", err)
		os.Exit(1)
	}
	<-ctx.Done()
	fmt.Println("fakehandler: stopped")
}

func serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" && r.Method == http.MethodGet {
		status := 200
		if s := os.Getenv("FAKE_ROOT_STATUS"); s != "" {
			status, _ = strconv.Atoi(s)
		}
		w.WriteHeader(status)
		return
	}
	n := inflight.Add(1)
	defer inflight.Add(-1)
	body, _ := io.ReadAll(r.Body)
	var probe map[string]json.RawMessage
	if r.Method == http.MethodPost && json.Unmarshal(body, &probe) == nil && probe["Data"] != nil && probe["Metadata"] != nil {
		serveEnvelope(w, r, body, n)
		return
	}
	serveHTTP(w, r, body, n)
}

func env() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "FUNCTIONS_") || strings.HasPrefix(k, "APP_") {
			m[k] = v
		}
	}
	return m
}

func serveHTTP(w http.ResponseWriter, r *http.Request, body []byte, n int64) {
	q := r.URL.Query()
	if d, err := time.ParseDuration(q.Get("sleep")); err == nil {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if q.Get("crash") == "1" {
		fmt.Println("fakehandler: crashing as asked")
		os.Exit(3)
	}
	if q.Get("redirect") == "1" {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
		return
	}
	cwd, _ := os.Getwd()
	echo := map[string]any{
		"method":        r.Method,
		"path":          r.URL.Path,
		"rawPath":       r.URL.EscapedPath(),
		"rawQuery":      r.URL.RawQuery,
		"host":          r.Host,
		"headers":       r.Header,
		"body":          string(body),
		"contentLength": r.ContentLength,
		"env":           env(),
		"args":          os.Args[1:],
		"cwd":           cwd,
		"inflight":      n,
	}
	ct := q.Get("ct")
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Fake", "yes")
	status := 200
	if s := q.Get("status"); s != "" {
		status, _ = strconv.Atoi(s)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(echo)
}

type control struct {
	Status            int    `json:"status"`
	CT                string `json:"ct"`
	Reply             string `json:"reply"`
	Sleep             string `json:"sleep"`
	Crash             bool   `json:"crash"`
	FailUntilDelivery int    `json:"failUntilDelivery"`
	// SleepUntilDelivery limits Sleep to deliveries before this one.
	SleepUntilDelivery int `json:"sleepUntilDelivery"`
}

func serveEnvelope(w http.ResponseWriter, r *http.Request, raw []byte, n int64) {
	var env struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		http.Error(w, "bad envelope: "+err.Error(), http.StatusBadRequest)
		return
	}
	var ctl control
	var body string
	delivery := 0
	if dc, ok := env.Metadata["DeliveryCount"]; ok {
		var s string
		_ = json.Unmarshal(dc, &s)
		delivery, _ = strconv.Atoi(s)
	}
	for _, v := range env.Data {
		var s1, s2 string
		if json.Unmarshal(v, &s1) == nil && json.Unmarshal([]byte(s1), &s2) == nil {
			body = s2
			_ = json.Unmarshal([]byte(s2), &ctl)
		}
	}
	if body == "" && delivery == 0 {
		mode := os.Getenv("FAKE_TIMER")
		if f := os.Getenv("FAKE_TIMER_FILE"); f != "" {
			if b, err := os.ReadFile(f); err == nil {
				mode = strings.TrimSpace(string(b))
			}
		}
		ctl = timerControl(mode)
	}
	if d, err := time.ParseDuration(ctl.Sleep); err == nil && (ctl.SleepUntilDelivery == 0 || delivery < ctl.SleepUntilDelivery) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if ctl.Crash {
		fmt.Println("fakehandler: crashing as asked")
		os.Exit(3)
	}
	if ctl.FailUntilDelivery > 0 && delivery < ctl.FailUntilDelivery {
		ctl.Status = 500
	}
	ct := ctl.CT
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	status := ctl.Status
	if status == 0 {
		status = 200
	}
	logLine := fmt.Sprintf("handled %s invocation %s delivery %d", strings.TrimPrefix(r.URL.Path, "/"), r.Header.Get("X-Azure-Functions-InvocationId"), delivery)
	// Replies that are not an invocation response, to see how the host
	// takes them.
	if body, ok := map[string]string{"null": "null", "empty": "", "array": "[]", "notjson": "done"}[ctl.Reply]; ok {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return
	}
	reply := map[string]any{
		"Outputs":     map[string]any{},
		"Logs":        []string{logLine},
		"ReturnValue": nil,
		"Echo": map[string]any{
			"path":     r.URL.Path,
			"method":   r.Method,
			"headers":  r.Header,
			"envelope": json.RawMessage(raw),
			"body":     body,
			"inflight": n,
		},
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(reply)
}

func timerControl(mode string) control {
	switch {
	case mode == "status500":
		return control{Status: 500}
	case mode == "text":
		return control{CT: "text/plain; charset=utf-8"}
	case mode == "null", mode == "empty", mode == "array", mode == "notjson":
		return control{Reply: mode}
	case strings.HasPrefix(mode, "sleep:"):
		return control{Sleep: strings.TrimPrefix(mode, "sleep:")}
	case mode == "crash":
		return control{Crash: true}
	}
	return control{}
}
