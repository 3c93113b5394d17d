package sensor

// The BPF object is compiled from bpf/sensor.bpf.c with the Debian clang
// that scripts/setup.sh installs; the output is committed and CI checks that
// regenerating it leaves no diff.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -output-dir . sensor ../../bpf/sensor.bpf.c -- -I../../bpf/include -I../../bpf
