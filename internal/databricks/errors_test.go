package databricks

import (
	"net/http"
	"strings"
	"testing"

	"github.com/contoso/databricks-token-broker/internal/tokens"
)

func TestParseErrorBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		status      int
		body        string
		code, msg   string
		contract    tokens.Code
		msgContains string
	}{
		{"json", 403, `{"error_code":"PERMISSION_DENIED","message":"User 1234 does not have permission to use tokens.","details":[]}`,
			"PERMISSION_DENIED", "User 1234 does not have permission to use tokens.", tokens.CodeUpstreamError, "CAN USE"},
		{"quota", 400, `{"error_code":"QUOTA_EXCEEDED","message":"too many"}`, "QUOTA_EXCEEDED", "too many", tokens.CodeTokenQuotaExceeded, "600"},
		{"management header missing", 400, `{"error_code":"INVALID_PARAMETER_VALUE","message":"Management API token must be provided for service principal admin user login"}`,
			"INVALID_PARAMETER_VALUE", "Management API token must be provided for service principal admin user login", tokens.CodeUpstreamError, "Contributor"},
		{"plain CODE: msg", 400, "INVALID_PARAMETER_VALUE: lifetime too long\n", "INVALID_PARAMETER_VALUE", "lifetime too long", tokens.CodeInvalidRequest, "lifetime too long"},
		{"html 403", 403, "<html>\n<head><title>Error 403</title></head><body><h2>HTTP ERROR 403</h2><pre>Error 403 Invalid access token.</pre></body></html>",
			"", "Error 403 Invalid access token.", tokens.CodeUpstreamError, "Entra token"},
		{"throttled", 429, `{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow down"}`, "REQUEST_LIMIT_EXCEEDED", "slow down", tokens.CodeUpstreamUnavailable, ""},
		{"503 text", 503, "Service Unavailable", "", "Service Unavailable", tokens.CodeUpstreamUnavailable, ""},
		{"empty body", 500, "", "", "", tokens.CodeUpstreamUnavailable, ""},
		{"legacy error field", 400, `{"error":"bad thing"}`, "", "bad thing", tokens.CodeInvalidRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := parseErrorBody(tt.status, []byte(tt.body))
			if e.Code != tt.code || e.Message != tt.msg {
				t.Errorf("parsed %q %q, want %q %q", e.Code, e.Message, tt.code, tt.msg)
			}
			te := tokens.AsError(e.translate("create token"))
			if te.Code != tt.contract || !strings.Contains(te.Message, tt.msgContains) {
				t.Errorf("translated to %s %q", te.Code, te.Message)
			}
		})
	}
}

func TestNotFoundOnDelete(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"x"}`, `{"error_code":"INVALID_PARAMETER_VALUE","message":"No valid token with ID abc found"}`} {
		if e := parseErrorBody(http.StatusBadRequest, []byte(body)); !e.notFound() {
			t.Errorf("%s: not recognised as not found", body)
		}
	}
}

func FuzzParseErrorBody(f *testing.F) {
	f.Add(403, []byte(`{"error_code":"PERMISSION_DENIED","message":"m"}`))
	f.Add(403, []byte("<html><pre>Error 403 Invalid access token.</pre></html>"))
	f.Add(400, []byte("QUOTA_EXCEEDED: too many tokens"))
	f.Add(429, []byte(""))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := parseErrorBody(status, body)
		if len([]rune(e.Message)) > 301 && !strings.HasPrefix(strings.TrimSpace(string(body)), "{") && e.Code == "" {
			t.Fatalf("message not clipped: %d runes", len([]rune(e.Message)))
		}
		if te := tokens.AsError(e.translate("op")); te.Code == "" || te.Message == "" {
			t.Fatalf("no contract code or message for %d %q", status, body)
		}
	})
}
