// Package api holds Bulwark's wire contracts: the REST API's OpenAPI document
// (the source of truth, served by the Console) and the Defender channel's
// messages.
package api

import _ "embed"

//go:embed openapi.yaml
var openapi []byte

// OpenAPI returns the OpenAPI 3 document of the Console REST API.
func OpenAPI() []byte { return append([]byte(nil), openapi...) }
