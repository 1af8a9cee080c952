// Command devstack runs the handler on the local stand-ins.
//
//	devstack demo -handler bin/handler   issue, list and revoke a token over HTTP, then
//	                                     through the queues, printing every step
//	devstack up   -handler bin/handler   start everything and wait, printing the URLs to
//	                                     call with curl; Ctrl-C, SIGTERM or SIGHUP stops it
//	devstack send -handler bin/handler   send a create command to the running `up` and
//	                                     print the result it publishes
//
// Everything listens on 127.0.0.1; the stand-ins are the same ones the
// end-to-end tests use (devstack/). `up` writes where it is
// (devstack.json) and the handler's log (handler.log) next to the handler
// binary; the log is kept when it stops, the state file is removed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/google/uuid"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeeasyauth"
	"github.com/contoso/databricks-token-broker/devstack/hostsim"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "demo" && os.Args[1] != "up" && os.Args[1] != "send") {
		fmt.Fprintln(os.Stderr, "usage: devstack demo|up|send [-handler path] [-app-root dir] (devstack <command> -h for more)")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	handler := fs.String("handler", "bin/handler", "the handler binary")
	appRoot := fs.String("app-root", ".", "folder with host.json and the function folders")
	logs := fs.String("logs", "", "write the handler's JSON log here (default: demo a temporary file; up handler.log beside the handler binary, kept)")
	provisioning := fs.Duration("provisioning", 2*time.Minute, "up: how long workspace 3 stays provisioning (ARM Accepted) before it becomes ready")
	state := fs.String("state", "", "up, send: the running up's state file (default: devstack.json beside the handler binary)")
	body := fs.String("body", "", "send: the command to send (JSON; default: a create for workspace 1, one hour)")
	queue := fs.String("queue", "token-requests", "send: the queue to send to")
	wait := fs.Duration("wait", 30*time.Second, "send: how long to wait for the result")
	_ = fs.Parse(os.Args[2:])

	// Every ordinary way to stop it (Ctrl-C, kill, closing the terminal)
	// stops the stand-ins, the broker and the handler with it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var err error
	if os.Args[1] == "send" {
		err = send(ctx, statePath(*state, *handler), *body, *queue, *wait)
	} else {
		err = run(ctx, os.Args[1], *handler, *appRoot, *logs, statePath(*state, *handler), *provisioning)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// statePath is where `up` says where it is: given, or beside the handler.
func statePath(given, handler string) string {
	if given != "" {
		return given
	}
	abs, _ := filepath.Abs(handler)
	return filepath.Join(filepath.Dir(abs), "devstack.json")
}

// upState is what `up` writes for `send` (and for a user who wants the
// addresses): nothing in it is a secret, the broker checks no key.
type upState struct {
	PID                        int      `json:"pid"`
	HostURL                    string   `json:"hostUrl"`
	HandlerURL                 string   `json:"handlerUrl"`
	ServiceBusConnectionString string   `json:"serviceBusConnectionString"`
	Workspaces                 []string `json:"workspaces"`
	HandlerLog                 string   `json:"handlerLog"`
}

type demo struct {
	shownFull bool
	caller    []string // header name and value presented as the caller
	st        *stack.Stack
	host      *hostsim.Host
	step      int
	logDir    string
}

func run(ctx context.Context, mode, handler, appRoot, logPath, statePath string, provisioning time.Duration) error {
	handler, _ = filepath.Abs(handler)
	if _, err := os.Stat(handler); err != nil {
		return fmt.Errorf("no handler binary at %s (run: make build)", handler)
	}
	dir, err := os.MkdirTemp("", "devstack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	switch {
	case logPath != "":
	case mode == "up": // kept after `up` stops, so that it can be read then
		logPath = filepath.Join(filepath.Dir(handler), "handler.log")
	default:
		logPath = filepath.Join(dir, "handler.log")
	}
	if logPath, err = filepath.Abs(logPath); err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	st, err := stack.Start(ctx, stack.Options{Dir: dir, Workspaces: 3, ServiceBus: true, KeyVault: true, Ledger: true, BrokerLog: io.Discard})
	if err != nil {
		return err
	}
	defer st.Close()
	// The third workspace is "being created": ARM reports it Accepted until the demo says otherwise.
	if err := st.ARM.SetProvisioningState(stack.WorkspaceResourceID(2), "Accepted"); err != nil {
		return err
	}
	settings := append(st.Env(), "ROTATE_SCHEDULE=0 0 */6 * * *", "WORKSPACE_NOT_READY_BACKOFF=2s", "AUTHZ_POLICY="+demoPolicy())
	var authenticate func(*http.Request) (http.Header, int)
	if mode == "demo" {
		authenticate = fakeeasyauth.Authenticate(fakeeasyauth.Validator())
	} else {
		settings = append(settings[:len(settings)-1], "RESULTS_INCLUDE_TOKEN_VALUE=true") // `up`: plain curl, no policy
	}
	host, err := hostsim.Start(ctx, hostsim.Options{AppRoot: appRoot, Executable: handler, Env: settings, Authenticate: authenticate,
		ServiceBusConnectionString: st.Broker.ConnectionString(), Stdout: logFile, Stderr: logFile})
	if err != nil {
		return err
	}
	defer host.Close()
	d := &demo{st: st, host: host, logDir: dir}
	if mode == "up" {
		return d.up(ctx, logPath, statePath, provisioning)
	}
	if err := d.run(ctx); err != nil {
		return err
	}
	host.Close()
	return d.scanLogs(logPath)
}

func (d *demo) up(ctx context.Context, logPath, statePath string, provisioning time.Duration) error {
	handlerURL, handlerPID := d.host.Handler()
	st := upState{PID: os.Getpid(), HostURL: d.host.URL(), HandlerURL: handlerURL,
		ServiceBusConnectionString: anyKey(d.st.Broker.ConnectionString()), HandlerLog: logPath}
	for i := range d.st.Workspaces {
		st.Workspaces = append(st.Workspaces, stack.WorkspaceResourceID(i))
	}
	raw, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(statePath, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	defer os.Remove(statePath)

	ws0 := stack.WorkspaceResourceID(0)
	fmt.Printf("Functions host simulator: %s   (what Azure's front door would be; no function key needed)\n", d.host.URL())
	fmt.Printf("handler binary:           %s   (pid %d; direct, no host in front: a wrong method here is the handler's 405, through the host the host's 404)\n", handlerURL, handlerPID)
	fmt.Printf("handler log:              %s   (JSON lines; kept after exit: tail -f it)\n", logPath)
	for i := range d.st.Workspaces {
		note := "ready"
		if i == 2 {
			note = fmt.Sprintf("PROVISIONING for %s (ARM says Accepted): every call answers 503 WorkspaceNotReady with Retry-After,\n"+
				"                          and a queued command or Event Grid event for it waits with backoff. It is there to show that path; then it becomes ready", provisioning.Round(time.Second))
		}
		fmt.Printf("workspace %d:              %s\n                          %s\n", i+1, stack.WorkspaceResourceID(i), note)
	}
	fmt.Printf("Service Bus (AMQP):       %s\n", st.ServiceBusConnectionString)
	fmt.Printf("                          the local broker checks no key (any SharedAccessKey works); queues token-requests, workspace-events, token-results\n")
	fmt.Printf("Service Bus admin:        %s/queues\n", d.st.Broker.AdminURL())
	if d.st.Tables != nil {
		fmt.Printf("Ledger (Azurite tables):  %s, table tokenledger (the well-known development account; GET /api/tokens lists it)\n", d.st.Tables.TableEndpoint())
	}
	fmt.Printf("Key Vault delivery:       on (%s): creates answer with secretUri, not the token\n", d.st.Vault.URL())
	fmt.Printf("state file:               %s\n\n", statePath)
	fmt.Printf("Try:\n  curl -s -X POST %s/api/create-token -d '{\"workspaceResourceId\":\"%s\",\"lifetimeSeconds\":3600}'\n", d.host.URL(), ws0)
	fmt.Printf("  curl -s '%s/api/list-tokens?workspaceResourceId=%s'\n", d.host.URL(), ws0)
	fmt.Printf("  make send        # a create command on token-requests, and the result it publishes on token-results\n")
	fmt.Printf("\nCtrl-C (or kill %d) stops everything.\n", os.Getpid())
	fresh := stack.WorkspaceResourceID(2)
	ready := time.NewTimer(provisioning)
	defer ready.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nStopping: handler, host simulator, Service Bus broker, stand-ins. The handler's log stays at " + logPath)
			return nil
		case <-ready.C:
			if err := d.st.ARM.SetProvisioningState(fresh, "Succeeded"); err != nil {
				return err
			}
			fmt.Printf("\nworkspace 3 is now ready (ARM says Succeeded): %s\n", fresh)
		}
	}
}

// anyKey replaces the broker's key in a connection string: the stand-in
// checks none, so the string works as printed and teaches no one to paste
// a real key around.
func anyKey(conn string) string {
	return regexp.MustCompile(`SharedAccessKey=[^;]+`).ReplaceAllString(conn, "SharedAccessKey=any-key-works")
}

// send drops a command on a queue of the running `up` and prints the
// result the handler publishes for it (matched by CorrelationId, peeked, so
// it stays on token-results for anyone else reading it).
func send(ctx context.Context, statePath, body, queue string, wait time.Duration) error {
	raw, err := os.ReadFile(statePath)
	if err != nil {
		return fmt.Errorf("no running `make up` found (%v); start one in another terminal", err)
	}
	var st upState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("%s: %w", statePath, err)
	}
	if body == "" {
		if len(st.Workspaces) == 0 {
			return fmt.Errorf("%s lists no workspace", statePath)
		}
		body = `{"action":"create","workspaceResourceId":"` + st.Workspaces[0] + `","comment":"make send","lifetimeSeconds":3600}`
	}
	if !json.Valid([]byte(body)) {
		return errors.New("-body is not JSON")
	}
	sb, err := azservicebus.NewClientFromConnectionString(st.ServiceBusConnectionString, nil)
	if err != nil {
		return err
	}
	defer sb.Close(context.Background())
	s, err := sb.NewSender(queue, nil)
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	id := "send-" + uuid.NewString()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := s.SendMessage(ctx, &azservicebus.Message{Body: []byte(body), MessageID: &id, ContentType: ptr("application/json")}, nil); err != nil {
		return fmt.Errorf("sending to %s: %w", queue, err)
	}
	fmt.Printf("→ %s (MessageId %s): %s\n", queue, id, body)
	rcv, err := sb.NewReceiverForQueue("token-results", nil)
	if err != nil {
		return err
	}
	defer rcv.Close(context.Background())
	var from int64
	for {
		msgs, err := rcv.PeekMessages(ctx, 50, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("no result for %s within %s; the handler's log is %s", id, wait, st.HandlerLog)
			}
			return err
		}
		for _, m := range msgs {
			if m.SequenceNumber != nil && *m.SequenceNumber >= from {
				from = *m.SequenceNumber + 1
			}
			if m.CorrelationID != nil && *m.CorrelationID == id {
				fmt.Printf("← token-results (Subject %s, MessageId %s):\n     %s\n", deref(m.Subject), m.MessageID, indent(mask(m.Body)))
				return nil
			}
		}
		if len(msgs) == 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("no result for %s within %s; the handler's log is %s", id, wait, st.HandlerLog)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Printf("\n== %d. %s\n", d.step, fmt.Sprintf(format, args...))
}

