//go:build !cgo

package main

// Without cgo there is no C constructor: the Go code passes every command
// through itself, a millisecond or so later.
func constructorMayDecide([]string) bool { return true }

// cgoEnabled says whether the C constructor is built in.
const cgoEnabled = false
