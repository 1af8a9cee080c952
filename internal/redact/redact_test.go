package redact_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/contoso/databricks-token-broker/internal/redact"
)

func TestText(t *testing.T) {
	t.Parallel()
	const jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiIyZmY4MTRhNi0zMzA0In0.c2lnbmF0dXJlLXBhcnQ"
	const pat = "dapi0123456789abcdef0123456789abcdef"
	tests := []struct {
		name, in, want string
	}{
		{"plain text is kept", "the workspace refused: PERMISSION_DENIED", "the workspace refused: PERMISSION_DENIED"},
		{"a token id is kept", `token_id "5715498424f15ee0213be729257b120bb9f3e1c2"`, `token_id "5715498424f15ee0213be729257b120bb9f3e1c2"`},
		{"an echoed Authorization header", "Invalid header Authorization: Bearer " + jwt + " (expired)", "Invalid header Authorization: Bearer [REDACTED] (expired)"},
		{"a bare JWT", `{"message":"bad management token ` + jwt + `"}`, `{"message":"bad management token [REDACTED]"}`},
		{"a PAT", "token " + pat + " is invalid", "token [REDACTED] is invalid"},
		{"a PAT with its suffix", "Bearer " + pat + "-2", "Bearer [REDACTED]"},
		{"a connection string", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc123+/=xyz", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=[REDACTED]"},
		{"a storage key", "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=Zm9vYmFy==;EndpointSuffix=core.windows.net", "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=[REDACTED];EndpointSuffix=core.windows.net"},
		{"a SAS signature", "GET https://st.blob.core.windows.net/c?sv=2024&sig=AbC%2Fdef&se=2026", "GET https://st.blob.core.windows.net/c?sv=2024&sig=[REDACTED]&se=2026"},
		{"a client secret in a form", "grant_type=client_credentials&client_secret=s3cr3t~value&scope=x", "grant_type=client_credentials&client_secret=[REDACTED]&scope=x"},
		{"a JSON access_token", `{"access_token":"opaque-value-123","token_type":"Bearer"}`, `{"access_token":"[REDACTED]","token_type":"Bearer"}`},
		{"any letter case", "BEARER abcdefghijklmnop; BASIC dXNlcjpwYXNzd29yZA==; Client_Secret=x1; Access_Token=y2; &Sig=z3", "BEARER [REDACTED]; BASIC [REDACTED]; Client_Secret=[REDACTED]; Access_Token=[REDACTED]; &Sig=[REDACTED]"},
		{"a SAS authorization", "Authorization: SharedAccessSignature sr=x&sig=abc&se=1", "Authorization: SharedAccessSignature [REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := redact.Text(tt.in); got != tt.want {
				t.Errorf("Text(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// The words "token" and "key" alone (which the hints let through to the
// regular expressions) change nothing.
func TestTextKeepsOrdinaryWords(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"the function's identity lacks the CAN USE permission on tokens",
		"Key Vault refused to write secret databricks-ws-1 (Forbidden)",
		"signed in as the managed identity; password-less",
		strings.Repeat("token ", 100),
	} {
		if got := redact.Text(s); got != s {
			t.Errorf("Text(%q) = %q", s, got)
		}
	}
}

// TestAttr: a logger built with Attr writes no credential, in the message,
// a string attribute or an error's text, and leaves other values alone.
func TestAttr(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: redact.Attr}))
	const pat = "dapi0123456789abcdef0123456789abcdef"
	log.Info("made "+pat, "cause", errors.New("RESPONSE 401: Bearer "+pat), "value", pat, "calls", map[string]int{"dbx": 2})
	got := buf.String()
	if strings.Contains(got, pat) || strings.Count(got, redact.Mark) != 3 || !strings.Contains(got, `"calls":{"dbx":2}`) {
		t.Errorf("logged %s", got)
	}
}
