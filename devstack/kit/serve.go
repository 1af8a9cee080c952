package kit

import (
	"net/http"

	"github.com/contoso/databricks-token-broker/devstack/testca"
)

// Serve is how the constructor of an Azure REST stand-in (ARM, Key Vault,
// a Databricks workspace) ends: s, set up and its own handler, is served
// on 127.0.0.1 over HTTPS with a leaf from c for the loopback names and
// hosts, or over plain HTTP when plain (the stand-ins offer it to test
// ALLOW_INSECURE_LOOPBACK). The server is kept in *srv, where s finds its
// URL, its Closing channel and its Close, and s is returned.
func Serve[S http.Handler](c *testca.CA, s S, srv **testca.Server, plain bool, hosts []string) (S, error) {
	l, err := c.ServeOrPlain(s, plain, hosts...)
	if err != nil {
		var none S
		return none, err
	}
	*srv = l
	return s, nil
}
