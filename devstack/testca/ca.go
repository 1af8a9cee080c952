package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// CA is an in-memory ECDSA P-256 root certificate authority. It is safe for
// concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	pool    *x509.CertPool

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // keyed by the sorted SAN list
}

// New creates a fresh root CA valid from one hour ago for ten years.
func New() (*CA, error) {
	key, tmpl, err := newTemplate("generate key",
		pkix.Name{CommonName: "devstack test root CA", Organization: []string{"databricks-token-broker devstack"}},
		time.Now().AddDate(10, 0, 0))
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	tmpl.MaxPathLenZero = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse root: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pool:    pool,
		leaves:  map[string]*tls.Certificate{},
	}, nil
}

// newTemplate draws what every certificate here starts from: a P-256 key
// (what names it in an error), a random 127-bit serial, and a validity
// from an hour ago, so that a clock a little behind still accepts it,
// until notAfter.
func newTemplate(what string, subject pkix.Name, notAfter time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", what, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("ca: serial: %w", err)
	}
	return key, &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
	}, nil
}

// Certificate returns the root certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM returns the root certificate, PEM encoded.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// WriteFile writes the root certificate (PEM) to path with mode 0644. Point
// SSL_CERT_FILE at it to make a child Go process on Linux trust the stand-ins.
func (c *CA) WriteFile(path string) error {
	if err := os.WriteFile(path, c.certPEM, 0o644); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// Pool returns a new certificate pool holding only the root.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ClientTLSConfig returns a TLS client configuration trusting only the root.
func (c *CA) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool(), MinVersion: tls.VersionTLS12}
}

// Transport returns a new HTTP transport (a clone of http.DefaultTransport)
// trusting only the root.
func (c *CA) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = c.ClientTLSConfig()
	return t
}

// Client returns a new HTTP client trusting only the root. It satisfies
// azcore's policy.Transporter, so it can be used as ClientOptions.Transport.
func (c *CA) Client() *http.Client {
	return &http.Client{Transport: c.Transport(), Timeout: time.Minute}
}

// ServerTLSConfig returns a server TLS configuration whose leaf certificate is
// valid for 127.0.0.1, ::1, localhost and the given extra hosts (names or IP
// addresses). Leaves are cached per host set. It advertises h2 and http/1.1.
// It panics only if the key pair cannot be generated, which does not happen
// with a working crypto/rand.
func (c *CA) ServerTLSConfig(hosts ...string) *tls.Config {
	leaf, err := c.leaf(hosts)
	if err != nil {
		panic(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{*leaf},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

func (c *CA) leaf(extra []string) (*tls.Certificate, error) {
	set := map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true}
	for _, h := range extra {
		if h = strings.TrimSpace(h); h != "" {
			set[strings.ToLower(h)] = true
		}
	}
	hosts := make([]string, 0, len(set))
	for h := range set {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	cacheKey := strings.Join(hosts, ",")

	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.leaves[cacheKey]; ok {
		return l, nil
	}
	key, tmpl, err := newTemplate("leaf key", pkix.Name{CommonName: hosts[0]}, time.Now().Add(397*24*time.Hour))
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: create leaf: %w", err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse leaf: %w", err)
	}
	l := &tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: parsed}
	c.leaves[cacheKey] = l
	return l, nil
}

// Listen listens on 127.0.0.1 with a random port and wraps the listener in
// TLS with cfg. It returns the listener and its base URL, https://127.0.0.1:PORT.
func Listen(cfg *tls.Config) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("ca: listen: %w", err)
	}
	return tls.NewListener(ln, cfg), "https://" + ln.Addr().String(), nil
}

// Server is an HTTPS server on 127.0.0.1 with a random port, using a leaf
// certificate from a CA.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	url     string
	done    chan struct{}
	closing chan struct{}
	once    sync.Once
	err     error
}

// Serve starts serving h over HTTPS on 127.0.0.1:0 with a leaf certificate
// for the loopback names and hosts.
func (c *CA) Serve(h http.Handler, hosts ...string) (*Server, error) {
	ln, u, err := Listen(c.ServerTLSConfig(hosts...))
	if err != nil {
		return nil, err
	}
	return serve(ln, u, h), nil
}

// ServeOrPlain is Serve, or ServePlain when plain: the stand-ins of
// HTTPS services offer plain HTTP to test ALLOW_INSECURE_LOOPBACK.
func (c *CA) ServeOrPlain(h http.Handler, plain bool, hosts ...string) (*Server, error) {
	if plain {
		return ServePlain(h)
	}
	return c.Serve(h, hosts...)
}

// ServePlain starts serving h over plain HTTP on 127.0.0.1:0 (for endpoints
// that are plain HTTP in Azure too, such as App Service's identity endpoint).
func ServePlain(h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ca: listen: %w", err)
	}
	return serve(ln, "http://"+ln.Addr().String(), h), nil
}

func serve(ln net.Listener, u string, h http.Handler) *Server {
	s := &Server{
		ln:      ln,
		url:     u,
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			// TLS handshake failures from clients that do not trust the
			// CA are expected in tests; keep them out of test output.
			ErrorLog: log.New(io.Discard, "", 0),
		},
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.err = err
		close(s.done)
	}()
	return s
}

// URL returns the base URL: https://127.0.0.1:PORT (or http:// for ServePlain).
func (s *Server) URL() string { return s.url }

// Addr returns host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Closing is closed when Close is called, so that a handler waiting out
// an injected delay can stop at once.
func (s *Server) Closing() <-chan struct{} { return s.closing }

// Close closes the listener and all connections at once (it does not wait
// for handlers that ignore their request context).
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		err = s.srv.Close()
		<-s.done
		if err == nil {
			err = s.err
		}
	})
	return err
}
