// Package apischema holds the test that keeps docs/api.schema.json, the
// machine-readable description of the control API, true: it drives every
// command through the real server (the WebSocket API on the embedded media
// engine), records every frame on the wire, and checks each against the
// schema; it also sends each documented field with a wrong type and checks
// that the server refuses it naming the field. A command added to the API
// without its schema, or a reply that grows a field the schema does not
// name, fails the test.
package apischema
