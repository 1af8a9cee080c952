// Command handler is an Azure Functions custom handler that issues, lists,
// revokes and rotates Azure Databricks personal access tokens with the
// function's own Microsoft Entra identity. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso/databricks-token-broker/handler"
	"github.com/contoso/databricks-token-broker/internal/authz"
	"github.com/contoso/databricks-token-broker/internal/config"
	"github.com/contoso/databricks-token-broker/internal/databricks"
	"github.com/contoso/databricks-token-broker/internal/identity"
	"github.com/contoso/databricks-token-broker/internal/keyvault"
	"github.com/contoso/databricks-token-broker/internal/ledger"
	"github.com/contoso/databricks-token-broker/internal/redact"
	"github.com/contoso/databricks-token-broker/internal/results"
	"github.com/contoso/databricks-token-broker/internal/tokens"
	"github.com/contoso/databricks-token-broker/internal/upstream"
	"github.com/contoso/databricks-token-broker/internal/workspace"
)

func main() {
	// A small, bursty service: trade a little GC CPU for a smaller heap
	// (the figures are in docs/PERFORMANCE.md, "Memory"). GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "handler: invalid settings:\n%s\n", redact.Text(err.Error()))
		os.Exit(2)
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "handler: %s\n", redact.Text(err.Error()))
		os.Exit(1)
	}
}

// run wires the service and serves until ctx ends. Nothing here touches the
// network before the listener is up: the host only waits so long for the
// readiness probe, and every Azure client connects lazily.
func run(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	// Every line passes redact: a cause may quote an upstream's answer,
	// which may echo the request's credentials.
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: redact.Attr}))

	// One transport for every Azure HTTP client, Entra included. It never
	// follows a redirect (the adapters insist on that too): a 3xx would
	// re-send tokens to wherever it points.
	transport := upstream.NoRedirects(httpClient())
	cred, err := identity.New(cfg.Cloud.SDK, transport)
	if err != nil {
		return err
	}
	co := policy.ClientOptions{Transport: transport}
	resolver := workspace.New(cred, workspace.Options{
		ARMEndpoint: cfg.ARMEndpoint, ManagementAudience: cfg.Cloud.ManagementAudience,
		Hosts: cfg.AllowedHosts, Subscriptions: cfg.AllowedSubscriptions, ClientOptions: co,
		AllowInsecureLoopback: cfg.AllowInsecureLoopback,
	})
	var vault tokens.Vault // nil: inline delivery
	if cfg.KeyVaultURI != "" {
		u, _ := url.Parse(cfg.KeyVaultURI)
		v, err := keyvault.New(cfg.KeyVaultURI, cred, keyvault.Options{Loopback: config.IsLoopback(u.Hostname()), ClientOptions: co})
		if err != nil {
			return err
		}
		vault = v
	}
	dbx := databricks.New(cred, databricks.Options{DatabricksScope: cfg.Cloud.DatabricksScope(), ManagementScope: cfg.Cloud.ManagementScope(), ClientOptions: co,
		AllowInsecureLoopback: cfg.AllowInsecureLoopback})
	book, err := openLedger(cfg, cred, co)
	if err != nil {
		return err
	}
	svc := tokens.NewService(tokens.Deps{Resolver: resolver, API: dbx, Vault: vault, Authorizer: authz.Authorizer{Policy: cfg.Policy}, Ledger: book,
		ResultsCarryValues: cfg.ResultsIncludeTokenValue && cfg.PublishesResults(), Now: time.Now})

	var pub handler.Publisher
	if cfg.PublishesResults() {
		p, err := results.New(results.Options{Namespace: cfg.ServiceBusNamespace, Credential: cred, ConnectionString: cfg.ServiceBusConnectionString,
			Queue: cfg.ResultsQueue, IncludeTokenValue: cfg.ResultsIncludeTokenValue})
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.Close(ctx); err != nil {
				log.Warn("closing the results publisher", "error", err.Error())
			}
		}()
		pub = p
	} else {
		log.Warn("results are not published: set SERVICEBUS_NAMESPACE or SERVICEBUS_CONNECTION_STRING")
	}

	h := handler.New(log, svc, pub, handler.Options{
		Limits:       tokens.Limits{DefaultLifetime: cfg.DefaultLifetime, MaxLifetime: cfg.MaxLifetime, KeyVault: cfg.KeyVaultURI != ""},
		RetryBudget:  cfg.RetryBudget,
		RotateBefore: cfg.RotateBefore, MaxDeliveryCount: cfg.MaxDeliveryCount,
		EventTokenScopes:   cfg.EventTokenScopes,
		TokenRequestsQueue: cfg.TokenRequestsQueue, WorkspaceEventsQueue: cfg.WorkspaceEventsQueue,
		NotReadyBackoff: cfg.NotReadyBackoff,
		Policy:          cfg.Policy, TrustCallerHeaders: cfg.TrustsCallerHeaders(),
	})
	// Every operation may run its budget, clean up after itself and publish
	// its outcome: the reply must still get out, and on SIGTERM in-flight
	// work is drained rather than cut (a create cut between Databricks and
	// Key Vault would be reconciled by the next attempt, but a drained one
	// needs nothing). A kill -9 leaves that reconciliation to the retry or
	// the redelivery, which find the token by its marker.
	longest := handler.LongestOperation(cfg.RetryBudget) + 30*time.Second
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      longest,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Address())
	if err != nil {
		return err
	}
	if cfg.Policy == nil {
		log.Warn("no AUTHZ_POLICY: any caller holding a function key may create, revoke and list tokens in every allowed workspace")
	} else {
		log.Info("authorization policy loaded", "rules", cfg.Policy.Rules(), "queue_rules", cfg.Policy.HasQueueRules())
	}
	log.Info("ledger", "where", cfg.Ledger.String())
	if cfg.Ledger.InMemory() {
		log.Warn("the ledger is in memory: one live token per request id holds within this instance only; set AzureWebJobsStorage or AzureWebJobsStorage__tableServiceUri to share it")
	}
	log.Info("listening", "address", ln.Addr().String(), "cloud", cfg.Cloud.Name, "allowed_hosts", cfg.AllowedHosts.String(),
		"delivery", delivery(cfg), "results_queue", cfg.ResultsQueue)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight invocations", "grace_s", int(longest.Seconds()))
	sctx, cancel := context.WithTimeout(context.Background(), longest)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// openLedger opens the record of issued tokens: the app's storage account