// demoPolicy lets the demo's Logic App (app role Tokens.Create) create,
// revoke and list anywhere in the stand-in subscription, for at most 90
// days; lets a BI Logic App (its own client id) have read-only SQL tokens
// only, for a day at most; and lets queue messages touch the same
// workspaces.
func demoPolicy() string {
	return `{"version":1,"rules":[
	 {"principals":[{"appRole":"Tokens.Create"}],"actions":["create","revoke","list"],"workspaces":["/subscriptions/` + stack.Subscription + `"],"maxLifetime":"2160h"},
	 {"principals":[{"appId":"` + biLogicApp + `"}],"actions":["create"],"workspaces":["/subscriptions/` + stack.Subscription + `"],"requireScopes":true,"scopes":["sql:read*"],"maxLifetime":"24h"},
	 {"principals":["queue"],"actions":["create","revoke"],"workspaces":["/subscriptions/` + stack.Subscription + `"]}]}`
}

// biLogicApp is the client id of the demo's BI Logic App.
const biLogicApp = "cccccccc-3333-4333-8333-cccccccccccc"

func (d *demo) run(ctx context.Context) error {
	ws := stack.WorkspaceResourceID(0)
	fmt.Printf("Stand-ins on loopback: Entra managed identity %s, ARM %s, %d Databricks workspaces, Key Vault %s, Service Bus broker.\n",
		d.st.MSI.Endpoint(), d.st.ARM.Endpoint(), len(d.st.Workspaces), d.st.Vault.URL())
	fmt.Printf("Functions host simulator at %s runs the real handler binary, with App Service Authentication in front\n", d.host.URL())
	fmt.Println("and AUTHZ_POLICY granting the app role Tokens.Create; token values are delivered to Key Vault.")
	d.caller = []string{"Authorization", "Bearer " + fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{AppID: "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa", Roles: []string{"Tokens.Create"}})}

	d.say("A Logic App (managed identity with the Tokens.Create role) issues a token: POST /api/create-token")
	rec, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws, "comment": "demo: nightly ETL", "lifetimeSeconds": 86400, "requestId": "demo-1"}, 201)
	if err != nil {
		return err
	}
	uri, _ := rec["secretUri"].(string)
	d.showVault(stack.SecretName(0))

	d.say("It retries the same call (same requestId): the same token and secret, 200, no second token")
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws, "comment": "demo: nightly ETL", "lifetimeSeconds": 86400, "requestId": "demo-1"}, 200); err != nil {
		return err
	}

	d.say("It lists the identity's tokens (GET /api/list-tokens)")
	if _, err := d.call(ctx, http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws, nil, 200); err != nil {
		return err
	}

	d.say("Refusals, each before any upstream call: a bad request, a caller the policy does not know, no token at all")
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": "/subscriptions/x", "lifetimeSeconds": 0}, 400); err != nil {
		return err
	}
	caller := d.caller
	d.caller = []string{"Authorization", "Bearer " + fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{AppID: "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"})}
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws}, 403); err != nil {
		return err
	}
	d.caller = nil
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws}, 401); err != nil {
		return err
	}
	d.caller = caller

	d.say("It revokes the token by its secret (POST /api/revoke-token with secretUri): the version is disabled")
	if _, err := d.call(ctx, http.MethodPost, "/api/revoke-token", map[string]any{"secretUri": uri}, 200); err != nil {
		return err
	}
	d.showVault(stack.SecretName(0))

	sb, err := azservicebus.NewClientFromConnectionString(d.st.Broker.ConnectionString(), nil)
	if err != nil {
		return err
	}
	defer sb.Close(context.Background())
	rcv, err := sb.NewReceiverForQueue("token-results", nil)
	if err != nil {
		return err
	}
	defer rcv.Close(context.Background())
	d.say("Every outcome went to token-results as a CloudEvent (the retry's copy has the same id: duplicate detection drops it)")
	if err := d.drainResults(ctx, rcv, 4, 10*time.Second); err != nil {
		return err
	}

	d.say("Least privilege: a BI Logic App may only ever get read-only SQL tokens (a rule with requireScopes and scopes [\"sql:read*\"])")
	d.caller = []string{"Authorization", "Bearer " + fakeeasyauth.NewCallerToken(fakeeasyauth.Caller{AppID: biLogicApp})}
	bi, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws, "comment": "demo: BI dashboards", "scopes": []string{"sql:read:restricted-query"}, "lifetimeSeconds": 3600}, 201)
	if err != nil {
		return err
	}
	if tok, ok := d.st.Workspaces[0].Token(bi["tokenId"].(string)); ok {
		fmt.Printf("   Databricks holds the token with scopes %v: it may run read-only queries and call nothing else\n", tok.Scopes)
	}
	before := d.databricksCalls()
	fmt.Println("   Asking for write SQL, or for an unscoped token, is refused before any upstream call:")
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws, "scopes": []string{"sql"}}, 403); err != nil {
		return err
	}
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws}, 403); err != nil {
		return err
	}
	if after := d.databricksCalls(); after != before {
		return fmt.Errorf("%d Databricks calls for refused requests", after-before)
	}
	d.caller = caller
	if err := d.drainResults(ctx, rcv, 3, 10*time.Second); err != nil {
		return err
	}

	d.say("Automation drops a create command on the token-requests queue")
	cmd := `{"action":"create","workspaceResourceId":"` + stack.WorkspaceResourceID(1) + `","comment":"demo: queued","lifetimeSeconds":7200}`
	if err := d.send(ctx, sb, "token-requests", cmd, "demo-command-1"); err != nil {
		return err
	}
	if err := d.drainResults(ctx, rcv, 1, 20*time.Second); err != nil {
		return err
	}

	d.say("Event Grid reports a new workspace (ResourceWriteSuccess on workspace-events)")
	fresh := stack.WorkspaceResourceID(2)
	event := fmt.Sprintf(`{"topic":"/subscriptions/%[1]s","subject":"%[2]s","eventType":"Microsoft.Resources.ResourceWriteSuccess","eventTime":"%[3]s","id":"demo-event-1","data":{"resourceUri":"%[2]s","operationName":"Microsoft.Databricks/workspaces/write","status":"Succeeded","subscriptionId":"%[1]s"},"dataVersion":"2","metadataVersion":"1"}`,
		stack.Subscription, fresh, time.Now().UTC().Format(time.RFC3339))
	if err := d.send(ctx, sb, "workspace-events", event, "demo-event-msg-1"); err != nil {
		return err
	}
	fmt.Println("   The workspace is still provisioning: the event is rescheduled with backoff instead of burning deliveries…")
	time.Sleep(1500 * time.Millisecond)
	if err := d.st.ARM.SetProvisioningState(fresh, "Succeeded"); err != nil {
		return err
	}
	fmt.Println("   …ARM now reports it Succeeded.")
	if err := d.drainResults(ctx, rcv, 1, 30*time.Second); err != nil {
		return err
	}
	d.say("A second event for the same workspace finds the live, delivered token: nothing is issued")
	if err := d.send(ctx, sb, "workspace-events", strings.Replace(event, "demo-event-1", "demo-event-2", 1), "demo-event-msg-2"); err != nil {
		return err
	}
	if err := d.host.WaitIdle(ctx); err != nil {
		return err
	}
	if err := d.drainResults(ctx, rcv, 0, 2*time.Second); err != nil {
		return err
	}

	d.say("Rotation: 2-hour tokens are inside TOKEN_ROTATE_BEFORE (168h), so the timer renews them; the old ones keep working until they expire")
	if _, err := d.call(ctx, http.MethodPost, "/api/create-token", map[string]any{"workspaceResourceId": ws, "comment": "demo: short-lived", "lifetimeSeconds": 7200, "secretName": "demo-short",
		"scopes": []string{"sql:read", "unity-catalog:read"}}, 201); err != nil {
		return err
	}
	if err := d.drainResults(ctx, rcv, 1, 10*time.Second); err != nil {
		return err
	}
	fmt.Println("   → timer rotate-tokens")
	if _, err := d.host.InvokeTimer(ctx, "rotate-tokens", false); err != nil {
		return err
	}
	// Three secrets are inside the window: demo-short, the BI token and the queued 2-hour token.
	if err := d.drainResults(ctx, rcv, 3, 20*time.Second); err != nil {
		return err
	}
	d.showVault("demo-short")
	checks := 0
	for _, q := range d.st.Workspaces[0].Requests() {
		if q.Op == fakedatabricks.OpMe && q.Auth == "pat" && !q.ManagementTokenPresent {
			checks++
		}
	}
	fmt.Printf("   Each successor kept its scopes, lifetime and comment, and was proved with one call made with it (GET /api/2.0/preview/scim/v2/Me, %d on this workspace) before it became the latest version.\n", checks)

	calls := 0
	for _, n := range d.st.MSI.Calls() {
		calls += n
	}
	kv := 0
	for _, n := range d.st.Vault.Calls() {
		kv += n
	}
	fmt.Printf("\nUpstream calls: Entra %d, ARM %d, Databricks %d, Key Vault %d.\n", calls, len(d.st.ARM.Requests()), d.databricksCalls(), kv)
	return nil
}

