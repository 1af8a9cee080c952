// Package stack starts the local stand-ins together — a test CA, the Entra
// managed-identity endpoint, ARM, Databricks workspaces, Key Vault, the
// Service Bus broker and Azurite's table service — and says which settings
// point the handler at them.
// The demo, the end-to-end tests and the benchmarks all start it the same
// way, so the handler binary they run is configured exactly as in Azure
// except for endpoints and the test CA (handed over with SSL_CERT_FILE).
package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contoso/databricks-token-broker/devstack/fakearm"
	"github.com/contoso/databricks-token-broker/devstack/fakedatabricks"
	"github.com/contoso/databricks-token-broker/devstack/fakeentra"
	"github.com/contoso/databricks-token-broker/devstack/fakekeyvault"
	"github.com/contoso/databricks-token-broker/devstack/fakeservicebus"
	"github.com/contoso/databricks-token-broker/devstack/faketables"
	"github.com/contoso/databricks-token-broker/devstack/testca"
	"github.com/contoso/databricks-token-broker/internal/tokens"
)

// Subscription is the stand-in subscription every workspace lives in.
const Subscription = "6f1c8e2a-3b4d-4c5e-9f60-7a8b9c0d1e2f"

// Options choose what to start.
type Options struct {
	// Dir receives the CA certificate file. Required.
	Dir string
	// Workspaces is how many Databricks workspaces to start (default 1).
	Workspaces int
	// ServiceBus starts the AMQP broker (needs node and the broker's
	// node_modules).
	ServiceBus bool
	// Queues configure the broker; default: the three queues of the
	// contract, max delivery count 10, duplicate detection on results.
	Queues []fakeservicebus.QueueConfig
	// MaxLiveTokens overrides the workspaces' 600-token quota (benchmarks
	// issue thousands).
	MaxLiveTokens int
	// Plain serves ARM, the workspaces and Key Vault over plain http on
	// loopback (what ALLOW_INSECURE_LOOPBACK allows) instead of TLS.
	Plain bool
	// KeyVault starts the Key Vault stand-in (Key Vault delivery).
	KeyVault bool
	// BrokerLog receives the broker's own log.
	BrokerLog interface{ Write([]byte) (int, error) }
	// Ledger starts Azurite's table service for the ledger (needs node and
	// Azurite's node_modules); Env then sets AzureWebJobsStorage to it, as
	// the Functions host would have it.
	Ledger bool
	// TablesLog receives Azurite's output.
	TablesLog interface{ Write([]byte) (int, error) }
}

// Stack is a running set of stand-ins.
type Stack struct {
	CA         *testca.CA
	CAFile     string
	MSI        *fakeentra.MSI
	ARM        *fakearm.Server
	Workspaces []*fakedatabricks.Workspace
	Vault      *fakekeyvault.Vault
	Broker     *fakeservicebus.Broker
	Tables     *faketables.Server

	maxLive int
	plain   bool
}

// WorkspaceResourceID names workspace i (0-based).
func WorkspaceResourceID(i int) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/rg-demo/providers/Microsoft.Databricks/workspaces/dbw-%02d", Subscription, i+1)
}

// DefaultQueues are the contract's queues as the Bicep creates them.
func DefaultQueues() []fakeservicebus.QueueConfig {
	return []fakeservicebus.QueueConfig{
		{Name: "token-requests", MaxDeliveryCount: 10, LockDuration: time.Minute},
		{Name: "workspace-events", MaxDeliveryCount: 10, LockDuration: time.Minute},
		{Name: "token-results", MaxDeliveryCount: 10, LockDuration: time.Minute, DuplicateDetectionWindow: 10 * time.Minute},
	}
}

// Start starts the stand-ins. On error, whatever started is closed.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if opts.Dir == "" {
		return nil, errors.New("stack: Dir is required")
	}
	if opts.Workspaces == 0 {
		opts.Workspaces = 1
	}
	s := &Stack{maxLive: opts.MaxLiveTokens, plain: opts.Plain}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.CA, err = testca.New(); err != nil {
		return nil, err
	}
	s.CAFile = filepath.Join(opts.Dir, "devstack-ca.pem")
	if err = s.CA.WriteFile(s.CAFile); err != nil {
		return nil, err
	}
	if s.MSI, err = fakeentra.StartMSI(fakeentra.MSIOptions{}); err != nil {
		return nil, fmt.Errorf("stack: entra: %w", err)
	}
	if s.ARM, err = fakearm.Start(s.CA, fakearm.Options{Plain: opts.Plain}); err != nil {
		return nil, fmt.Errorf("stack: arm: %w", err)
	}
	for i := range opts.Workspaces {
		if _, err = s.AddWorkspace(WorkspaceResourceID(i)); err != nil {
			return nil, err
		}
	}
	if opts.KeyVault {
		if s.Vault, err = fakekeyvault.Start(s.CA, fakekeyvault.Options{TenantID: s.MSI.TenantID(), Plain: opts.Plain}); err != nil {
			return nil, fmt.Errorf("stack: key vault: %w", err)
		}
	}
	if opts.ServiceBus {
		q := opts.Queues
		if q == nil {
			q = DefaultQueues()
		}
		sbo := fakeservicebus.Options{Queues: q}
		if opts.BrokerLog != nil {
			sbo.Stderr = opts.BrokerLog
		}
		if s.Broker, err = fakeservicebus.Start(ctx, sbo); err != nil {
			return nil, fmt.Errorf("stack: service bus: %w", err)
		}
	}
	if opts.Ledger {
		to := faketables.Options{}
		if opts.TablesLog != nil {
			to.Log = opts.TablesLog
		}
		if s.Tables, err = faketables.Start(ctx, to); err != nil {
			return nil, fmt.Errorf("stack: tables: %w", err)
		}
	}
	return s, nil
}

