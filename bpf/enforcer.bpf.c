// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Bulwark enforcer: deny exec, file writes, connects and binds of the
 * processes of chosen cgroups before the action happens.
 *
 * Three sets of programs, loaded separately by internal/enforcer so that one
 * the kernel refuses costs only its own mechanism:
 *   - BPF LSM (lsm/bprm_check_security and lsm/mmap_file, lsm/file_mprotect
 *     for executable mappings; lsm/file_open; lsm/socket_connect and
 *     lsm/socket_sendmsg; lsm/socket_bind): the whole decision in the kernel;
 *   - cgroup BPF (cgroup/connect4/6, cgroup/sendmsg4/6, cgroup/bind4/6),
 *     attached to each target cgroup: connect and bind where BPF LSM does not
 *     load;
 *   - syscall tracepoints that remember, per thread of a target, the open
 *     flags (or "exec") while it is inside open*() or execve*(), for user
 *     space's fanotify permission decisions, which see neither.
 * Every map is keyed by cgroup id; a process of any other cgroup is never
 * denied. What is denied is reported through the events ring buffer; a
 * record that does not fit is counted in `lost`, never hidden.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "enforcer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define AF_INET 2
#define AF_INET6 10
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define FMODE_WRITE 0x2
#define PROT_EXEC 0x4
#define AT_FDCWD -100

#define KBIT(k) (1U << (k))

/* Rule maps are not preallocated: max_entries only bounds their growth
 * (1,000 rules for each of 250 containers). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct target_val);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__type(key, struct inode_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} exec_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 18);
	__type(key, struct path_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} exec_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__type(key, struct inode_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} write_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 18);
	__type(key, struct path_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} write_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 18);
	__type(key, struct net_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} net_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 18);
	__type(key, struct listen_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} listen_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct tid_val);
} tids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* The LSM probe: [0] the tgid whose file opens to count, [1] the count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} probe SEC(".maps");

/*
 * Per-task scratch for the LSM path programs: a struct prevented is larger
 * than what the stack can hold next to anything else. Task storage rather
 * than a per-CPU array because LSM programs run with migration, not
 * preemption, disabled: another task on the same CPU could reuse a per-CPU
 * slot in the middle of a decision.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct prevented);
} scratch SEC(".maps");

static __always_inline struct target_val *target_for(__u64 cg, __u32 kind)
{
	struct target_val *t = bpf_map_lookup_elem(&targets, &cg);
	if (!t || !(t->kinds & KBIT(kind)))
		return NULL;
	return t;
}

static __always_inline void fill_common(struct prevented *ev, __u64 cg, __u32 kind, __u32 mech,
					__u32 rule)
{
	__u64 id = bpf_get_current_pid_tgid();
	ev->ktime = bpf_ktime_get_ns();
	ev->kind = kind;
	ev->mech = mech;
	ev->rule = rule;
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->cg_lo = (__u32)cg;
	ev->cg_hi = cg >> 32;
}

static __always_inline void emit(struct prevented *ev)
{
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), 0)) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
}

/* ---- BPF LSM ---- */

