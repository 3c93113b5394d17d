/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map keys, values and the "prevented" record shared by bpf/enforcer.bpf.c
 * and internal/enforcer. Every deny entry is keyed by the cgroup id of the
 * container it applies to and holds a rule id (never 0) that user space maps
 * back to the rule's name.
 */
#ifndef BULWARK_ENFORCER_H
#define BULWARK_ENFORCER_H

#define EF_PATH_LEN 256
/* An LPM trie key holds at most 256 bytes of data: the cgroup and 248 bytes
 * of path. */
#define EF_KEY_PATH_LEN 248
#define EF_COMM_LEN 16

/* Kinds of action; target_val.kinds has bit (1 << kind) set for each kind the
 * target has rules for. */
enum ef_kind {
	EF_K_EXEC = 1,
	EF_K_WRITE = 2,
	EF_K_CONNECT = 3,
	EF_K_BIND = 4,
};

/* The mechanism that denied. */
enum ef_mech {
	EF_M_LSM = 1,
	EF_M_CGROUP = 2,
};

/* tid_val.op: the syscall a thread of a target is in; 0 when it is in none. */
enum ef_op {
	EF_OP_OPEN = 1,
	EF_OP_EXEC = 2,
};

struct target_val {
	__u32 kinds;
	__u32 listen_rule; /* non-zero: binds to ports not in listen_allow are denied */
};

/* exec_inodes, write_inodes. dev is the kernel's encoding (MAJOR << 20 | MINOR). */
struct inode_key {
	__u64 cgroup;
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

/* exec_paths (entries "P\0": exact) and write_prefixes ("P\0" and "P/"): LPM
 * tries whose data is the cgroup id (always matched in full) then the path.
 * The cgroup is two u32 so that the key has no padding after plen. */
struct path_key {
	__u32 plen;
	__u32 cg_lo;
	__u32 cg_hi;
	char path[EF_KEY_PATH_LEN];
};

/* net_deny: LPM over cgroup, port (network order; 0 = any port, looked up
 * second) and the address as IPv6 (IPv4 mapped to ::ffff:a.b.c.d). */
struct net_key {
	__u32 plen;
	__u32 cg_lo;
	__u32 cg_hi;
	__u16 port;
	__u8 addr[16];
	__u16 pad;
};

struct listen_key {
	__u64 cgroup;
	__u16 port; /* network order */
	__u16 pad[3];
};

/* What the fanotify decision needs to know about a thread of a target that
 * is inside open*() or execve*(): the open flags and the cgroup. */
struct tid_val {
	__u64 cgroup;
	__u32 flags;
	__u32 op;
};

/*
 * The record of a denied action, written to the events ring buffer. Its tail
 * (plen, cg_lo, cg_hi, path) begins as a struct path_key, so the LSM
 * programs build the record and the lookup key in the same memory (the key
 * sees the first EF_KEY_PATH_LEN bytes of the path).
 */
struct prevented {
	__u64 ktime; /* bpf_ktime_get_ns, CLOCK_MONOTONIC */
	__u32 kind;
	__u32 mech;
	__u32 rule;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 uid;
	char comm[EF_COMM_LEN];
	__u16 family; /* AF_INET, AF_INET6 for connect and bind */
	__u16 port;   /* host order */
	__u8 addr[16];
	__u32 plen;
	__u32 cg_lo;
	__u32 cg_hi;
	char path[EF_PATH_LEN];
}; /* 336 */

#endif
