package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// builtInRoles are the Azure built-in role definition ids the templates may
// assign, as Microsoft Learn lists them ("Azure built-in roles",
// learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var builtInRoles = map[string]string{
	"Contributor":                 "b24988ac-6180-42a0-ab88-20f7382dd24c",
	"Reader":                      "acdd72a7-3385-48ef-bd42-f606fba81ae7",
	"ServiceBusDataReceiver":      "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
	"ServiceBusDataSender":        "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
	"ServiceBusDataOwner":         "090c5cfd-751d-490a-894a-3ce6f1109419",
	"KeyVaultSecretsOfficer":      "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
	"StorageBlobDataOwner":        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
	"StorageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
	"StorageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
	"MonitoringMetricsPublisher":  "3913510d-42f4-4e42-8a64-420c390055eb",
}

var guid = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// TestRolesComeFromOneMap proves role definition ids appear only in
// modules/roles.bicep, whose map holds exactly the built-in ids above: a
// typo in a GUID, or a role id pasted into another module, fails here.
func TestRolesComeFromOneMap(t *testing.T) {
	dir := filepath.Join(root(t), "infra", "bicep")
	rolesFile := filepath.Join(dir, "modules", "roles.bicep")
	raw, err := os.ReadFile(rolesFile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+):\s*'([^']+)'`).FindAllStringSubmatch(string(raw), -1) {
		got[m[1]] = m[2]
	}
	for name, id := range builtInRoles {
		if got[name] != id {
			t.Errorf("roles.bicep %s = %q, want %q", name, got[name], id)
		}
	}
	for name := range got {
		if _, ok := builtInRoles[name]; !ok {
			t.Errorf("roles.bicep has %s, which this test does not know; add it with its id from Microsoft Learn", name)
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".bicep") || p == rolesFile {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, id := range guid.FindAllString(string(b), -1) {
			t.Errorf("%s holds the GUID %s: take role ids from builtInRoles in modules/roles.bicep", p, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTriggerQueueRoles proves the identity holds what the two trigger
// queues need, in both modes of serviceBusTriggerAccess:
//
//   - Listen (least privilege): Data Receiver for the triggers, and Data
//     Sender, because the handler reschedules a command or event whose
//     workspace is still provisioning onto the queue it came from
//     (handler/queue.go, Publisher.Schedule); with Receiver alone that
//     schedule is refused and the message burns its deliveries.
//   - Manage: Data Owner (send, receive, manage) on the same two queues, so
//     that target-based scaling can read their length; with Listen rights
//     the Functions scale controller cannot, and scales less precisely.
func TestTriggerQueueRoles(t *testing.T) {
	rbac := readRepo(t, "infra", "bicep", "modules", "rbac.bicep")
	// Role assignments looped over the trigger queues, with their condition.
	loop := regexp.MustCompile(`(?ms)^resource \w+ 'Microsoft\.Authorization/roleAssignments@[0-9-]+' = \[for \(q, i\) in receiveQueueNames:(?: if \(([^\n]*)\))? \{\n(.*?)^\}\]`)
	got := map[string]string{}
	for _, m := range loop.FindAllStringSubmatch(rbac, -1) {
		if !strings.Contains(m[2], "scope: receiveQueues[i]") {
			t.Errorf("rbac.bicep: a role assignment over receiveQueueNames is not scoped to the queue itself:\n%s", m[2])
		}
		role := regexp.MustCompile(`builtInRoles\.(\w+)\)`).FindStringSubmatch(m[2])
		if role == nil {
			t.Fatalf("rbac.bicep: no builtInRoles role in\n%s", m[2])
		}
		got[role[1]] = strings.TrimSpace(m[1])
	}
	want := map[string]string{
		"ServiceBusDataReceiver": "triggerQueueAccess == 'Listen'",
		"ServiceBusDataSender":   "triggerQueueAccess == 'Listen'",
		"ServiceBusDataOwner":    "triggerQueueAccess == 'Manage'",
	}
	for role, cond := range want {
		c, ok := got[role]
		switch {
		case !ok:
			t.Errorf("rbac.bicep does not assign %s on the trigger queues (wanted when %s)", role, cond)
		case c != cond:
			t.Errorf("rbac.bicep assigns %s on the trigger queues when %q, want when %q", role, c, cond)
		}
	}
	for role := range got {
		if _, ok := want[role]; !ok {
			t.Errorf("rbac.bicep assigns %s on the trigger queues, which neither mode needs", role)
		}
	}
	if !regexp.MustCompile(`(?m)^@allowed\(\[\n  'Listen'\n  'Manage'\n\]\)\nparam triggerQueueAccess string = '(Listen|Manage)'$`).MatchString(rbac) {
		t.Error("rbac.bicep does not declare `param triggerQueueAccess string` allowing Listen and Manage")
	}
	main := readRepo(t, "infra", "bicep", "main.bicep")
	if !regexp.MustCompile(`(?m)^@description\('[^\n]+'\)\n@allowed\(\[\n  'Listen'\n  'Manage'\n\]\)\nparam serviceBusTriggerAccess string = 'Listen'$`).MatchString(main) {
		t.Error("main.bicep does not declare `param serviceBusTriggerAccess string = 'Listen'` (Listen or Manage) with an @description")
	}
	if !strings.Contains(main, "triggerQueueAccess: serviceBusTriggerAccess") {
		t.Error("main.bicep does not pass serviceBusTriggerAccess to the rbac module")
	}
}
