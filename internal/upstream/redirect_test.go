package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func TestNoRedirects(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/relative":
			w.Header().Set("Location", "/elsewhere?sig=secret")
			w.WriteHeader(http.StatusFound)
		case "/no-location":
			w.WriteHeader(http.StatusNotModified)
		case "/elsewhere":
			t.Error("the redirect was followed")
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	defer srv.Close()
	tr := NoRedirects(srv.Client())
	if NoRedirects(tr) != tr {
		t.Error("wrapping twice added a layer")
	}
	host := strings.TrimPrefix(srv.URL, "https://")
	for _, tt := range []struct {
		path, location string
		status         int
	}{
		{"/relative", srv.URL, http.StatusFound},
		{"/no-location", "", http.StatusNotModified},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
		resp, err := tr.Do(req)
		var re *RedirectError
		if resp != nil || !errors.As(err, &re) || re.Host != host || re.Status != tt.status || re.Location != tt.location {
			t.Errorf("%s: %v, %#v", tt.path, resp, err)
			continue
		}
		if strings.Contains(err.Error(), "sig=secret") {
			t.Errorf("%s: the Location's query is in the error: %v", tt.path, err)
		}
		// Translated once, as an UpstreamError: NonRetriable must not read as "no credential".
		if te := Common("Azure Key Vault", err); te == nil || te.Code != tokens.CodeUpstreamError || !strings.Contains(te.Message, host) {
			t.Errorf("%s: Common = %+v", tt.path, te)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	if resp, err := tr.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("a plain answer: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("%d requests reached the server; want 3", n)
	}
}