// showVault prints a secret's versions as a consumer with read access
// would see them (values masked).
func (d *demo) showVault(name string) {
	for _, s := range d.st.Vault.Secrets() {
		if s.Name != name {
			continue
		}
		scopes := s.Tags["scopes"]
		if scopes == "" {
			scopes = "(unscoped)"
		}
		fmt.Printf("   Key Vault %s/%s: enabled=%v exp=%s tokenId=%.12s… scopes=%s value=%s\n", s.Name, s.Version[:8], s.Enabled,
			s.Expires.UTC().Format(time.RFC3339), s.Tags["tokenId"], scopes, mask([]byte(s.Value)))
	}
}

func (d *demo) databricksCalls() int {
	n := 0
	for _, w := range d.st.Workspaces {
		n += len(w.Requests())
	}
	return n
}

func (d *demo) call(ctx context.Context, method, path string, body any, want int) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
		fmt.Printf("   %s %s %s\n", method, path, b)
	} else {
		fmt.Printf("   %s %s\n", method, path)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.host.URL()+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(d.caller) == 2 {
		req.Header.Set(d.caller[0], d.caller[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("   → %d %s\n", resp.StatusCode, indent(mask(b)))
	if resp.StatusCode == http.StatusUnauthorized && len(b) == 0 {
		// The platform's answer, not the handler's: explain the empty body.
		fmt.Println("     (no body: App Service Authentication, its stand-in here, refused the call for want of a valid Entra")
		fmt.Println("      bearer token, before the Functions host or the handler saw it: no JSON error, no line in the handler's log.")
		fmt.Println("      The handler's own 401 Unauthenticated has a JSON body: AUTHZ_POLICY is set and no caller reached it.)")
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s answered %d, want %d", method, path, resp.StatusCode, want)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m, nil
}

func (d *demo) send(ctx context.Context, sb *azservicebus.Client, queue, body, id string) error {
	s, err := sb.NewSender(queue, nil)
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	fmt.Printf("   → %s: %s\n", queue, body)
	return s.SendMessage(ctx, &azservicebus.Message{Body: []byte(body), MessageID: &id, ContentType: ptr("application/json")}, nil)
}

func ptr[T any](v T) *T { return &v }

func (d *demo) drainResults(ctx context.Context, rcv *azservicebus.Receiver, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	got := 0
	for got < n && time.Now().Before(deadline) {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msgs, err := rcv.ReceiveMessages(rctx, n-got, nil)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		for _, m := range msgs {
			got++
			if d.shownFull {
				fmt.Printf("   ← token-results: %s\n", summary(m))
			} else {
				d.shownFull = true
				fmt.Printf("   ← token-results (MessageId %s, CorrelationId %s, Subject %s):\n     %s\n", m.MessageID, deref(m.CorrelationID), deref(m.Subject), indent(mask(m.Body)))
			}
			if err := rcv.CompleteMessage(ctx, m, nil); err != nil {
				return err
			}
		}
	}
	if got < n {
		return fmt.Errorf("received %d results, expected %d", got, n)
	}
	if n == 0 {
		rctx, cancel := context.WithTimeout(ctx, time.Until(deadline))
		msgs, _ := rcv.ReceiveMessages(rctx, 1, nil)
		cancel()
		if len(msgs) > 0 {
			return fmt.Errorf("an unexpected result: %s", summary(msgs[0]))
		}
		fmt.Println("   (no result: nothing was issued)")
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// summary is one line per result after the first, shown whole.
func summary(m *azservicebus.ReceivedMessage) string {
	var ev struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	_ = json.Unmarshal(m.Body, &ev)
	out := ev.Type
	for _, k := range []string{"requestId", "tokenId", "status", "comment", "scopes", "expiresAt", "tokenValue"} {
		if v, ok := ev.Data[k]; ok {
			out += fmt.Sprintf(" %s=%v", k, v)
		}
	}
	if e, ok := ev.Data["error"].(map[string]any); ok {
		out += fmt.Sprintf(" error=%v: %v", e["code"], e["message"])
	}
	return string(mask([]byte(out)))
}

var tokenValueRE = regexp.MustCompile(`dapi[0-9a-f]{4}[0-9a-f]+`)

// mask shortens token values in what the demo prints: they are fake, but a
// demo that prints secrets teaches the wrong habit.
func mask(b []byte) []byte {
	return tokenValueRE.ReplaceAllFunc(b, func(v []byte) []byte { return append(append([]byte{}, v[:8]...), "…(redacted)"...) })
}

func indent(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "     ", "  ") != nil {
		return string(b)
	}
	return out.String()
}

// scanLogs proves the run leaked nothing: every Entra access token and
// every Databricks token value the stand-ins handed out is searched for in
// the handler's log.
func (d *demo) scanLogs(path string) error {
	logs, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := bytes.Count(logs, []byte("\n"))
	secrets := d.st.Secrets()
	for _, s := range secrets {
		if s != "" && bytes.Contains(logs, []byte(s)) {
			return fmt.Errorf("a secret appears in the handler's log %s", path)
		}
	}
	fmt.Printf("Secret scan of the handler's log: 0 of %d lines hold any of the %d secrets issued.\n", lines, len(secrets))
	fmt.Println()
	printEvents(os.Stdout, countEvents(logs))
	return nil
}
