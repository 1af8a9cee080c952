package events

import "testing"

const eventGrid = `{
  "topic": "/subscriptions/00000000-0000-0000-0000-000000000000",
  "subject": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod",
  "eventType": "Microsoft.Resources.ResourceWriteSuccess",
  "eventTime": "2025-01-15T10:00:00.1234567Z",
  "id": "4db48cba-50a2-455a-93b4-de41a3b5b7f6",
  "data": {
    "authorization": { "scope": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod",
                       "action": "Microsoft.Databricks/workspaces/write", "evidence": { "role": "Contributor" } },
    "claims": { "appid": "{ID}", "ver": "1.0" },
    "correlationId": "{ID}",
    "resourceProvider": "Microsoft.Databricks",
    "resourceUri": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod",
    "operationName": "Microsoft.Databricks/workspaces/write",
    "status": "Succeeded",
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "tenantId": "11111111-1111-1111-1111-111111111111"
  },
  "dataVersion": "2",
  "metadataVersion": "1"
}`

const cloudEvent = `{
  "specversion": "1.0",
  "type": "Microsoft.Resources.ResourceWriteSuccess",
  "source": "/subscriptions/00000000-0000-0000-0000-000000000000",
  "id": "4db48cba-50a2-455a-93b4-de41a3b5b7f6",
  "time": "2025-01-15T10:00:00.1234567Z",
  "subject": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod",
  "datacontenttype": "application/json",
  "data": { "operationName": "MICROSOFT.DATABRICKS/WORKSPACES/WRITE", "status": "Succeeded" }
}`

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, schema string
		workspaceWrite     bool
	}{
		{"event grid schema", eventGrid, "EventGrid", true},
		{"cloudevents, subject fallback, case-insensitive operation", cloudEvent, "CloudEvents", true},
		{"other operation", `{"id":"1","eventType":"Microsoft.Resources.ResourceWriteSuccess","subject":"/x","data":{"operationName":"Microsoft.Resources/deployments/write"}}`, "EventGrid", false},
		{"delete", `{"id":"1","eventType":"Microsoft.Resources.ResourceDeleteSuccess","data":{"operationName":"Microsoft.Databricks/workspaces/delete"}}`, "EventGrid", false},
		{"failure", `{"id":"1","eventType":"Microsoft.Resources.ResourceWriteFailure","data":{"operationName":"Microsoft.Databricks/workspaces/write"}}`, "EventGrid", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := Decode([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Schema != tt.schema || ev.IsWorkspaceWrite() != tt.workspaceWrite {
				t.Errorf("got %+v", ev)
			}
			if tt.workspaceWrite && ev.Resource() != "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-data/providers/Microsoft.Databricks/workspaces/dbw-prod" {
				t.Errorf("resource = %q", ev.Resource())
			}
		})
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{}`, `{"id":"1"}`, `{"specversion":"0.3","type":"t","id":"1"}`, `{"eventType":"x"}`, `[` + eventGrid + `]`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(eventGrid))
	f.Add([]byte(cloudEvent))
	f.Add([]byte(`{"specversion":"1.0","id":"x","type":"y","data":[1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err == nil && (ev.ID == "" || ev.Type == "") {
			t.Fatalf("accepted an event without id or type: %+v", ev)
		}
	})
}
