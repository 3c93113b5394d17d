//go:build cgo

package main

// The pass-through fast path. Starting the Go runtime costs about a
// millisecond on a small VM, more than the shim may add to a `runc state`
// (docs/benchmarks.md). This constructor runs before the runtime starts:
// unless an argument could be the create, run or restore subcommand, it
// execs `<own path>.bulwark-orig` with the same argv and environment at
// once. It is deliberately conservative (any such argument, anywhere, falls
// through to Go, which parses the command line exactly), so it can never let
// a create pass unasked. If the exec fails, the Go code runs and reports it.
// runc itself uses a constructor the same way (libcontainer/nsenter).
//
// Release builds link it statically (the Makefile: -linkmode external
// -extldflags -static): it runs on the host, next to whatever C library the
// host has, not the one of the image it came in.

/*
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int bulwark_may_decide(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		if (argv[i] == NULL) break;
		if (strcmp(argv[i], "create") == 0 || strcmp(argv[i], "run") == 0 || strcmp(argv[i], "restore") == 0) return 1;
	}
	return 0;
}

__attribute__((constructor)) static void bulwark_passthrough(int argc, char **argv, char **envp) {
	static const char suffix[] = ".bulwark-orig";
	char path[PATH_MAX + sizeof suffix];
	if (argc < 1 || argv == NULL || envp == NULL || bulwark_may_decide(argc, argv)) return;
	ssize_t n = readlink("/proc/self/exe", path, PATH_MAX);
	if (n <= 0 || n >= PATH_MAX) return;
	memcpy(path + n, suffix, sizeof suffix);
	execve(path, argv, envp);
}

// For tests: the constructor's verdict on an argv.
static int bulwark_may_decide_for_test(int argc, char **argv) { return bulwark_may_decide(argc, argv); }
*/
import "C"

import "unsafe"

// cgoEnabled says whether the C constructor is built in.
const cgoEnabled = true

// constructorMayDecide reports whether the C constructor lets args (argv
// without the program name) through to Go.
func constructorMayDecide(args []string) bool {
	argv := make([]*C.char, len(args)+2)
	argv[0] = C.CString("runc")
	for i, a := range args {
		argv[i+1] = C.CString(a)
	}
	defer func() {
		for _, p := range argv[:len(args)+1] {
			C.free(unsafe.Pointer(p))
		}
	}()
	return C.bulwark_may_decide_for_test(C.int(len(args)+1), &argv[0]) != 0
}