static __always_inline struct prevented *task_scratch(void)
{
	return bpf_task_storage_get(&scratch, bpf_get_current_task_btf(), 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* Writes the file's path, as the current process sees it, into ev->path and
 * sets ev->plen for a full-length LPM lookup. 0 when it cannot be read. */
static __always_inline int read_file_path(struct prevented *ev, struct file *f)
{
	long n = bpf_d_path((struct path *)&f->f_path, ev->path, sizeof(ev->path));
	if (n <= 0)
		return 0;
	ev->plen = 64 + 8 * EF_KEY_PATH_LEN;
	return 1;
}

static __always_inline __u32 inode_rule(void *map, __u64 cg, struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	struct inode_key k = {
		.cgroup = cg,
		.ino = BPF_CORE_READ(ino, i_ino),
		.dev = BPF_CORE_READ(ino, i_sb, s_dev),
	};
	__u32 *rule = bpf_map_lookup_elem(map, &k);
	return rule ? *rule : 0;
}

/* Denies executing f (or mapping it executable) when a target's exec rule
 * names it by identity or (with_path) by path. Not every hook may call
 * bpf_d_path: those match by identity only. */
static __always_inline int deny_exec(struct file *f, const int with_path)
{
	__u64 cg = bpf_get_current_cgroup_id();
	if (!f || !target_for(cg, EF_K_EXEC))
		return 0;
	struct prevented *ev = task_scratch();
	if (!ev)
		return 0;
	fill_common(ev, cg, EF_K_EXEC, EF_M_LSM, 0);
	ev->family = 0;
	ev->path[0] = 0;
	int have_path = with_path && read_file_path(ev, f);
	__u32 rule = inode_rule(&exec_inodes, cg, f);
	if (!rule && have_path) {
		__u32 *r = bpf_map_lookup_elem(&exec_paths, &ev->plen);
		if (r)
			rule = *r;
	}
	if (!rule)
		return 0;
	ev->rule = rule;
	emit(ev);
	return -EPERM;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(lsm_exec, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return deny_exec(bprm->file, 1);
}

/* A denied file mapped executable is executed all the same: by the dynamic
 * loader run directly (ld.so /usr/bin/x), or as a shared library. */
SEC("lsm/mmap_file")
int BPF_PROG(lsm_mmap_exec, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	return deny_exec(file, 1);
}

SEC("lsm/file_mprotect")
int BPF_PROG(lsm_mprotect_exec, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	if (ret)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	return deny_exec(vma->vm_file, 0);
}

SEC("lsm/file_open")
int BPF_PROG(lsm_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	if (!(file->f_mode & FMODE_WRITE) && !(file->f_flags & O_TRUNC))
		return 0;
	__u64 cg = bpf_get_current_cgroup_id();
	if (!target_for(cg, EF_K_WRITE))
		return 0;
	struct prevented *ev = task_scratch();
	if (!ev)
		return 0;
	fill_common(ev, cg, EF_K_WRITE, EF_M_LSM, 0);
	ev->family = 0;
	ev->path[0] = 0;
	int have_path = read_file_path(ev, file);
	__u32 rule = inode_rule(&write_inodes, cg, file);
	if (!rule && have_path) {
		__u32 *r = bpf_map_lookup_elem(&write_prefixes, &ev->plen);
		if (r)
			rule = *r;
	}
	if (!rule)
		return 0;
	ev->rule = rule;
	emit(ev);
	return -EPERM;
}

/* Reads an AF_INET/AF_INET6 socket address into the key's port and address.
 * 0 for any other family or a short address. */
static __always_inline int read_sockaddr(struct net_key *k, __u16 *family, struct sockaddr *sa,
					 int len)
{
	__u16 fam = BPF_CORE_READ(sa, sa_family);
	if (fam == AF_INET && len >= (int)sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		if (bpf_probe_read_kernel(&sin, sizeof(sin), sa))
			return 0;
		k->port = sin.sin_port;
		k->addr[10] = 0xff;
		k->addr[11] = 0xff;
		__builtin_memcpy(&k->addr[12], &sin.sin_addr.s_addr, 4);
	} else if (fam == AF_INET6 && len >= (int)sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		if (bpf_probe_read_kernel(&sin6, sizeof(sin6), sa))
			return 0;
		k->port = sin6.sin6_port;
		__builtin_memcpy(k->addr, &sin6.sin6_addr, 16);
	} else {
		return 0;
	}
	*family = fam;
	return 1;
}

/* The rule denying a connect to the key's address and port, trying the exact
 * port first and then "any port". */
static __always_inline __u32 net_rule(struct net_key *k, __u64 cg)
{
	k->plen = 64 + 16 + 128;
	k->cg_lo = (__u32)cg;
	k->cg_hi = cg >> 32;
	__u32 *r = bpf_map_lookup_elem(&net_deny, k);
	if (r)
		return *r;
	__u16 port = k->port;
	k->port = 0;
	r = bpf_map_lookup_elem(&net_deny, k);
	k->port = port;
	return r ? *r : 0;
}

/* The rule denying a bind to the key's port: the target's listen rule when
 * the port is not among its allowed ones. Port 0 (any) is always allowed. */
static __always_inline __u32 bind_rule(struct target_val *t, __u64 cg, __u16 port)
{
	if (!t->listen_rule || port == 0)
		return 0;
	struct listen_key lk = {.cgroup = cg, .port = port};
	if (bpf_map_lookup_elem(&listen_allow, &lk))
		return 0;
	return t->listen_rule;
}

static __always_inline void emit_net(__u64 cg, __u32 kind, __u32 mech, __u32 rule,
				     struct net_key *k, __u16 family)
{
	struct prevented ev = {};
	fill_common(&ev, cg, kind, mech, rule);
	ev.family = family;
	ev.port = bpf_ntohs(k->port);
	__builtin_memcpy(ev.addr, k->addr, 16);
	emit(&ev);
}

SEC("lsm/socket_connect")
int BPF_PROG(lsm_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	__u64 cg = bpf_get_current_cgroup_id();
	if (!target_for(cg, EF_K_CONNECT))
		return 0;
	struct net_key k = {};
	__u16 family = 0;
	if (!read_sockaddr(&k, &family, address, addrlen))
		return 0;
	__u32 rule = net_rule(&k, cg);
	if (!rule)
		return 0;
	emit_net(cg, EF_K_CONNECT, EF_M_LSM, rule, &k, family);
	return -EPERM;
}

/* An unconnected datagram (or a TCP Fast Open connect) names its
 * destination in sendmsg, not connect. */
SEC("lsm/socket_sendmsg")
int BPF_PROG(lsm_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	if (ret)
		return ret;
	void *name = BPF_CORE_READ(msg, msg_name);
	if (!name)
		return 0;
	__u64 cg = bpf_get_current_cgroup_id();
	if (!target_for(cg, EF_K_CONNECT))
		return 0;
	struct net_key k = {};
	__u16 family = 0;
	if (!read_sockaddr(&k, &family, name, BPF_CORE_READ(msg, msg_namelen)))
		return 0;
	__u32 rule = net_rule(&k, cg);
	if (!rule)
		return 0;
	emit_net(cg, EF_K_CONNECT, EF_M_LSM, rule, &k, family);
	return -EPERM;
}

SEC("lsm/socket_bind")
int BPF_PROG(lsm_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	__u64 cg = bpf_get_current_cgroup_id();
	struct target_val *t = target_for(cg, EF_K_BIND);
	if (!t)
		return 0;
	struct net_key k = {};
	__u16 family = 0;
	if (!read_sockaddr(&k, &family, address, addrlen))
		return 0;
	__u32 rule = bind_rule(t, cg, k.port);
	if (!rule)
		return 0;
	emit_net(cg, EF_K_BIND, EF_M_LSM, rule, &k, family);
	return -EPERM;
}

/* Counts the probe process's file opens: proves that BPF LSM programs not
 * only load and attach but run (bpf is among the kernel's active LSMs). */
SEC("lsm/file_open")
int BPF_PROG(lsm_probe, struct file *file, int ret)
{
	__u32 zero = 0, one = 1;
	__u64 *tgid = bpf_map_lookup_elem(&probe, &zero);
	if (!tgid || *tgid != bpf_get_current_pid_tgid() >> 32)
		return ret;
	__u64 *n = bpf_map_lookup_elem(&probe, &one);
	if (n)
		__sync_fetch_and_add(n, 1);
	return ret;
}

/* ---- cgroup BPF: 1 allows, 0 denies with EPERM ---- */

static __always_inline void sock_addr_key(struct net_key *k, struct bpf_sock_addr *ctx, int v6)
{
	k->port = (__u16)ctx->user_port;
	if (v6) {
		__u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
		__builtin_memcpy(k->addr, a, 16);
	} else {
		__u32 a = ctx->user_ip4;
		k->addr[10] = 0xff;
		k->addr[11] = 0xff;
		__builtin_memcpy(&k->addr[12], &a, 4);
	}
}

static __always_inline int cg_connect(struct bpf_sock_addr *ctx, int v6)
{
	__u64 cg = bpf_get_current_cgroup_id();
	if (!target_for(cg, EF_K_CONNECT))
		return 1;
	struct net_key k = {};
	sock_addr_key(&k, ctx, v6);
	__u32 rule = net_rule(&k, cg);
	if (!rule)
		return 1;
	emit_net(cg, EF_K_CONNECT, EF_M_CGROUP, rule, &k, v6 ? AF_INET6 : AF_INET);
	return 0;
}

static __always_inline int cg_bind(struct bpf_sock_addr *ctx, int v6)
{
	__u64 cg = bpf_get_current_cgroup_id();
	struct target_val *t = target_for(cg, EF_K_BIND);
	if (!t)
		return 1;
	struct net_key k = {};
	sock_addr_key(&k, ctx, v6);
	__u32 rule = bind_rule(t, cg, k.port);
	if (!rule)
		return 1;
	emit_net(cg, EF_K_BIND, EF_M_CGROUP, rule, &k, v6 ? AF_INET6 : AF_INET);
	return 0;
}

SEC("cgroup/connect4")
int cg_connect4(struct bpf_sock_addr *ctx)
{
	return cg_connect(ctx, 0);
}

SEC("cgroup/connect6")
int cg_connect6(struct bpf_sock_addr *ctx)
{
	return cg_connect(ctx, 1);
}

SEC("cgroup/sendmsg4")
int cg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return cg_connect(ctx, 0);
}

SEC("cgroup/sendmsg6")
int cg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return cg_connect(ctx, 1);
}

SEC("cgroup/bind4")
int cg_bind4(struct bpf_sock_addr *ctx)
{
	return cg_bind(ctx, 0);
}

SEC("cgroup/bind6")
int cg_bind6(struct bpf_sock_addr *ctx)
{
	return cg_bind(ctx, 1);
}

/* ---- syscall tracepoints for the fanotify decisions ---- */

/* A thread's entry is written only by the thread itself, and user space
 * reads it only while the thread waits inside the syscall for the decision:
 * plain stores into the entry are enough, and the hot path avoids the LRU
 * map's locked update and delete once a thread has an entry. */
static __always_inline int remember(__u32 flags, __u32 op)
{
	__u64 cg = bpf_get_current_cgroup_id();
	struct target_val *t = bpf_map_lookup_elem(&targets, &cg);
	if (!t || !(t->kinds & (KBIT(EF_K_EXEC) | KBIT(EF_K_WRITE))))
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tid_val *v = bpf_map_lookup_elem(&tids, &tid);
	if (v) {
		v->cgroup = cg;
		v->flags = flags;
		v->op = op;
		return 0;
	}
	struct tid_val nv = {.cgroup = cg, .flags = flags, .op = op};
	bpf_map_update_elem(&tids, &tid, &nv, BPF_ANY);
	return 0;
}

/* At the syscall's exit the thread is no longer inside it: an open that the
 * same thread causes later by other means (io_uring, the kernel) must not be
 * judged by these stale flags. */
static __always_inline int forget(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct tid_val *v = bpf_map_lookup_elem(&tids, &tid);
	if (v)
		v->op = 0;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return remember(ctx->args[2], EF_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = 0;
	/* Unreadable open_how: the kernel will fail the call with EFAULT; the
	 * flags stay 0 (read-only) for a permission event it cannot reach. */
	bpf_probe_read_user(&flags, sizeof(flags), (void *)ctx->args[2]);
	return remember(flags, EF_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return remember(ctx->args[1], EF_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	return remember(O_CREAT | O_WRONLY | O_TRUNC, EF_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_open_by_handle_at")
int enter_open_by_handle_at(struct trace_event_raw_sys_enter *ctx)
{
	return remember(ctx->args[2], EF_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	return remember(0, EF_OP_EXEC);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return remember(0, EF_OP_EXEC);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(void *ctx)
{
	return forget();
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(void *ctx)
{
	return forget();
}

SEC("tracepoint/syscalls/sys_exit_open")
int exit_open(void *ctx)
{
	return forget();
}

SEC("tracepoint/syscalls/sys_exit_creat")
int exit_creat(void *ctx)
{
	return forget();
}

SEC("tracepoint/syscalls/sys_exit_open_by_handle_at")
int exit_open_by_handle_at(void *ctx)
{
	return forget();
}

SEC("tracepoint/syscalls/sys_exit_execve")
int exit_execve(void *ctx)
{
	return forget();
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int exit_execveat(void *ctx)
{
	return forget();
}
