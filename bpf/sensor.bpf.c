// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bulwark runtime sensor: process, file, network, privilege and namespace
 * events from tracepoints and raw tracepoints only (no kprobes, no
 * trampolines), so that it loads on every CO-RE kernel. Records go to one
 * ring buffer; a failed write is counted per kind in `lost`, never hidden.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sensor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define WRITE_FLAGS (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)
#define AT_FDCWD -100

/* Size is set from Config.RingBufferBytes at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings_val);
} settings SEC(".maps");

/* Watched path prefixes: "P/" and "P\0" for every prefix P. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct watch_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} watch SEC(".maps");

/*
 * Reads are reported for a few secret files only (/etc/shadow, SSH keys…),
 * which user space puts in readwatch as it does watch. An open for reading
 * is the most frequent file syscall, so its path is first judged by its
 * first 8 bytes, one hash lookup, and read whole only when they are the
 * first 8 bytes of a readwatch entry (readfirst).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__type(key, struct watch_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} readwatch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} readfirst SEC(".maps");

union scratch_val {
	struct exec_rec e;
	struct file_rec f;
	/* read_cwd's writes are masked into [cwd, cwd + 2 * PATH_MAX_LEN) for
	 * the verifier: room behind the last cwd field. */
	char slack[sizeof(struct exec_rec) + PATH_MAX_LEN];
};

/* Records larger than the 512-byte stack are built here. Tracepoint
 * programs do not nest on a CPU, so one slot per CPU is enough. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, union scratch_val);
} scratch SEC(".maps");

/* What a syscall's enter saw, for its exit: connect's destination, listen's fd. */
struct inflight {
	__u32 op;
	__s32 fd;
	__u16 family;
	__u16 port; /* host order */
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct inflight);
} pending SEC(".maps");

static __always_inline void count_loss(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &slot);
	if (n)
		*n += 1;
}

/*
 * Waking the reader for every record costs the traced task a wakeup and, on a
 * busy host, a context switch per event. Records are written without a wakeup,
 * but for two:
 *  - the one that takes what is pending past wakeup_bytes, so that a busy
 *    reader drains before the buffer fills. Only that one: a forced wakeup
 *    raises an interrupt (irq_work) on the traced task's CPU, and forcing one
 *    for every record while the reader was awake and behind cost a high-rate
 *    writer more than the rest of the program;
 *  - one written to an empty buffer at least wake_after_ns after the last
 *    such wakeup, so that an idle reader can sleep without a timer. After a
 *    pass that read records the reader waits at most wake_after_ns and reads
 *    what came meanwhile without a wakeup; after a pass that read none (a
 *    whole wake_after_ns without a record) it waits for a wakeup only, and
 *    the next record forces one. At low rates that is a wakeup per record, at
 *    most one per wake_after_ns.
 * Both are set before load.
 */
const volatile __u64 wakeup_bytes = 1 << 20;
const volatile __u64 wake_after_ns = 40000000;

/* When a record written to an empty buffer last forced a wakeup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_wakeup SEC(".maps");

static __always_inline void emit(void *rec, __u64 size, __u32 kind)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (avail < wakeup_bytes && avail + size >= wakeup_bytes) {
		flags = BPF_RB_FORCE_WAKEUP;
	} else if (avail == 0) {
		__u32 zero = 0;
		__u64 *last = bpf_map_lookup_elem(&last_wakeup, &zero);
		__u64 now = bpf_ktime_get_ns();
		if (last && now - *last >= wake_after_ns) {
			*last = now;
			flags = BPF_RB_FORCE_WAKEUP;
		}
	}
	if (bpf_ringbuf_output(&events, rec, size, flags))
		count_loss(kind);
}

/* Returns 0 when the current process is to be reported. */
static __always_inline int skip_current(__u32 tgid)
{
	__u32 zero = 0;
	struct settings_val *s = bpf_map_lookup_elem(&settings, &zero);
	return s && s->only_tgid && s->only_tgid != tgid;
}

