// Package fakeservicebus runs a local stand-in for Azure Service Bus queues: a small AMQP 1.0
// broker (broker/broker.js, built on the npm package rhea) in a Node.js child process.
// The real azservicebus SDK talks to it through
// azservicebus.NewClientFromConnectionString(b.ConnectionString(), nil).
//
// It is meant for tests and demos: one process per Broker, in-memory, on 127.0.0.1,
// no TLS, any SAS token accepted. See README.md for what it supports.
package fakeservicebus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/kit"
)

// BrokerDirEnv names the environment variable that overrides where broker.js and its
// node_modules are looked for (the directory holding broker.js).
const BrokerDirEnv = "DEVSTACK_SB_BROKER_DIR"

// ErrNodeNotFound is returned (wrapped) by Start when no node executable can be found.
var ErrNodeNotFound = errors.New("servicebus: node (Node.js) not found")

// ErrDependenciesMissing is returned (wrapped) by Start when the broker's npm dependencies
// have not been installed.
var ErrDependenciesMissing = errors.New("servicebus: broker npm dependencies are not installed (run: npm ci --prefix devstack/fakeservicebus/broker)")

// QueueConfig describes one queue. Zero values take the broker defaults: MaxDeliveryCount 10,
// LockDuration 30 s, no duplicate detection. Queues that are not configured are created with
// the defaults the first time a client uses them.
type QueueConfig struct {
	Name                     string
	MaxDeliveryCount         int
	LockDuration             time.Duration
	DuplicateDetectionWindow time.Duration
	// DenySend refuses every message sent to the queue with
	// amqp:unauthorized-access, as Service Bus does when the sender's
	// identity lacks the Data Sender role.
	DenySend bool
}

// Options configure Start.
type Options struct {
	Queues []QueueConfig
	// Stderr receives the broker's log lines; nil discards them. The last few KiB are kept
	// either way and quoted in start-up errors.
	Stderr io.Writer
	// BrokerDir is the directory holding broker.js and node_modules. Empty means
	// $DEVSTACK_SB_BROKER_DIR, else the broker/ directory beside this package's source.
	BrokerDir string
	// NodePath is the node executable. Empty means $DEVSTACK_NODE, else node on PATH.
	NodePath string
	// StartTimeout bounds the wait for the broker to listen (default 15 s), in addition to ctx.
	StartTimeout time.Duration
	// MaxMessageSize is the per-message limit announced to senders (default 256 KiB,
	// the Standard tier's limit).
	MaxMessageSize int
	// Debug makes the broker log every link, delivery and management request.
	Debug bool
}

// QueueStats are the counts the broker keeps per queue.
type QueueStats struct {
	Active            int `json:"active"`
	Locked            int `json:"locked"`
	Scheduled         int `json:"scheduled"`
	Deferred          int `json:"deferred"`
	DeadLettered      int `json:"deadLettered"`
	DuplicatesDropped int `json:"duplicatesDropped"`
	// TotalSent counts every message senders handed to the queue, dropped duplicates included.
	TotalSent int `json:"totalSent"`
	Completed int `json:"completed"`
	Expired   int `json:"expired"`
}

// MessageSummary describes a stored message, as the admin API reports it.
type MessageSummary struct {
	SequenceNumber int64  `json:"sequenceNumber"`
	MessageID      string `json:"messageId"`
	// State is active, locked, scheduled or deferred.
	State string `json:"state"`
	// DeliveryCount is the number of delivery attempts so far, as the SDK would report it
	// to the current lock holder (failed attempts, plus one while the message is locked).
	DeliveryCount              int            `json:"deliveryCount"`
	EnqueuedTime               time.Time      `json:"enqueuedTime"`
	CorrelationID              string         `json:"correlationId"`
	Subject                    string         `json:"subject"`
	ContentType                string         `json:"contentType"`
	To                         string         `json:"to"`
	ReplyTo                    string         `json:"replyTo"`
	SessionID                  string         `json:"sessionId"`
	DeadLetterSource           string         `json:"deadLetterSource"`
	DeadLetterReason           string         `json:"deadLetterReason"`
	DeadLetterErrorDescription string         `json:"deadLetterErrorDescription"`
	ApplicationProperties      map[string]any `json:"applicationProperties"`
	// Body is the message body as UTF-8 text (data sections concatenated).
	Body string `json:"body"`
	Size int    `json:"size"`
}

