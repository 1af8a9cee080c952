package testca_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso/databricks-token-broker/devstack/testca"
)

func newCA(t *testing.T) *testca.CA {
	t.Helper()
	c, err := testca.New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLeafNamesAndTrust(t *testing.T) {
	t.Parallel()
	c := newCA(t)
	cfg := c.ServerTLSConfig("devstack.test", "10.1.2.3")
	leaf := cfg.Certificates[0].Leaf
	for _, h := range []string{"127.0.0.1", "::1", "localhost", "devstack.test", "10.1.2.3"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.Pool(), DNSName: "localhost"}); err != nil {
		t.Fatal(err)
	}
	if c.ServerTLSConfig("10.1.2.3", "DEVSTACK.test").Certificates[0].Leaf != leaf {
		t.Error("leaf not cached per host set")
	}
	if other := newCA(t); func() error {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool()})
		return err
	}() == nil {
		t.Error("leaf verified by another CA")
	}
}

func TestServeAndClient(t *testing.T) {
	t.Parallel()
	c := newCA(t)
	s, err := c.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || !strings.HasSuffix(s.URL(), s.Addr()) {
		t.Fatalf("URL %s Addr %s", s.URL(), s.Addr())
	}
	resp, err := c.Client().Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("body %q", b)
	}
	// "localhost" is in the certificate too.
	_, port, _ := net.SplitHostPort(s.Addr())
	if resp, err := c.Client().Get("https://localhost:" + port); err == nil {
		resp.Body.Close()
	} else if !strings.Contains(err.Error(), "connection refused") { // localhost may resolve to ::1 first
		t.Fatal(err)
	}
	if _, err := newCA(t).Client().Get(s.URL()); err == nil {
		t.Fatal("client of another CA connected")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	p, err := testca.ServePlain(http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.HasPrefix(p.URL(), "http://127.0.0.1:") {
		t.Fatal(p.URL())
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	c := newCA(t)
	ln, u, err := testca.Listen(c.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(u, "https://"), c.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// TestSSLCertFile checks that a separate Go process trusts the CA through
// SSL_CERT_FILE and its default HTTP client, as the handler binary will.
func TestSSLCertFile(t *testing.T) {
	t.Parallel()
	c := newCA(t)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := c.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "CERTIFICATE" || string(b) != string(c.CertPEM()) {
		t.Fatal("WriteFile wrote something else than CertPEM")
	}
	s, err := c.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "trusted") }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+path, "SSL_CERT_DIR=/nonexistent", "CA_HELPER_URL="+s.URL())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "body=trusted") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestMain doubles as the child process of TestSSLCertFile: with
// CA_HELPER_URL set, the test binary only fetches that URL with Go's default
// client (so SSL_CERT_FILE decides trust) and prints the body.
func TestMain(m *testing.M) {
	if u := os.Getenv("CA_HELPER_URL"); u != "" {
		resp, err := http.Get(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("body=%s\n", b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
