// Package e2e holds black-box tests against the built binaries. They run with
// `go test -tags e2e ./e2e/` (make test does), as root for the network
// namespace tests.
package e2e