static __always_inline int fill_hdr(struct hdr *h, __u32 kind, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (skip_current(tgid))
		return -1;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u64 ug = bpf_get_current_uid_gid();
	h->ktime = bpf_ktime_get_ns();
	h->cgroup = bpf_get_current_cgroup_id();
	h->kind = kind;
	h->op = op;
	h->pid = tgid;
	h->tid = (__u32)id;
	h->ppid = BPF_CORE_READ(t, real_parent, tgid);
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->flags = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	return 0;
}

static __always_inline void *scratch_rec(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

/* ---- the cwd ---- */

/*
 * 1 unless the kernel refused a program with the cwd walk: user space then
 * loads that program again with cwd_walk = 0. The verifier knows a frozen
 * .rodata value, so it never visits the walk in that variant (nor the
 * instructions of its CO-RE relocations), and the record leaves the cwd to
 * user space as before.
 */
const volatile __u32 cwd_walk = 1;

/*
 * read_cwd writes t's cwd as t sees it (the path from its fs->root, crossing
 * mount points through struct mount as d_path does) backwards into
 * buf[0, PATH_MAX_LEN), NUL-terminated at the end, and sets *start to where
 * it begins. buf must be followed by PATH_MAX_LEN bytes the program may write:
 * offsets and lengths are masked for the verifier, the checks before them
 * keep the writes inside buf. It returns F_CWD; F_CWD_TRUNC when the path
 * takes more than CWD_MAX_STEPS steps (components and mount crossings) or
 * PATH_MAX_LEN - 1 bytes; 0 when it cannot tell (a read failed, the cwd is
 * not under the root, or the walk is off). A component renamed during the
 * walk may read as either name, as with d_path without its lock; a removed
 * cwd reads as the path it had (readlink adds " (deleted)").
 */
/* d_parent and d_name, which lie side by side in struct dentry on every
 * kernel we know: one read instead of two where they do. */
struct dentry_up {
	struct dentry *parent;
	struct qstr name;
};

static __always_inline long read_up(struct dentry_up *up, struct dentry *d)
{
	__u64 parent = bpf_core_field_offset(struct dentry, d_parent);
	if (bpf_core_field_offset(struct dentry, d_name) == parent + sizeof(up->parent))
		return bpf_probe_read_kernel(up, sizeof(*up), (void *)d + parent);
	return bpf_core_read(&up->parent, sizeof(up->parent), &d->d_parent) ||
	       bpf_core_read(&up->name, sizeof(up->name), &d->d_name);
}

static __always_inline __u32 read_cwd(struct task_struct *t, char *buf, __u32 *start)
{
	if (!cwd_walk)
		return 0;
	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	struct path root = {}, pwd = {};
	if (!fs || BPF_CORE_READ_INTO(&root, fs, root) || BPF_CORE_READ_INTO(&pwd, fs, pwd))
		return 0;
	__u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
	struct dentry *d = pwd.dentry;
	struct vfsmount *vfsmnt = pwd.mnt;
	struct mount *mnt = (void *)vfsmnt - mnt_off;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	/* The offset lives in the record, where the verifier does not follow
	 * its value: in a register, every iteration's value would make a new
	 * verifier state and the walk's paths would not be pruned. */
	volatile __u32 *vstart = start;
	*vstart = PATH_MAX_LEN - 1;
	buf[PATH_MAX_LEN - 1] = 0;
	for (int i = 0; i < CWD_MAX_STEPS; i++) {
		if (d == root.dentry && vfsmnt == root.mnt) {
			if (*vstart == PATH_MAX_LEN - 1) {
				*vstart = PATH_MAX_LEN - 2;
				buf[PATH_MAX_LEN - 2] = '/';
			}
			return F_CWD;
		}
		if (!d)
			return 0;
		if (d == mnt_root) {
			/* The mount's root: go on from where it is mounted. */
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (!parent || parent == mnt)
				return 0; /* the namespace's root, and the task's root was not on the way */
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = (void *)mnt + mnt_off;
			mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
			continue;
		}
		struct dentry_up up = {};
		if (read_up(&up, d) || !up.parent || up.parent == d)
			return 0; /* parent == d: a filesystem root that is no mount's root */
		struct dentry *parent = up.parent;
		struct qstr name = up.name;
		__u32 off = *vstart;
		if (name.len >= off)
			return F_CWD_TRUNC;
		off -= name.len;
		if (bpf_probe_read_kernel(buf + (off & (PATH_MAX_LEN - 1)), name.len & (PATH_MAX_LEN - 1), name.name))
			return 0;
		off--;
		buf[off & (PATH_MAX_LEN - 1)] = '/';
		*vstart = off;
		d = parent;
	}
	return F_CWD_TRUNC;
}

/* ---- processes ---- */

/* The inode's change time moved: i_ctime_sec/i_ctime_nsec since 6.11,
 * __i_ctime from 6.6, i_ctime before. CO-RE picks the one the kernel has.
 * Multigrain timestamps (6.13) keep a flag in the top bit of the
 * nanoseconds (I_CTIME_QUERIED): a valid value is below 2^30, so mask. */
struct inode___v611 {
	time64_t i_ctime_sec;
	u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

struct inode___v66 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

struct inode___old {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

static __always_inline __u64 inode_ctime_ns(struct inode *ino)
{
	if (!ino)
		return 0;
	if (bpf_core_field_exists(((struct inode___v611 *)0)->i_ctime_sec)) {
		struct inode___v611 *i = (void *)ino;
		return BPF_CORE_READ(i, i_ctime_sec) * 1000000000ULL + (BPF_CORE_READ(i, i_ctime_nsec) & 0x7fffffff);
	}
	if (bpf_core_field_exists(((struct inode___v66 *)0)->__i_ctime)) {
		struct inode___v66 *i = (void *)ino;
		return BPF_CORE_READ(i, __i_ctime.tv_sec) * 1000000000ULL + BPF_CORE_READ(i, __i_ctime.tv_nsec);
	}
	struct inode___old *i = (void *)ino;
	return BPF_CORE_READ(i, i_ctime.tv_sec) * 1000000000ULL + BPF_CORE_READ(i, i_ctime.tv_nsec);
}

SEC("tracepoint/sched/sched_process_exec")
int tp_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct exec_rec *r = scratch_rec();
	if (!r || fill_hdr(&r->h, BW_K_EXEC, BW_OP_NONE))
		return 0;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	r->start_time = BPF_CORE_READ(t, start_time);

	unsigned int off = ctx->__data_loc_filename & 0xFFFF;
	bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), (void *)ctx + off);

	struct mm_struct *mm = BPF_CORE_READ(t, mm);
	__u64 start = BPF_CORE_READ(mm, arg_start);
	__u64 end = BPF_CORE_READ(mm, arg_end);
	__u64 n = end > start ? end - start : 0;
	if (n > ARGV_MAX_LEN) {
		n = ARGV_MAX_LEN;
		r->h.flags |= F_ARGV_TRUNC;
	}
	if (bpf_probe_read_user(r->argv, n, (void *)start))
		n = 0;
	r->argv_len = n;
	/* When the binary last changed: a binary written after its container
	 * started is drift, and the process may be gone before user space could
	 * stat it. */
	r->exe_ctime = inode_ctime_ns(BPF_CORE_READ(mm, exe_file, f_inode));
	/* Here, not from /proc when the record is read: by then most processes
	 * have exited. */
	r->h.flags |= read_cwd(t, r->cwd, &r->cwd_off);
	emit(r, sizeof(*r), BW_K_EXEC);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int tp_exit(void *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	/* Only the last thread of a process: live reaches 0 before the tracepoint. */
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0;
	struct exit_rec r = {};
	if (fill_hdr(&r.h, BW_K_EXIT, BW_OP_NONE))
		return 0;
	r.exit_code = BPF_CORE_READ(t, exit_code);
	emit(&r, sizeof(r), BW_K_EXIT);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int rtp_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 cpid = BPF_CORE_READ(child, pid);
	if (cpid != (__u32)BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */
	struct fork_rec r = {};
	if (fill_hdr(&r.h, BW_K_FORK, BW_OP_NONE))
		return 0;
	r.child_pid = cpid;
	r.child_start = BPF_CORE_READ(child, start_time);
	emit(&r, sizeof(r), BW_K_FORK);
	return 0;
}

/* ---- files ---- */

/* Reads a user path into path (laid out as an LPM key behind plen) and says
 * whether it is to be reported: relative paths always (user space joins them
 * with the cwd or dfd and filters), absolute ones under a watched prefix.
 * *len, if len is given, is the path's length with its NUL. */
static __always_inline int read_path(__u32 *plen, char *path, const char *up, __u32 rel_flag,
				     __u32 *flags, __u32 *len)
{
	if (!up)
		return 0;
	long n = bpf_probe_read_user_str(path, PATH_MAX_LEN, up);
	if (n <= 0) {
		count_loss(BW_K_MAX + BW_K_FILE);
		return 0;
	}
	if (len)
		*len = n;
	if (path[0] != '/') {
		*flags |= rel_flag;
		return 1;
	}
	*plen = PATH_MAX_LEN * 8;
	return bpf_map_lookup_elem(&watch, plen) != NULL;
}

/* A record with one path and no cwd ends with the path's NUL (F_PATH_ONLY):
 * an open of "/etc/x" is 90 bytes of ring buffer instead of FILE_REC_SHORT. */
#define PATH_ONLY_MASK 511
_Static_assert(__builtin_offsetof(struct file_rec, path) + PATH_MAX_LEN <= PATH_ONLY_MASK,
	       "a path-only record's size must fit PATH_ONLY_MASK");

static __always_inline __u64 path_only_size(__u32 len)
{
	if (len > PATH_MAX_LEN)
		len = PATH_MAX_LEN;
	__u64 size = __builtin_offsetof(struct file_rec, path) + len;
	/* Debian's 6.1 verifier does not see the bound above in the form the
	 * compiler gives it (a test of len & ~0xff) and refused the open
	 * programs; it does see a mask. The barrier keeps the mask, which the
	 * compiler knows to change nothing. */
	asm volatile("" : "+r"(size));
	return size & PATH_ONLY_MASK;
}

static __always_inline int file_event(__u32 op, int dfd, const char *p1, int dfd2, const char *p2,
				      __u32 oflags, __u32 mode)
{
	struct file_rec *r = scratch_rec();
	if (!r)
		return 0;
	/* The paths first: most writes are outside the watched paths, and
	 * those need no header. */
	__u32 flags = 0, len1 = 1;
	r->path[0] = 0;
	r->path2[0] = 0;
	int match = 0;
	if (p1)
		match = read_path(&r->plen, r->path, p1, F_PATH_REL, &flags, &len1);
	else
		flags |= F_BY_FD;
	if (p2 && read_path(&r->plen2, r->path2, p2, F_PATH2_REL, &flags, NULL))
		match = 1;
	if (!p1 && !p2)
		match = 1; /* by fd: user space resolves and filters */
	if (!match || fill_hdr(&r->h, BW_K_FILE, op))
		return 0;
	r->h.flags = flags;
	r->dfd = dfd;
	r->dfd2 = dfd2;
	r->flags = oflags;
	r->mode = mode;
	/* A path relative to the cwd is joined with it in user space; the cwd
	 * is read now, while the process surely has one. */
	if (((flags & F_PATH_REL) && dfd == AT_FDCWD) || ((flags & F_PATH2_REL) && dfd2 == AT_FDCWD))
		r->h.flags |= read_cwd((struct task_struct *)bpf_get_current_task(), r->cwd, &r->cwd_off);
	if (r->h.flags & F_CWD) {
		emit(r, sizeof(*r), BW_K_FILE);
	} else if (!p2) {
		r->h.flags |= F_PATH_ONLY;
		emit(r, path_only_size(len1), BW_K_FILE);
	} else {
		emit(r, FILE_REC_SHORT, BW_K_FILE);
	}
	return 0;
}

/* An open for reading of an absolute path in readwatch. */
static __always_inline int read_event(__u32 op, const char *up, __u32 oflags)
{
	__u64 first = 0;
	if (!up || bpf_probe_read_user(&first, sizeof(first), up))
		return 0; /* shorter than 8 bytes near a page end: no secret's path */
	if (!bpf_map_lookup_elem(&readfirst, &first))
		return 0;
	struct file_rec *r = scratch_rec();
	if (!r)
		return 0;
	long n = bpf_probe_read_user_str(r->path, PATH_MAX_LEN, up);
	if (n <= 0) {
		count_loss(BW_K_MAX + BW_K_FILE);
		return 0;
	}
	r->plen = PATH_MAX_LEN * 8;
	if (!bpf_map_lookup_elem(&readwatch, &r->plen) || fill_hdr(&r->h, BW_K_FILE, op))
		return 0;
	r->dfd = AT_FDCWD;
	r->dfd2 = 0;
	r->flags = oflags;
	r->mode = 0;
	r->h.flags |= F_READ | F_PATH_ONLY;
	emit(r, path_only_size(n), BW_K_FILE);
	return 0;
}

#define ARG(i) ((void *)ctx->args[i])

SEC("tracepoint/syscalls/sys_enter_openat")
int sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	__u32 fl = ctx->args[2];
	if (!(fl & WRITE_FLAGS))
		return read_event(BW_OP_OPENAT, ARG(1), fl);
	return file_event(BW_OP_OPENAT, ctx->args[0], ARG(1), 0, NULL, fl, ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int sys_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};
	if (bpf_probe_read_user(&how, sizeof(how), ARG(2)))
		return 0;
	if (!(how.flags & WRITE_FLAGS))
		return read_event(BW_OP_OPENAT2, ARG(1), how.flags);
	return file_event(BW_OP_OPENAT2, ctx->args[0], ARG(1), 0, NULL, how.flags, how.mode);
}

SEC("tracepoint/syscalls/sys_enter_open")
int sys_enter_open(struct trace_event_raw_sys_enter *ctx)
{
	__u32 fl = ctx->args[1];
	if (!(fl & WRITE_FLAGS))
		return read_event(BW_OP_OPEN, ARG(0), fl);
	return file_event(BW_OP_OPEN, AT_FDCWD, ARG(0), 0, NULL, fl, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int sys_enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_CREAT, AT_FDCWD, ARG(0), 0, NULL, O_CREAT | O_WRONLY | O_TRUNC,
			  ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_unlinkat")
int sys_enter_unlinkat(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_UNLINKAT, ctx->args[0], ARG(1), 0, NULL, ctx->args[2], 0);
}

SEC("tracepoint/syscalls/sys_enter_unlink")
int sys_enter_unlink(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_UNLINK, AT_FDCWD, ARG(0), 0, NULL, 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat2")
int sys_enter_renameat2(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_RENAMEAT2, ctx->args[0], ARG(1), ctx->args[2], ARG(3), ctx->args[4], 0);
}

SEC("tracepoint/syscalls/sys_enter_renameat")
int sys_enter_renameat(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_RENAMEAT, ctx->args[0], ARG(1), ctx->args[2], ARG(3), 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_rename")
int sys_enter_rename(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_RENAME, AT_FDCWD, ARG(0), AT_FDCWD, ARG(1), 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat")
int sys_enter_fchmodat(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_FCHMODAT, ctx->args[0], ARG(1), 0, NULL, 0, ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_fchmodat2")
int sys_enter_fchmodat2(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_FCHMODAT2, ctx->args[0], ARG(1), 0, NULL, ctx->args[3], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_chmod")
int sys_enter_chmod(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_CHMOD, AT_FDCWD, ARG(0), 0, NULL, 0, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_fchmod")
int sys_enter_fchmod(struct trace_event_raw_sys_enter *ctx)
{
	return file_event(BW_OP_FCHMOD, ctx->args[0], NULL, 0, NULL, 0, ctx->args[1]);
}

/* ---- network ---- */

/* The socket behind fd in the current task, or NULL. */
static __always_inline struct sock *fd_sock(int fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd < 0 || (unsigned int)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(so, sk);
}

/* Fills family, protocol and both endpoints from sk. Returns 0 for inet sockets. */
static __always_inline int sock_endpoints(struct net_rec *r, struct sock *sk)
{
	if (!sk)
		return -1;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return -1;
	r->family = family;
	r->proto = BPF_CORE_READ(sk, sk_protocol);
	r->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO(&r->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(&r->daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&r->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->daddr, sk, __sk_common.skc_v6_daddr);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int sys_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (skip_current(id >> 32))
		return 0;
	struct inflight in = {.op = BW_OP_CONNECT, .fd = ctx->args[0]};
	if (bpf_probe_read_user(&in.family, sizeof(in.family), ARG(1)))
		return 0;
	if (in.family == AF_INET) {
		struct sockaddr_in sa = {};
		bpf_probe_read_user(&sa, sizeof(sa), ARG(1));
		in.port = bpf_ntohs(sa.sin_port);
		__builtin_memcpy(in.addr, &sa.sin_addr, 4);
	} else if (in.family == AF_INET6) {
		struct sockaddr_in6 sa = {};
		bpf_probe_read_user(&sa, sizeof(sa), ARG(1));
		in.port = bpf_ntohs(sa.sin6_port);
		__builtin_memcpy(in.addr, &sa.sin6_addr, 16);
	} else {
		return 0;
	}
	__u32 tid = id;
	bpf_map_update_elem(&pending, &tid, &in, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid();
	struct inflight *in = bpf_map_lookup_elem(&pending, &tid);
	if (!in)
		return 0;
	struct net_rec r = {};
	struct inflight saved = *in;
	bpf_map_delete_elem(&pending, &tid);
	if (saved.op != BW_OP_CONNECT || fill_hdr(&r.h, BW_K_CONNECT, BW_OP_CONNECT))
		return 0;
	/* The local end is known after connect (TCP binds the source port even
	 * with EINPROGRESS); the destination is what the caller asked for. */
	sock_endpoints(&r, fd_sock(saved.fd));
	r.family = saved.family;
	r.dport = saved.port;
	__builtin_memcpy(r.daddr, saved.addr, 16);
	r.result = ctx->ret;
	r.fd = saved.fd;
	emit(&r, sizeof(r), BW_K_CONNECT);
	return 0;
}

static __always_inline int accept_exit(struct trace_event_raw_sys_exit *ctx, __u32 op)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct net_rec r = {};
	if (fill_hdr(&r.h, BW_K_ACCEPT, op))
		return 0;
	if (sock_endpoints(&r, fd_sock(fd)))
		return 0;
	r.result = fd;
	r.fd = fd;
	emit(&r, sizeof(r), BW_K_ACCEPT);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx, BW_OP_ACCEPT4);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx, BW_OP_ACCEPT);
}

SEC("tracepoint/syscalls/sys_enter_listen")
int sys_enter_listen(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (skip_current(id >> 32))
		return 0;
	struct inflight in = {.op = BW_OP_LISTEN, .fd = ctx->args[0]};
	__u32 tid = id;
	bpf_map_update_elem(&pending, &tid, &in, BPF_ANY);
	return 0;
}

/* At exit the socket is bound, even when listen() picked the port itself. */
SEC("tracepoint/syscalls/sys_exit_listen")
int sys_exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid();
	struct inflight *in = bpf_map_lookup_elem(&pending, &tid);
	if (!in)
		return 0;
	struct inflight saved = *in;
	bpf_map_delete_elem(&pending, &tid);
	struct net_rec r = {};
	if (saved.op != BW_OP_LISTEN || fill_hdr(&r.h, BW_K_LISTEN, BW_OP_LISTEN))
		return 0;
	if (sock_endpoints(&r, fd_sock(saved.fd)))
		return 0;
	r.result = ctx->ret;
	r.fd = saved.fd;
	emit(&r, sizeof(r), BW_K_LISTEN);
	return 0;
}

/* ---- privileges, namespaces, ptrace, modules ---- */

static __always_inline int gen_event(struct trace_event_raw_sys_enter *ctx, __u32 kind, __u32 op,
				     int nargs)
{
	struct gen_rec r = {};
	if (fill_hdr(&r.h, kind, op))
		return 0;
	if (nargs > 0)
		r.a[0] = ctx->args[0];
	if (nargs > 1)
		r.a[1] = ctx->args[1];
	if (nargs > 2)
		r.a[2] = ctx->args[2];
	if (kind == BW_K_CAPSET) {
		/* header->pid, data[0].effective */
		__s32 pid = 0;
		__u32 eff = 0;
		bpf_probe_read_user(&pid, sizeof(pid), ARG(0) + 4);
		bpf_probe_read_user(&eff, sizeof(eff), ARG(1));
		r.a[0] = pid;
		r.a[1] = eff;
	}
	emit(&r, sizeof(r), kind);
	return 0;
}

#define GEN(name, kind, op, nargs)                                                                 \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                                \
	int sys_enter_##name(struct trace_event_raw_sys_enter *ctx)                                \
	{                                                                                          \
		return gen_event(ctx, kind, op, nargs);                                            \
	}

GEN(setuid, BW_K_SETUID, BW_OP_SETUID, 1)
GEN(setgid, BW_K_SETUID, BW_OP_SETGID, 1)
GEN(setreuid, BW_K_SETUID, BW_OP_SETREUID, 2)
GEN(setregid, BW_K_SETUID, BW_OP_SETREGID, 2)
GEN(setresuid, BW_K_SETUID, BW_OP_SETRESUID, 3)
GEN(setresgid, BW_K_SETUID, BW_OP_SETRESGID, 3)
GEN(setfsuid, BW_K_SETUID, BW_OP_SETFSUID, 1)
GEN(setfsgid, BW_K_SETUID, BW_OP_SETFSGID, 1)
GEN(capset, BW_K_CAPSET, BW_OP_CAPSET, 0)
GEN(setns, BW_K_SETNS, BW_OP_SETNS, 2)
GEN(unshare, BW_K_UNSHARE, BW_OP_UNSHARE, 1)
GEN(ptrace, BW_K_PTRACE, BW_OP_PTRACE, 2)
GEN(init_module, BW_K_MODULE, BW_OP_INIT_MODULE, 2)

/* finit_module(fd, …): the module file's name comes from the fd's dentry. */
SEC("tracepoint/syscalls/sys_enter_finit_module")
int sys_enter_finit_module(struct trace_event_raw_sys_enter *ctx)
{
	struct gen_rec r = {};
	if (fill_hdr(&r.h, BW_K_MODULE, BW_OP_FINIT_MODULE))
		return 0;
	int fd = ctx->args[0];
	r.a[0] = fd;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd >= 0 && (unsigned int)fd < max) {
		struct file **fds = BPF_CORE_READ(fdt, fd);
		struct file *f = NULL;
		if (!bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) && f) {
			const unsigned char *name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
			bpf_probe_read_kernel_str(r.name, sizeof(r.name), name);
		}
	}
	emit(&r, sizeof(r), BW_K_MODULE);
	return 0;
}
