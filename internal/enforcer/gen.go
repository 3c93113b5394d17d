package enforcer

// The BPF object is compiled from bpf/enforcer.bpf.c with the Debian clang
// that scripts/setup.sh installs; the output is committed and CI checks that
// regenerating it leaves no diff.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type prevented -output-dir . enforcer ../../bpf/enforcer.bpf.c -- -I../../bpf/include -I../../bpf
