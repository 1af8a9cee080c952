package ledger

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// ConnectionString is a storage connection string (AzureWebJobsStorage),
// read as the Functions host and the Azure SDKs read it. Its key or shared
// access signature is a secret: it is kept unexported, and no error or
// String of this package ever contains it.
type ConnectionString struct {
	// TableEndpoint is the table service URL without a query: what may be
	// logged about the connection.
	TableEndpoint string
	AccountName   string
	accountKey    string
	sas           string
}

// Azurite's well-known development account (documented, and the same in
// every copy of Azurite): what UseDevelopmentStorage=true means.
const (
	devAccountName   = "devstoreaccount1"
	devAccountKey    = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
	devTableEndpoint = "http://127.0.0.1:10002/devstoreaccount1"
)

// ParseConnectionString reads a storage connection string: AccountName with
// AccountKey or SharedAccessSignature, TableEndpoint or the endpoint that
// DefaultEndpointsProtocol, AccountName and EndpointSuffix make, and
// UseDevelopmentStorage=true (Azurite on its default table port). Keys
// are case-insensitive, as for the host. Errors say what is missing or
// wrong and never quote the string.
func ParseConnectionString(s string) (ConnectionString, error) {
	fields := map[string]string{}
	for part := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return ConnectionString{}, errors.New("is not a storage connection string (key=value pairs separated by ';')")
		}
		fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if dev, _ := strconv.ParseBool(fields["usedevelopmentstorage"]); dev {
		if fields["developmentstorageproxyuri"] != "" {
			return ConnectionString{}, errors.New("DevelopmentStorageProxyUri is not supported")
		}
		return ConnectionString{TableEndpoint: devTableEndpoint, AccountName: devAccountName, accountKey: devAccountKey}, nil
	}
	c := ConnectionString{AccountName: fields["accountname"], accountKey: fields["accountkey"], sas: strings.TrimPrefix(fields["sharedaccesssignature"], "?")}
	switch {
	case c.accountKey != "" && c.sas != "":
		return ConnectionString{}, errors.New("has both AccountKey and SharedAccessSignature; give one")
	case c.accountKey != "":
		if c.AccountName == "" {
			return ConnectionString{}, errors.New("has an AccountKey but no AccountName")
		}
		if _, err := base64.StdEncoding.DecodeString(c.accountKey); err != nil {
			return ConnectionString{}, errors.New("has an AccountKey that is not base64")
		}
	case c.sas != "":
		if _, err := url.ParseQuery(c.sas); err != nil {
			return ConnectionString{}, errors.New("has a SharedAccessSignature that is not a query string")
		}
	default:
		return ConnectionString{}, errors.New("has neither AccountKey nor SharedAccessSignature (for the identity-based form set AzureWebJobsStorage__tableServiceUri instead)")
	}
	if ep := fields["tableendpoint"]; ep != "" {
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" || u.RawQuery != "" || (u.Scheme != "https" && u.Scheme != "http") {
			return ConnectionString{}, errors.New("has a TableEndpoint that is not an http(s) URL without a query")
		}
		c.TableEndpoint = strings.TrimSuffix(u.String(), "/")
		return c, nil
	}
	if c.AccountName == "" {
		return ConnectionString{}, errors.New("has neither TableEndpoint nor AccountName")
	}
	proto := strings.ToLower(fields["defaultendpointsprotocol"])
	if proto == "" {
		proto = "https"
	}
	if proto != "https" && proto != "http" {
		return ConnectionString{}, errors.New("has a DefaultEndpointsProtocol other than https or http")
	}
	suffix := fields["endpointsuffix"]
	if suffix == "" {
		suffix = "core.windows.net"
	}
	u, err := url.Parse(proto + "://" + c.AccountName + ".table." + suffix)
	if err != nil || u.Host == "" || u.Path != "" {
		return ConnectionString{}, errors.New("has an AccountName or EndpointSuffix that makes no host name")
	}
	c.TableEndpoint = u.String()
	return c, nil
}

// String names the endpoint only.
func (c ConnectionString) String() string { return "connection string for " + c.TableEndpoint }

// GoString keeps %#v from printing the key.
func (c ConnectionString) GoString() string { return c.String() }
