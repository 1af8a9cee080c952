package e2e

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/kit"
	"github.com/contoso/databricks-token-broker/devstack/stack"
)

// A client that sends its headers slowly (or never finishes them) cannot
// hold a connection: the server's read-header timeout closes it.
func TestSlowClientIsCutOff(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{})
	addr := strings.TrimPrefix(handlerURL(t, e), "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /api/create-token HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server held a half-sent request open for %s", time.Since(start).Round(time.Second))
	}
}

// The binary binds loopback unless told otherwise, and plain http to a
// non-loopback endpoint is a bad setting (see the config tests for every
// combination); here, through the real binary.
func TestInsecureEndpointsRefusedAtStart(t *testing.T) {
	t.Parallel()
	out, code := runHandler(t, "AZURE_RESOURCE_MANAGER_ENDPOINT=http://management.example.com")
	if code != 2 || !strings.Contains(out, "AZURE_RESOURCE_MANAGER_ENDPOINT") {
		t.Errorf("http ARM endpoint: exit %d, output %s", code, out)
	}
	out, code = runHandler(t, "KEY_VAULT_URI=http://127.0.0.1:8443")
	if code != 2 || !strings.Contains(out, "ALLOW_INSECURE_LOOPBACK") {
		t.Errorf("http loopback vault without ALLOW_INSECURE_LOOPBACK: exit %d, output %s", code, out)
	}
}

// With ALLOW_INSECURE_LOOPBACK, stand-ins on loopback may speak plain
// http: ARM, the workspace (an http:// workspaceUrl) and Key Vault.
func TestPlainHTTPStandInsOnLoopback(t *testing.T) {
	t.Parallel()
	e := start(t, envOptions{plain: true, keyVault: true})
	if !strings.HasPrefix(e.stack.ARM.Endpoint(), "http://") || !strings.HasPrefix(e.stack.Vault.URL(), "http://") {
		t.Fatalf("the stand-ins are not plain http: %s %s", e.stack.ARM.Endpoint(), e.stack.Vault.URL())
	}
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 3600})
	if r.Status != 201 || !strings.HasPrefix(r.json(t)["secretUri"].(string), e.stack.Vault.URL()) || r.json(t)["workspaceUrl"] != "http://"+e.stack.Workspaces[0].Host() {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	rv := e.do("POST", "/api/revoke-token", map[string]any{"secretUri": r.json(t)["secretUri"]})
	if rv.Status != 200 || rv.json(t)["status"] != "revoked" {
		t.Fatalf("revoke: %d %s", rv.Status, rv.Body)
	}
	for _, req := range e.stack.Workspaces[0].Requests() {
		if !req.ManagementTokenPresent {
			t.Errorf("%s %s went without the management token", req.Method, req.Path)
		}
	}
}

// A service principal by client secret (azidentity's EnvironmentCredential)
// instead of a managed identity: the same flows, tokens from an Entra
// authority stand-in.
func TestServicePrincipalBySecret(t *testing.T) {
	t.Parallel()
	var authority *fakeentra.Authority
	const clientID, secret = "dddddddd-4444-4444-8444-dddddddddddd", "not-a-real-secret-0123456789"
	e := start(t, envOptions{before: func(s *stack.Stack) {
		var err error
		authority, err = fakeentra.StartAuthority(s.CA, fakeentra.AuthorityOptions{Apps: []fakeentra.App{{ClientID: clientID, ObjectID: "eeeeeeee-5555-4555-8555-eeeeeeeeeeee", Secret: secret}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { authority.Close() })
	}, settingsFn: func() []string {
		return []string{"IDENTITY_ENDPOINT=", "IDENTITY_HEADER=", "AZURE_TOKEN_CREDENTIALS=EnvironmentCredential",
			"AZURE_TENANT_ID=" + authority.TenantID(), "AZURE_CLIENT_ID=" + clientID, "AZURE_CLIENT_SECRET=" + secret,
			"AZURE_AUTHORITY_HOST=" + authority.URL()}
	}})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 3600})
	if r.Status != 201 {
		t.Fatalf("create as a service principal: %d %s\n%s", r.Status, r.Body, e.output.String())
	}
	if len(e.stack.MSI.Calls()) != 0 || len(authority.Calls()) == 0 {
		t.Errorf("managed identity calls %v, authority calls %v: the service principal should have been used", e.stack.MSI.Calls(), authority.Calls())
	}
	if strings.Contains(e.output.String(), secret) {
		t.Error("the client secret appears in the handler's output")
	}
	for _, tok := range authority.Issued() {
		if strings.Contains(e.output.String(), tok) {
			t.Error("an access token appears in the handler's output")
		}
	}
}

