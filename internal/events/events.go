// Package events reads the Azure Resource Manager events that Event Grid
// delivers to the workspace-events queue, in either Event Grid schema or
// CloudEvents 1.0 (one event per message: Service Bus delivery does not
// batch into arrays).
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// Event is what the service needs of one event.
type Event struct {
	ID            string
	Type          string
	Subject       string
	ResourceURI   string
	OperationName string
	Status        string
	Schema        string // "EventGrid" or "CloudEvents"
}

// ResourceWriteSuccess is the event type of a successful ARM PUT/PATCH.
const ResourceWriteSuccess = "Microsoft.Resources.ResourceWriteSuccess"

// WorkspaceWrite is the operation name of a Databricks workspace create or update.
const WorkspaceWrite = "Microsoft.Databricks/workspaces/write"

type envelope struct {
	// Event Grid schema
	EventType string `json:"eventType"`
	// CloudEvents 1.0
	SpecVersion string `json:"specversion"`
	Type        string `json:"type"`
	// both
	ID      string          `json:"id"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

type armData struct {
	ResourceURI   string `json:"resourceUri"`
	OperationName string `json:"operationName"`
	Status        string `json:"status"`
}

// ErrNotAnEvent means the body is JSON but neither schema.
var ErrNotAnEvent = errors.New("not an Event Grid or CloudEvents 1.0 event")

// Decode reads one event.
func Decode(body []byte) (Event, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return Event{}, ErrNotAnEvent
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, err
	}
	ev := Event{ID: env.ID, Subject: env.Subject}
	switch {
	case env.SpecVersion != "":
		if env.SpecVersion != "1.0" {
			return Event{}, errors.New("unsupported CloudEvents specversion " + env.SpecVersion)
		}
		ev.Type, ev.Schema = env.Type, "CloudEvents"
	case env.EventType != "":
		ev.Type, ev.Schema = env.EventType, "EventGrid"
	default:
		return Event{}, ErrNotAnEvent
	}
	if ev.ID == "" || ev.Type == "" {
		return Event{}, errors.New("event has no id or type")
	}
	if len(env.Data) > 0 && env.Data[0] == '{' {
		var d armData
		if err := json.Unmarshal(env.Data, &d); err == nil {
			ev.ResourceURI, ev.OperationName, ev.Status = d.ResourceURI, d.OperationName, d.Status
		}
	}
	return ev, nil
}

// IsWorkspaceWrite reports whether the event says a Databricks workspace
// was written successfully. Names compare without regard to case.
func (e Event) IsWorkspaceWrite() bool {
	return strings.EqualFold(e.Type, ResourceWriteSuccess) && strings.EqualFold(e.OperationName, WorkspaceWrite) &&
		(e.Status == "" || strings.EqualFold(e.Status, "Succeeded"))
}

// Resource is the written resource's id: data.resourceUri, else the subject.
func (e Event) Resource() string {
	if e.ResourceURI != "" {
		return e.ResourceURI
	}
	return e.Subject
}
