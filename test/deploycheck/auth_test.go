package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// resourceBlock returns the text of the resource whose declaration line
// matches decl, up to the closing brace at column 0.
func resourceBlock(t *testing.T, text, decl string) string {
	t.Helper()
	m := regexp.MustCompile(`(?ms)^resource ` + decl + `.*?^\}`).FindString(text)
	if m == "" {
		t.Fatalf("no resource matching %q", decl)
	}
	return m
}

// TestAppServiceAuthentication proves the Function App gets App Service
// Authentication with the Entra provider exactly as issue #8 asks, and only
// when an app registration is given: 401 for unauthenticated callers, token
// audiences api://<client id> and <client id>, the tenant's issuer, no
// client secret, and the main template passing the parameters through.
func TestAppServiceAuthentication(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root(t), functionAppBicep))
	if err != nil {
		t.Fatal(err)
	}
	block := resourceBlock(t, string(raw), `\w+ 'Microsoft\.Web/sites/config@[0-9-]+' = if \(!empty\(authClientId\)\) \{`)
	compact := regexp.MustCompile(`\s+`).ReplaceAllString(block, " ")
	for _, want := range []string{
		"name: 'authsettingsV2'",
		"platform: { enabled: true }",
		"globalValidation: { requireAuthentication: true unauthenticatedClientAction: 'Return401' }",
		"azureActiveDirectory: { enabled: true",
		"registration: { clientId: authClientId openIdIssuer: authOpenIdIssuer }",
		"validation: { allowedAudiences: [ 'api://${authClientId}' authClientId ] }",
	} {
		if !strings.Contains(compact, want) {
			t.Errorf("%s authsettingsV2 lacks %q:\n%s", functionAppBicep, want, block)
		}
	}
	for _, banned := range []string{"clientSecretSettingName", "clientSecretCertificate", "AllowAnonymous", "RedirectToLoginPage"} {
		if strings.Contains(block, banned) {
			t.Errorf("%s authsettingsV2 uses %s", functionAppBicep, banned)
		}
	}

	main, err := os.ReadFile(filepath.Join(root(t), "infra", "bicep", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(main)
	for _, param := range []string{"authClientId", "authOpenIdIssuer", "authzPolicy"} {
		decl := regexp.MustCompile(`(?m)^@description\('[^\n]+'\)\n(@\w+\([^\n]*\)\n)*param ` + param + ` string = ''$`)
		if !decl.MatchString(text) {
			t.Errorf("main.bicep does not declare `param %s string = ''` with an @description", param)
		}
		if !regexp.MustCompile(`(?m)^\s+` + param + `: `).MatchString(text) {
			t.Errorf("main.bicep does not pass %s to the functionapp module", param)
		}
	}
	if !strings.Contains(text, "environment().authentication.loginEndpoint") {
		t.Error("main.bicep does not derive the default issuer from the cloud's login endpoint")
	}
	if !strings.Contains(string(raw), "AUTHZ_POLICY: authzPolicy") {
		t.Errorf("%s does not set AUTHZ_POLICY from authzPolicy", functionAppBicep)
	}
}
