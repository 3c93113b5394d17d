package event

import "time"

// Kinds of runtime events. An Event's Data is a JSON Runtime for every kind
// below.
const (
	KindProcessExec = "process.exec"
	KindProcessExit = "process.exit"
	KindProcessFork = "process.fork"

	KindFileCreate = "file.create"
	KindFileWrite  = "file.write" // opened for writing
	KindFileUnlink = "file.unlink"
	KindFileRename = "file.rename"
	KindFileChmod  = "file.chmod"
	// KindFileRead is a file opened for reading; the sensor reports it only
	// for a short list of secrets (/etc/shadow, SSH host keys, …).
	KindFileRead = "file.read"

	KindNetConnect = "network.connect"
	KindNetAccept  = "network.accept"
	KindNetListen  = "network.listen"

	KindSetuid     = "privilege.setuid" // setuid/setgid/setreuid/setresuid… family
	KindCapset     = "privilege.capset"
	KindSetns      = "namespace.setns"
	KindUnshare    = "namespace.unshare"
	KindPtrace     = "process.ptrace"
	KindModuleLoad = "kernel.module_load"

	// KindSensorLoss reports events the sensor lost (ring buffer full,
	// user-space queue full): Data is a Loss.
	KindSensorLoss = "sensor.loss"
)

// Runtime is the Data of a runtime event: the acting process, where it runs,
// and the kind's own part.
type Runtime struct {
	Process   Process    `json:"process"`
	Container *Container `json:"container,omitempty"` // nil: a host process
	Host      string     `json:"host,omitempty"`

	Exit    *Exit    `json:"exit,omitempty"`
	File    *File    `json:"file,omitempty"`
	Net     *Net     `json:"net,omitempty"`
	Setuid  *Setuid  `json:"setuid,omitempty"`
	Ns      *Ns      `json:"ns,omitempty"`
	Ptrace  *Ptrace  `json:"ptrace,omitempty"`
	Module  *Module  `json:"module,omitempty"`
	Child   *Process `json:"child,omitempty"` // fork: the new process
	Syscall string   `json:"syscall,omitempty"`
	// Existing marks a process.exec found in /proc when the Defender started,
	// rather than seen by the sensor as it happened.
	Existing bool  `json:"existing,omitempty"`
	Result   int64 `json:"result,omitempty"` // syscall return when known (negative errno)
}

// Process identifies a process. PIDs are as seen from the host.
type Process struct {
	PID       uint32    `json:"pid"`
	TID       uint32    `json:"tid,omitempty"`
	PPID      uint32    `json:"ppid"`
	UID       uint32    `json:"uid"`
	GID       uint32    `json:"gid"`
	Comm      string    `json:"comm,omitempty"`
	Exe       string    `json:"exe,omitempty"`
	Argv      []string  `json:"argv,omitempty"` // bounded; ArgvTruncated says when cut
	Truncated bool      `json:"argvTruncated,omitempty"`
	Cwd       string    `json:"cwd,omitempty"`
	StartTime time.Time `json:"startTime,omitzero"`
	CgroupID  uint64    `json:"cgroupId,omitempty"`
	// ParentExe is the parent's executable when known.
	ParentExe string `json:"parentExe,omitempty"`
	// ExeChanged is when the executable's inode last changed (written,
	// copied, chmod'ed), known for execs the sensor saw.
	ExeChanged time.Time `json:"exeChanged,omitzero"`
}

// Container is the container a process runs in, as the runtime describes it.
type Container struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	Image     string `json:"image,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Runtime   string `json:"runtime,omitempty"` // runc, containerd, docker, crio
}

// Exit is how a process ended.
type Exit struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
}

// File is the target of a file event.
type File struct {
	Path    string `json:"path"`
	NewPath string `json:"newPath,omitempty"` // rename
	Flags   uint32 `json:"flags,omitempty"`   // open flags
	Mode    uint32 `json:"mode,omitempty"`    // chmod / create mode
}

// Net is the endpoint pair of a network event.
type Net struct {
	Protocol string `json:"protocol"` // tcp, udp
	Family   string `json:"family"`   // inet, inet6
	SrcAddr  string `json:"srcAddr,omitempty"`
	SrcPort  uint16 `json:"srcPort,omitempty"`
	DstAddr  string `json:"dstAddr,omitempty"`
	DstPort  uint16 `json:"dstPort,omitempty"`
}

// Setuid is a change of user or group ids.
type Setuid struct {
	Call string `json:"call"` // setuid, setresuid, …
	UID  int64  `json:"uid,omitempty"`
	GID  int64  `json:"gid,omitempty"`
}

// Ns is a namespace change.
type Ns struct {
	Flags uint64 `json:"flags"` // CLONE_NEW* bits
	FD    int32  `json:"fd,omitempty"`
}

// Ptrace is a ptrace request against another process.
type Ptrace struct {
	Request   int64  `json:"request"`
	TargetPID uint32 `json:"targetPid"`
}

// Module is a kernel module load.
type Module struct {
	Name string `json:"name,omitempty"`
}

// Loss counts events a sensor lost since its last report.
type Loss struct {
	Kernel uint64 `json:"kernel"` // ring buffer reservations that failed (all CPUs)
	User   uint64 `json:"user"`   // decoded but dropped in user space
	Probe  string `json:"probe,omitempty"`
}
