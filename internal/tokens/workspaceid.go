package tokens

import (
	"errors"
	"strings"
)

// WorkspaceID is the ARM resource id of an Azure Databricks workspace.
type WorkspaceID struct {
	Subscription  string // lower case GUID
	ResourceGroup string
	Name          string
}

// ParseWorkspaceID parses a workspace resource id. ARM ids are case-insensitive
// in their fixed segments (`resourcegroups` and `resourceGroups` both occur,
// Event Grid sends the former), so those are matched without regard to case.
func ParseWorkspaceID(s string) (WorkspaceID, error) {
	const shape = "must look like /subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Databricks/workspaces/<name>"
	if s == "" {
		return WorkspaceID{}, errors.New("is required")
	}
	if len(s) > 512 {
		return WorkspaceID{}, errors.New("is longer than 512 characters")
	}
	parts := strings.Split(s, "/")
	if len(parts) != 9 || parts[0] != "" ||
		!strings.EqualFold(parts[1], "subscriptions") ||
		!strings.EqualFold(parts[3], "resourceGroups") ||
		!strings.EqualFold(parts[5], "providers") ||
		!strings.EqualFold(parts[6], "Microsoft.Databricks") ||
		!strings.EqualFold(parts[7], "workspaces") {
		return WorkspaceID{}, errors.New(shape)
	}
	id := WorkspaceID{Subscription: strings.ToLower(parts[2]), ResourceGroup: parts[4], Name: parts[8]}
	switch {
	case !IsGUID(id.Subscription):
		return WorkspaceID{}, errors.New("has a subscription id that is not a GUID")
	case !validResourceGroup(id.ResourceGroup):
		return WorkspaceID{}, errors.New("has an invalid resource group name")
	case !validWorkspaceName(id.Name):
		return WorkspaceID{}, errors.New("has an invalid workspace name (3-64 letters, digits, '-' or '_')")
	}
	return id, nil
}

// String returns the id in ARM's canonical casing.
func (id WorkspaceID) String() string {
	return "/subscriptions/" + id.Subscription + "/resourceGroups/" + id.ResourceGroup +
		"/providers/Microsoft.Databricks/workspaces/" + id.Name
}

// Key is the case-insensitive identity of the workspace, for maps and comparisons.
func (id WorkspaceID) Key() string { return strings.ToLower(id.String()) }

// Equal compares two ids as ARM does: without regard to case.
func (id WorkspaceID) Equal(other WorkspaceID) bool { return id.Key() == other.Key() }