// when one is configured, else this instance's memory.
func openLedger(cfg config.Config, cred azcore.TokenCredential, co policy.ClientOptions) (tokens.Ledger, error) {
	lo := ledger.Options{Retention: cfg.Ledger.Retention}
	to := ledger.TableOptions{Options: lo, AllowInsecureLoopback: cfg.AllowInsecureLoopback, ClientOptions: co}
	to.ClientOptions.Cloud = cfg.Cloud.SDK
	var l ledger.Ledger
	var err error
	switch {
	case cfg.Ledger.InMemory():
		l = ledger.NewMemory(lo)
	case cfg.Ledger.UsesConnectionString():
		l, err = ledger.NewTableFromConnectionString(cfg.Ledger.Connection, cfg.Ledger.Table, to)
	default:
		l, err = ledger.NewTable(cfg.Ledger.TableEndpoint, cfg.Ledger.Table, cred, to)
	}
	if err != nil {
		return nil, err
	}
	return ledger.ForService(l, 0), nil
}

func delivery(cfg config.Config) string {
	if cfg.KeyVaultURI != "" {
		return "keyvault"
	}
	return "inline"
}

// httpClient is the transport of every Azure HTTP client (Service Bus is
// AMQP, which has no redirects). HTTP/1.1 with a pool
// of keep-alive connections per host: concurrent invocations get a
// connection each instead of queueing on one HTTP/2 connection, which the
// benchmarks showed costs latency under load (docs/PERFORMANCE.md).
func httpClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	t.MaxIdleConns = 256
	// A workspace's Token API takes some 40 requests a second; more than 32
	// connections to one host would only queue there, and cost memory here.
	t.MaxConnsPerHost = 32
	t.MaxIdleConnsPerHost = 32
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t}
}