// AddWorkspace starts one more workspace and registers it with ARM.
func (s *Stack) AddWorkspace(resourceID string) (*fakedatabricks.Workspace, error) {
	ws, err := fakedatabricks.StartWorkspace(s.CA, fakedatabricks.Options{ResourceID: resourceID, MaxLiveTokens: s.maxLive, Plain: s.plain})
	if err != nil {
		return nil, fmt.Errorf("stack: databricks: %w", err)
	}
	s.Workspaces = append(s.Workspaces, ws)
	url := ws.Host() // ARM's workspaceUrl has no scheme: https
	if s.plain {
		url = "http://" + url
	}
	if err := s.ARM.AddWorkspace(resourceID, url, "Succeeded"); err != nil {
		return nil, fmt.Errorf("stack: arm: %w", err)
	}
	return ws, nil
}

// AllowedHosts is DATABRICKS_ALLOWED_HOSTS for the stand-in workspaces.
func (s *Stack) AllowedHosts() string {
	hosts := make([]string, len(s.Workspaces))
	for i, w := range s.Workspaces {
		hosts[i] = w.Host()
	}
	return strings.Join(hosts, ",")
}

// Env is the handler's environment for this stack: the identity endpoint,
// ARM, the allow-list, the results queue, the ledger's storage, and the CA.
// Plain AMQP to the broker and plain http to Azurite are loopback-only and
// need ALLOW_INSECURE_LOOPBACK, like http://.
func (s *Stack) Env() []string {
	env := []string{
		"SSL_CERT_FILE=" + s.CAFile,
		"IDENTITY_ENDPOINT=" + s.MSI.Endpoint(),
		"IDENTITY_HEADER=" + s.MSI.Header(),
		"AZURE_TOKEN_CREDENTIALS=ManagedIdentityCredential",
		"AZURE_RESOURCE_MANAGER_ENDPOINT=" + s.ARM.Endpoint(),
		"DATABRICKS_ALLOWED_HOSTS=" + s.AllowedHosts(),
		"DATABRICKS_ALLOWED_SUBSCRIPTIONS=" + Subscription,
	}
	if s.Broker != nil || s.Tables != nil || s.plain {
		env = append(env, "ALLOW_INSECURE_LOOPBACK=true")
	}
	if s.Tables != nil {
		env = append(env, "AzureWebJobsStorage="+s.Tables.ConnectionString())
	}
	if s.Broker != nil {
		env = append(env, "SERVICEBUS_CONNECTION_STRING="+s.Broker.ConnectionString())
	}
	if s.Vault != nil {
		env = append(env, "KEY_VAULT_URI="+s.Vault.URL())
	}
	return env
}

// Secrets lists every credential the stand-ins handed out — Entra access
// tokens and Databricks token values — so a test can prove none of them
// reached a log line.
func (s *Stack) Secrets() []string {
	out := append([]string(nil), s.MSI.Issued()...)
	for _, w := range s.Workspaces {
		for _, t := range w.Tokens() {
			out = append(out, t.Value)
		}
	}
	if s.Vault != nil {
		for _, sec := range s.Vault.Secrets() {
			out = append(out, sec.Value)
		}
	}
	if s.Tables != nil {
		// Azurite's account key is public, but a connection string is a
		// secret wherever it comes from: none may reach a log line.
		out = append(out, faketables.AccountKey)
	}
	return out
}

// Close stops everything.
func (s *Stack) Close() {
	if s.Broker != nil {
		_ = s.Broker.Close()
	}
	if s.Tables != nil {
		_ = s.Tables.Close()
	}
	for _, w := range s.Workspaces {
		_ = w.Close()
	}
	if s.Vault != nil {
		_ = s.Vault.Close()
	}
	if s.ARM != nil {
		_ = s.ARM.Close()
	}
	if s.MSI != nil {
		_ = s.MSI.Close()
	}
	if s.CAFile != "" {
		_ = os.Remove(s.CAFile)
	}
}

// SecretName is the Key Vault secret that workspace i's tokens go to by
// default (contract section 3: databricks-<name>-<hash of the id>).
func SecretName(i int) string {
	id, err := tokens.ParseWorkspaceID(WorkspaceResourceID(i))
	if err != nil {
		panic(err) // WorkspaceResourceID always parses
	}
	return tokens.DefaultSecretName(id)
}
