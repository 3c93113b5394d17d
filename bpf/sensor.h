/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Record layouts shared by bpf/sensor.bpf.c and internal/sensor/decode.go.
 * Every record starts with struct hdr; the Go decoder reads fixed offsets,
 * so a change here must change decode.go (TestLayout pins the sizes).
 */
#ifndef BULWARK_SENSOR_H
#define BULWARK_SENSOR_H

#define COMM_LEN 16
#define PATH_MAX_LEN 256
#define ARGV_MAX_LEN 512
#define NAME_LEN 64
/* The cwd walk's bound in steps: path components plus mount crossings.
 * The path's own bound is the record's PATH_MAX_LEN. */
#define CWD_MAX_STEPS 40

/* Record kinds; also the index of the loss counters. */
enum bw_kind {
	BW_K_EXEC = 1,
	BW_K_EXIT,
	BW_K_FORK,
	BW_K_FILE,
	BW_K_CONNECT,
	BW_K_ACCEPT,
	BW_K_LISTEN,
	BW_K_SETUID,
	BW_K_CAPSET,
	BW_K_SETNS,
	BW_K_UNSHARE,
	BW_K_PTRACE,
	BW_K_MODULE,
	BW_K_MAX,
};

/* The syscall (or hook) that produced a record. */
enum bw_op {
	BW_OP_NONE = 0,
	BW_OP_OPENAT,
	BW_OP_OPENAT2,
	BW_OP_OPEN,
	BW_OP_CREAT,
	BW_OP_UNLINKAT,
	BW_OP_UNLINK,
	BW_OP_RENAMEAT2,
	BW_OP_RENAMEAT,
	BW_OP_RENAME,
	BW_OP_FCHMODAT,
	BW_OP_FCHMODAT2,
	BW_OP_CHMOD,
	BW_OP_FCHMOD,
	BW_OP_CONNECT,
	BW_OP_ACCEPT,
	BW_OP_ACCEPT4,
	BW_OP_LISTEN,
	BW_OP_SETUID,
	BW_OP_SETGID,
	BW_OP_SETREUID,
	BW_OP_SETREGID,
	BW_OP_SETRESUID,
	BW_OP_SETRESGID,
	BW_OP_SETFSUID,
	BW_OP_SETFSGID,
	BW_OP_CAPSET,
	BW_OP_SETNS,
	BW_OP_UNSHARE,
	BW_OP_PTRACE,
	BW_OP_INIT_MODULE,
	BW_OP_FINIT_MODULE,
	BW_OP_MAX,
};

/* Loss counter slots: [kind] ring buffer full, [BW_K_MAX + kind] a user
 * pointer that could not be read (the event happened, we cannot say where). */
#define LOSS_SLOTS (2 * BW_K_MAX)

/* hdr.flags */
#define F_ARGV_TRUNC 1    /* argv longer than ARGV_MAX_LEN */
#define F_PATH_REL 2      /* path does not start with '/': join with dfd */
#define F_PATH2_REL 4
#define F_BY_FD 8         /* fchmod / finit_module: target given by fd */
#define F_READ 16         /* an open for reading, of a path in readwatch */
#define F_CWD 32          /* cwd[cwd_off..] is the task's cwd, resolved in the kernel */
#define F_CWD_TRUNC 64    /* the cwd was deeper or longer than the walk's bounds: not resolved */
#define F_PATH_ONLY 128   /* a file record that ends with its path's NUL: no path2, no cwd */

struct hdr {
	__u64 ktime; /* bpf_ktime_get_ns, CLOCK_MONOTONIC */
	__u64 cgroup;
	__u32 kind;
	__u32 op;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 flags;
	char comm[COMM_LEN];
}; /* 64 */

/*
 * A cwd resolved in the kernel (F_CWD) is written backwards, from the end of
 * cwd: it is the NUL-terminated string at cwd[cwd_off], as the task sees it
 * (from its fs->root). Without F_CWD, user space reads /proc/<pid>/cwd.
 */
struct exec_rec {
	struct hdr h;
	__u64 start_time; /* task->start_time, CLOCK_MONOTONIC */
	__u32 argv_len;
	__u32 cwd_off;
	char filename[PATH_MAX_LEN];
	char argv[ARGV_MAX_LEN];
	__u64 exe_ctime; /* the executable's inode change time, ns since the epoch; 0 unknown */
	char cwd[PATH_MAX_LEN];
}; /* 1112 */

struct exit_rec {
	struct hdr h;
	__u32 exit_code; /* task->exit_code */
	__u32 pad;
}; /* 72 */

struct fork_rec {
	struct hdr h;
	__u32 child_pid;
	__u32 pad;
	__u64 child_start;
}; /* 80 */

/* plen/path and plen2/path2 are laid out as LPM trie keys so that the
 * record itself is the lookup key of the watched-prefix map. A record with
 * F_CWD (a path relative to AT_FDCWD) is sent whole; one with F_PATH_ONLY
 * (one path, no cwd) ends with the path's NUL; any other ends before cwd_off
 * (FILE_REC_SHORT bytes). */
struct file_rec {
	struct hdr h;
	__s32 dfd;
	__s32 dfd2;
	__u32 flags;
	__u32 mode;
	__u32 plen;
	char path[PATH_MAX_LEN];
	__u32 plen2;
	char path2[PATH_MAX_LEN];
	__u32 cwd_off;
	char cwd[PATH_MAX_LEN];
	__u32 pad;
}; /* 864; FILE_REC_SHORT 600 */

#define FILE_REC_SHORT 600

struct net_rec {
	struct hdr h;
	__u16 family;
	__u16 proto;
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u8 saddr[16];
	__u8 daddr[16];
	__s64 result;
	__s32 fd;
	__u32 pad;
}; /* 120 */

struct gen_rec {
	struct hdr h;
	__s64 a[4];
	char name[NAME_LEN];
}; /* 160 */

struct watch_key {
	__u32 plen;
	char path[PATH_MAX_LEN];
};

struct settings_val {
	__u32 only_tgid; /* 0: every process; tests narrow it to themselves */
	__u32 pad;
};

#endif
