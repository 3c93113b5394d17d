package defender

// Capabilities are the Linux capabilities the Defender is deployed with
// (without the CAP_ prefix, as Kubernetes names them); it is never run
// privileged. SYS_ADMIN stands in for BPF and PERFMON (loading the sensor's
// and the enforcer's programs, fanotify), SYS_PTRACE lets it read other
// processes' /proc entries, NET_ADMIN covers the cgroup socket programs;
// AUDIT_CONTROL, MKNOD and SETFCAP complete the set the product documents
// (ARCHITECTURE.md). The deployment files (deploy/) are tested against this
// list.
func Capabilities() []string {
	return []string{"NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE", "AUDIT_CONTROL", "MKNOD", "SETFCAP"}
}