// Broker is a running broker process.
type Broker struct {
	proc      *kit.NodeProcess
	amqpPort  int
	adminPort int
	key       string
	http      *http.Client
}

type readyLine struct {
	AMQPPort  int `json:"amqpPort"`
	AdminPort int `json:"adminPort"`
}

type brokerQueue struct {
	Name                       string `json:"name"`
	MaxDeliveryCount           int    `json:"maxDeliveryCount,omitempty"`
	LockDurationMs             int64  `json:"lockDurationMs,omitempty"`
	DuplicateDetectionWindowMs int64  `json:"duplicateDetectionWindowMs,omitempty"`
	DenySend                   bool   `json:"denySend,omitempty"`
}

func toBrokerQueue(q QueueConfig) (brokerQueue, error) {
	if q.Name == "" {
		return brokerQueue{}, errors.New("servicebus: QueueConfig.Name is empty")
	}
	if q.MaxDeliveryCount < 0 || q.LockDuration < 0 || q.DuplicateDetectionWindow < 0 {
		return brokerQueue{}, fmt.Errorf("servicebus: queue %s: negative setting", q.Name)
	}
	if q.LockDuration > 0 && q.LockDuration < time.Millisecond {
		return brokerQueue{}, fmt.Errorf("servicebus: queue %s: lock duration below 1ms", q.Name)
	}
	if q.DuplicateDetectionWindow > 0 && q.DuplicateDetectionWindow < time.Millisecond {
		return brokerQueue{}, fmt.Errorf("servicebus: queue %s: duplicate detection window below 1ms", q.Name)
	}
	return brokerQueue{
		Name:                       q.Name,
		MaxDeliveryCount:           q.MaxDeliveryCount,
		LockDurationMs:             q.LockDuration.Milliseconds(),
		DuplicateDetectionWindowMs: q.DuplicateDetectionWindow.Milliseconds(),
		DenySend:                   q.DenySend,
	}, nil
}

// Project is the broker as a Node.js project: where Start finds it
// (Options.BrokerDir, else $DEVSTACK_SB_BROKER_DIR, else broker/ beside this
// file) and how a test asks whether it can start here (Project.Available).
var Project = kit.NodeProject{
	Env: BrokerDirEnv, DefaultDir: func() string { return kit.ProjectDir(BrokerDirEnv, "broker") },
	Script: "broker.js", Package: "rhea", NoNode: ErrNodeNotFound, NoPackages: ErrDependenciesMissing,
}

// Start launches the broker and waits until it listens. The process lives until Close
// (or until this process exits: the broker quits when its stdin closes). ctx bounds only
// the start-up.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	node, dir, err := Project.Locate(opts.NodePath, opts.BrokerDir)
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, Project.Script)

	queues := make([]brokerQueue, 0, len(opts.Queues))
	for _, q := range opts.Queues {
		bq, err := toBrokerQueue(q)
		if err != nil {
			return nil, err
		}
		queues = append(queues, bq)
	}
	queuesJSON, err := json.Marshal(queues)
	if err != nil {
		return nil, err
	}

	args := []string{script, "--port", "0", "--admin-port", "0", "--queues", string(queuesJSON)}
	if opts.MaxMessageSize > 0 {
		args = append(args, "--max-message-size", strconv.Itoa(opts.MaxMessageSize))
	}
	if opts.Debug {
		args = append(args, "--log", "debug")
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	var ready readyLine
	proc, err := kit.StartNode(ctx, kit.NodeOptions{
		Name: "servicebus: broker",
		Node: node,
		Args: args,
		Dir:  dir,
		Env:  append(os.Environ(), "SB_BROKER_IGNORE_STDIN="), // the broker must watch its stdin
		// Its stdout carries only the ready line; its log is on stderr.
		Log:        opts.Stderr,
		OutputName: "broker stderr",
		Ready: func(line string) (bool, error) {
			if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.AMQPPort == 0 || ready.AdminPort == 0 {
				return false, fmt.Errorf("servicebus: unexpected first line from broker: %q", line)
			}
			return true, nil
		},
		Timeout: timeout,
	})
	if err != nil {
		return nil, err
	}
	return &Broker{
		proc:      proc,
		amqpPort:  ready.AMQPPort,
		adminPort: ready.AdminPort,
		key:       randomKey(),
		http:      &http.Client{Timeout: 10 * time.Second},
	}, nil
}

func randomKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// ConnectionString returns an emulator-style connection string for
// azservicebus.NewClientFromConnectionString (plain AMQP, no TLS).
func (b *Broker) ConnectionString() string {
	return fmt.Sprintf("Endpoint=sb://127.0.0.1:%d;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=%s;UseDevelopmentEmulator=true;", b.amqpPort, b.key)
}

// AMQPPort returns the port the broker's AMQP listener is on.
func (b *Broker) AMQPPort() int { return b.amqpPort }

// AdminURL returns the base URL of the broker's admin HTTP API, e.g. http://127.0.0.1:41234.
func (b *Broker) AdminURL() string { return fmt.Sprintf("http://127.0.0.1:%d", b.adminPort) }

// PID returns the broker process id.
func (b *Broker) PID() int { return b.proc.PID() }

// Done is closed when the broker process has exited.
func (b *Broker) Done() <-chan struct{} { return b.proc.Done() }

// Stats returns the counts of every queue the broker knows, by queue name.
func (b *Broker) Stats(ctx context.Context) (map[string]QueueStats, error) {
	var out map[string]QueueStats
	err := b.do(ctx, http.MethodGet, "/queues", &out)
	return out, err
}

// Messages lists the messages stored in a queue (in any state), or in its dead-letter
// queue, in sequence order.
func (b *Broker) Messages(ctx context.Context, queue string, deadLetter bool) ([]MessageSummary, error) {
	p := "/queues/" + escapeQueue(queue) + "/messages"
	if deadLetter {
		p += "?sub=deadletter"
	}
	var out []MessageSummary
	err := b.do(ctx, http.MethodGet, p, &out)
	return out, err
}

// Purge deletes every message of a queue and of its dead-letter queue, and returns how
// many were deleted.
func (b *Broker) Purge(ctx context.Context, queue string) (int, error) {
	var out struct {
		Purged int `json:"purged"`
	}
	err := b.do(ctx, http.MethodPost, "/queues/"+escapeQueue(queue)+"/purge", &out)
	return out.Purged, err
}

// CreateQueue creates a queue with the given settings, or changes the settings of an
// existing queue (its messages are kept). Zero values take the broker defaults.
func (b *Broker) CreateQueue(ctx context.Context, q QueueConfig) error {
	bq, err := toBrokerQueue(q)
	if err != nil {
		return err
	}
	body, err := json.Marshal(bq)
	if err != nil {
		return err
	}
	var out map[string]any
	return b.doBody(ctx, http.MethodPut, "/queues/"+escapeQueue(q.Name), body, &out)
}

func escapeQueue(q string) string {
	// Queue names may contain '/'; keep it as a path separator, escape the rest.
	u := url.URL{Path: q}
	return u.EscapedPath()
}

func (b *Broker) do(ctx context.Context, method, path string, out any) error {
	return b.doBody(ctx, method, path, nil, out)
}

func (b *Broker) doBody(ctx context.Context, method, path string, reqBody []byte, out any) error {
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.AdminURL()+path, rd)
	if err != nil {
		return err
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return fmt.Errorf("servicebus admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("servicebus admin %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("servicebus admin %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("servicebus admin %s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// Close stops the broker (stdin closed, then SIGTERM, then SIGKILL) and waits for the
// process to exit. It reports an error if the broker had already exited on its own (it
// crashed or was killed) or had to be killed. It is safe to call more than once.
func (b *Broker) Close() error {
	defer b.http.CloseIdleConnections()
	return b.proc.Close()
}