// TestNoCredentialPointsAtAzLogin proves that a local user with no
// credential at all is told what to do: the 502 names the identity chain
// azidentity tried and points at `az login`, instead of saying that Entra
// refused and naming only AZURE_CLIENT_ID and AZURE_TENANT_ID. The chain is
// narrowed to the developer credentials (AZURE_TOKEN_CREDENTIALS=dev) and
// PATH holds no az, so nothing is contacted: managed identity would probe
// the network.
func TestNoCredentialPointsAtAzLogin(t *testing.T) {
	t.Parallel()
	port := freeTCPPort(t)
	cmd := exec.Command(handlerBinary)
	cmd.Env = []string{"PATH=" + t.TempDir(), "HOME=" + t.TempDir(), "FUNCTIONS_CUSTOMHANDLER_PORT=" + port, "AZURE_TOKEN_CREDENTIALS=dev"}
	var out kit.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://127.0.0.1:" + port
	var resp *http.Response
	var err error
	for range 200 {
		if resp, err = http.Post(url+"/api/create-token", "application/json",
			strings.NewReader(`{"workspaceResourceId":"`+ws(0)+`"}`)); err == nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the handler never answered: %v\n%s", err, out.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	msg := string(body)
	if resp.StatusCode != 502 || !strings.Contains(msg, `"UpstreamError"`) {
		t.Fatalf("%d %s; want 502 UpstreamError", resp.StatusCode, msg)
	}
	for _, want := range []string{"az login", "Azure CLI", "AZURE_TOKEN_CREDENTIALS"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the 502 does not mention %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "refused") {
		t.Errorf("the 502 says Entra refused, but Entra was never asked: %s", msg)
	}
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// A workspace (or a gateway before it) that echoes the request's
// Authorization and management-token headers in its error answer: the
// service quotes Databricks' message to the caller and logs the cause, and
// neither may carry the Entra tokens on. Over HTTP and from the queue; the
// harness's scan of every log line, answer and result checks the rest.
func TestEchoedCredentialsAreNotRepeated(t *testing.T) {
	t.Parallel()
	e := startVault(t, envOptions{})
	w := e.stack.Workspaces[0]
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.EchoCredentials{})
	r := e.create(map[string]any{"workspaceResourceId": ws(0), "lifetimeSeconds": 600})
	if r.Status != 400 && r.Status != 502 || !strings.Contains(string(r.Body), "Bearer [REDACTED]") {
		t.Errorf("create answered %d %s; want Databricks' refusal with its credentials redacted", r.Status, r.Body)
	}
	w.InjectFault(fakedatabricks.OpList, fakedatabricks.EchoCredentials{Status: http.StatusForbidden})
	if r := e.do(http.MethodGet, "/api/list-tokens?workspaceResourceId="+ws(0), nil); r.Status != 502 || !strings.Contains(string(r.Body), "[REDACTED]") {
		t.Errorf("list answered %d %s; want 502 with the echo redacted", r.Status, r.Body)
	}
	e.results(1, 20*time.Second) // the HTTP create's Failed result, also scanned
	w.InjectFault(fakedatabricks.OpCreate, fakedatabricks.EchoCredentials{})
	e.send("token-requests", command(map[string]any{"action": "create", "workspaceResourceId": ws(0), "lifetimeSeconds": 600}), "echo-1")
	res := e.results(1, 20*time.Second)[0]
	if msg, _ := res.data()["error"].(map[string]any)["message"].(string); res.Subject != "Databricks.Token.Failed" || !strings.Contains(msg, "[REDACTED]") {
		t.Errorf("result %s %v; want Failed with the echo redacted", res.Subject, res.data())
	}
	if len(e.stack.MSI.Issued()) == 0 {
		t.Fatal("no Entra token was issued: the scan would prove nothing")
	}
}
