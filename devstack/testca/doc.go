// Package testca is the test certificate authority shared by the devstack
// stand-ins (Entra, ARM, Databricks, Key Vault).
//
// New makes an ECDSA P-256 root in memory; ServerTLSConfig issues leaf
// certificates for 127.0.0.1, ::1 and localhost (plus any extra hosts), and
// Serve runs an HTTPS server on 127.0.0.1 with a random port. Clients trust
// the root through Pool, ClientTLSConfig, Transport or Client (an
// *http.Client is a valid azcore ClientOptions.Transport). A separate process
// written in Go trusts it when SSL_CERT_FILE points at the file WriteFile
// produced (Go on Linux reads SSL_CERT_FILE for the system pool).
//
// It deliberately does not do revocation (no CRL/OCSP), intermediates, client
// certificates, or key persistence: every New is a fresh root that lives as
// long as the process.
package testca
