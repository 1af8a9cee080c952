package ledger

import (
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	const key = "c2VjcmV0LWtleQ=="
	tests := []struct {
		in, endpoint string
	}{
		{"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=" + key + ";EndpointSuffix=core.windows.net", "https://acct.table.core.windows.net"},
		{"AccountName=acct;AccountKey=" + key, "https://acct.table.core.windows.net"},
		{"accountname=acct;accountkey=" + key + ";endpointsuffix=core.chinacloudapi.cn", "https://acct.table.core.chinacloudapi.cn"},
		{"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + key + ";TableEndpoint=http://127.0.0.1:41000/devstoreaccount1/;", "http://127.0.0.1:41000/devstoreaccount1"},
		{"UseDevelopmentStorage=true", "http://127.0.0.1:10002/devstoreaccount1"},
		{"TableEndpoint=https://acct.table.core.windows.net;SharedAccessSignature=sv=2019&sig=abc", "https://acct.table.core.windows.net"},
	}
	for _, tt := range tests {
		c, err := ParseConnectionString(tt.in)
		if err != nil || c.TableEndpoint != tt.endpoint {
			t.Errorf("ParseConnectionString(%q) = %q, %v; want %q", tt.in, c.TableEndpoint, err, tt.endpoint)
		}
		if strings.Contains(c.String(), key) || strings.Contains(c.GoString(), "sig=") {
			t.Errorf("String shows a secret: %s", c)
		}
	}
	for _, bad := range []string{
		"", "garbage", "AccountName=acct", "AccountKey=" + key,
		"AccountName=acct;AccountKey=not*base64",
		"AccountName=acct;AccountKey=" + key + ";SharedAccessSignature=sig=x",
		"AccountName=acct;AccountKey=" + key + ";TableEndpoint=ftp://x",
		"AccountName=acct;AccountKey=" + key + ";DefaultEndpointsProtocol=ftp",
		"UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://x",
	} {
		_, err := ParseConnectionString(bad)
		if err == nil {
			t.Errorf("ParseConnectionString(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "acct") {
			t.Errorf("the error quotes the connection string: %v", err)
		}
	}
}
