// Command scan measures bulwarkctl scan k8s over a corpus of Kubernetes
// manifests.
//
// It generates -files manifest files (deterministic for a -seed) into a
// temporary directory tree, as repositories hold them: Deployments,
// StatefulSets, DaemonSets, Jobs, CronJobs, Pods and ReplicaSets with 1–3
// containers, init containers, probes, resources, env (literal and from
// secrets), volumes and security contexts from hardened to careless, most
// files with a Service or ConfigMap alongside, some as JSON, some as v1
// Lists. It builds bulwarkctl (or takes -bin) and runs
//
//	bulwarkctl scan k8s DIR -o json --severity-threshold info --pss-level restricted
//
// -repeat times (every check and both PSS profiles, every finding written),
// then once with the defaults (table, threshold high, PSS baseline), and
// reports the medians of wall time, files/s, objects/s, CPU (user+sys of the
// child, getrusage) and peak RSS as a Markdown table on stdout.
//
// If kube-linter is given (-kube-linter PATH) or can be built from the Go
// module proxy (-kube-linter-version; `go install` into a temporary GOBIN,
// never committed), the same corpus goes through
// `kube-linter lint --add-all-built-in --format json DIR` in the same run
// and the table gets the ratio.
//
//	go run ./bench/scan
//	go run ./bench/scan -files 2000 -repeat 5
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/scan:", err)
		os.Exit(1)
	}
}

type options struct {
	files             int
	seed              uint64
	repeat            int
	bin               string
	keep              bool
	kubeLinter        string
	kubeLinterVersion string
}

func parseFlags() (options, error) {
	var o options
	flag.IntVar(&o.files, "files", 10000, "manifest files to generate")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the corpus")
	flag.IntVar(&o.repeat, "repeat", 3, "runs of each scan; the table shows medians")
	flag.StringVar(&o.bin, "bin", "", "bulwarkctl to run (default: go build ./cmd/bulwarkctl into a temp dir)")
	flag.BoolVar(&o.keep, "keep", false, "keep the corpus and print where it is")
	flag.StringVar(&o.kubeLinter, "kube-linter", "", "kube-linter binary to compare with (default: try -kube-linter-version)")
	flag.StringVar(&o.kubeLinterVersion, "kube-linter-version", "v0.7.6", "kube-linter version to go install from the module proxy when -kube-linter is not given; empty: no kube-linter")
	flag.Parse()
	if o.files < 1 || o.repeat < 1 {
		return o, errors.New("-files and -repeat must be positive")
	}
	return o, nil
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func run(ctx context.Context) error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bwbench-scan-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("corpus and binaries kept in %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	corpus := filepath.Join(tmp, "corpus")
	logf("generating %d files (seed %d)", o.files, o.seed)
	c, err := generate(corpus, o.files, o.seed)
	if err != nil {
		return err
	}
	logf("%d files, %d documents, %d pod-bearing objects, %.1f MiB", c.files, c.docs, c.objects, float64(c.bytes)/(1<<20))

	bin := o.bin
	if bin == "" {
		bin = filepath.Join(tmp, "bulwarkctl")
		logf("building bulwarkctl")
		if err := goCmd(ctx, nil, "build", "-o", bin, "./cmd/bulwarkctl"); err != nil {
			return fmt.Errorf("build bulwarkctl: %w", err)
		}
	}
	linter, linterNote := o.kubeLinter, ""
	if linter == "" && o.kubeLinterVersion != "" {
		gobin := filepath.Join(tmp, "gobin")
		logf("building kube-linter %s from the module proxy", o.kubeLinterVersion)
		err := goCmd(ctx, []string{"GOBIN=" + gobin}, "install", "golang.stackrox.io/kube-linter/cmd/kube-linter@"+o.kubeLinterVersion)
		if err != nil {
			linterNote = fmt.Sprintf("kube-linter %s could not be built here: %v", o.kubeLinterVersion, err)
			logf("%s", linterNote)
		} else {
			linter = filepath.Join(gobin, "kube-linter")
		}
	}

	load0 := loadavg()
	var rows []row
	full := []string{"scan", "k8s", corpus, "-o", "json", "--severity-threshold", "info", "--pss-level", "restricted"}
	r, err := measure(ctx, o.repeat, "bulwarkctl scan k8s -o json --severity-threshold info --pss-level restricted", bin, full, []int{1})
	if err != nil {
		return err
	}
	rows = append(rows, r)
	r, err = measure(ctx, o.repeat, "bulwarkctl scan k8s (defaults: table, high, PSS baseline)", bin, []string{"scan", "k8s", corpus}, []int{1})
	if err != nil {
		return err
	}
	rows = append(rows, r)
	if linter != "" {
		r, err := measure(ctx, o.repeat, "kube-linter lint --add-all-built-in --format json", linter,
			[]string{"lint", "--add-all-built-in", "--format", "json", corpus}, []int{1})
		if err != nil {
			linterNote = fmt.Sprintf("kube-linter failed: %v", err)
		} else {
			rows = append(rows, r)
		}
	}
	load1 := loadavg()

	report(os.Stdout, o, c, rows, load0, load1, linterNote)
	return nil
}

func goCmd(ctx context.Context, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(lastLine(out.String())))
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// row is one scanner's medians.
type row struct {
	name   string
	runs   int
	wall   time.Duration
	cpu    time.Duration
	rss    int64 // bytes
	output int64 // bytes of stdout
}

// measure runs the command n times and keeps the medians. Exit codes in ok
// (findings) count as success.
func measure(ctx context.Context, n int, name, bin string, args []string, ok []int) (row, error) {
	var walls, cpus []time.Duration
	var rss, output []int64
	for i := range n {
		out, err := os.CreateTemp("", "bwbench-scan-out-")
		if err != nil {
			return row{}, err
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = out, &stderr
		start := time.Now()
		err = cmd.Run()
		wall := time.Since(start)
		fi, _ := out.Stat()
		_ = out.Close()
		_ = os.Remove(out.Name())
		var ee *exec.ExitError
		if err != nil && (!errors.As(err, &ee) || !slices.Contains(ok, ee.ExitCode())) {
			return row{}, fmt.Errorf("%s: %w: %s", name, err, lastLine(stderr.String()))
		}
		ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		var cpu time.Duration
		var maxRSS int64
		if ru != nil {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			maxRSS = ru.Maxrss * 1024 // KiB on Linux
		}
		logf("%s #%d: %v wall, %v CPU, %.0f MiB RSS", name, i+1, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(maxRSS)/(1<<20))
		walls, cpus = append(walls, wall), append(cpus, cpu)
		rss = append(rss, maxRSS)
		if fi != nil {
			output = append(output, fi.Size())
		}
	}
	return row{name: name, runs: n, wall: median(walls), cpu: median(cpus), rss: median(rss), output: median(output)}, nil
}

func median[T int64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func report(w io.Writer, o options, c corpusStats, rows []row, load0, load1, linterNote string) {
	fmt.Fprintf(w, "Machine: %d CPUs (%s), Linux %s, %s; load average (1/5/15 min) %s at the start, %s at the end.\n",
		runtime.NumCPU(), cpuModel(), osRelease(), runtime.Version(), load0, load1)
	fmt.Fprintf(w, "Corpus: %d files (seed %d), %d YAML/JSON documents, %d pod-bearing objects, %.1f MiB; medians of %d runs.\n\n",
		c.files, o.seed, c.docs, c.objects, float64(c.bytes)/(1<<20), o.repeat)
	fmt.Fprintln(w, "| scanner | wall | files/s | objects/s | CPU (user+sys) | CPU / wall | peak RSS | output |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %.2f s | %.0f | %.0f | %.2f s | %.2f | %.0f MiB | %.1f MiB |\n",
			r.name, r.wall.Seconds(), float64(c.files)/r.wall.Seconds(), float64(c.objects)/r.wall.Seconds(),
			r.cpu.Seconds(), r.cpu.Seconds()/r.wall.Seconds(), float64(r.rss)/(1<<20), float64(r.output)/(1<<20))
	}
	if len(rows) == 3 {
		fmt.Fprintf(w, "\nkube-linter / bulwarkctl (all checks): wall %.2f, CPU %.2f, RSS %.2f.\n",
			rows[2].wall.Seconds()/rows[0].wall.Seconds(), rows[2].cpu.Seconds()/rows[0].cpu.Seconds(), float64(rows[2].rss)/float64(rows[0].rss))
	}
	if linterNote != "" {
		fmt.Fprintf(w, "\n%s\n", linterNote)
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func osRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// corpusStats says what was generated.
type corpusStats struct {
	files, docs, objects int
	bytes                int64
}

// generate writes n manifest files under dir: teams/<team>/<app>/….
func generate(dir string, n int, seed uint64) (corpusStats, error) {
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var st corpusStats
	for i := range n {
		team := fmt.Sprintf("team-%02d", i%40)
		app := fmt.Sprintf("%s-%d", oneOf(g, "api", "web", "worker", "billing", "search", "auth", "ingest", "report", "cache", "gateway"), i/40)
		docs := g.file(app)
		var data []byte
		name := oneOf(g, "deployment", "workload", "app", "manifest", "release")
		switch x := g.r.Float64(); {
		case x < 0.05: // JSON, the workload alone (kubectl get -o json)
			docs = docs[:1]
			b, err := json.MarshalIndent(docs[0], "", "  ")
			if err != nil {
				return st, err
			}
			data, name = append(b, '\n'), name+".json"
		case x < 0.07: // a v1 List, as kubectl get -o yaml writes
			list := map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{}, "items": docs}
			b, err := yaml.Marshal(list)
			if err != nil {
				return st, err
			}
			data, name = b, name+".yaml"
		default:
			var buf bytes.Buffer
			fmt.Fprintf(&buf, "# %s: %s\n", team, app)
			for j, d := range docs {
				if j > 0 {
					buf.WriteString("---\n")
				}
				b, err := yaml.Marshal(d)
				if err != nil {
					return st, err
				}
				buf.Write(b)
			}
			data, name = buf.Bytes(), name+oneOf(g, ".yaml", ".yaml", ".yml")
		}
		for _, d := range docs {
			st.docs++
			st.objects += isWorkload(d)
		}
		p := filepath.Join(dir, "teams", team, app, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return st, err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return st, err
		}
		st.files++
		st.bytes += int64(len(data))
	}
	return st, nil
}

func isWorkload(doc any) int {
	switch doc.(type) {
	case *corev1.Service, *corev1.ConfigMap:
		return 0
	}
	return 1
}

type gen struct{ r *rand.Rand }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func oneOf[T any](g *gen, xs ...T) T { return xs[g.r.IntN(len(xs))] }

// file returns the documents of one file, the workload first.
func (g *gen) file(app string) []any {
	ns := oneOf(g, "default", "prod", "staging", "payments", "platform", "data")
	labels := map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": oneOf(g, "shop", "core", "analytics")}
	meta := metav1.ObjectMeta{Name: app, Namespace: ns, Labels: labels}
	if g.chance(0.2) {
		meta.Annotations = map[string]string{"deploy.example.com/owner": "team@example.com"}
	}
	if g.chance(0.03) {
		if meta.Annotations == nil {
			meta.Annotations = map[string]string{}
		}
		meta.Annotations["bulwark.dev/ignore-check.run-as-root"] = "legacy image, migration tracked in JIRA-1234"
	}
	tmpl := g.template(app, labels)
	sel := &metav1.LabelSelector{MatchLabels: labels}
	replicas := int32(1 + g.r.IntN(5))
	var workload any
	switch x := g.r.Float64(); {
	case x < 0.45:
		workload = &appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: sel, Template: tmpl}}
	case x < 0.57:
		workload = &appsv1.StatefulSet{TypeMeta: tm("apps/v1", "StatefulSet"), ObjectMeta: meta,
			Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Selector: sel, ServiceName: app, Template: tmpl}}
	case x < 0.65:
		tmpl.Spec.HostNetwork = g.chance(0.4)
		tmpl.Spec.HostPID = g.chance(0.3)
		workload = &appsv1.DaemonSet{TypeMeta: tm("apps/v1", "DaemonSet"), ObjectMeta: meta,
			Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}
	case x < 0.73:
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		workload = &batchv1.Job{TypeMeta: tm("batch/v1", "Job"), ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}}
	case x < 0.82:
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		workload = &batchv1.CronJob{TypeMeta: tm("batch/v1", "CronJob"), ObjectMeta: meta, Spec: batchv1.CronJobSpec{
			Schedule:    fmt.Sprintf("%d %d * * *", g.r.IntN(60), g.r.IntN(24)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}},
		}}
	case x < 0.97:
		workload = &corev1.Pod{TypeMeta: tm("v1", "Pod"), ObjectMeta: meta, Spec: tmpl.Spec}
	default:
		workload = &appsv1.ReplicaSet{TypeMeta: tm("apps/v1", "ReplicaSet"), ObjectMeta: meta,
			Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: sel, Template: tmpl}}
	}
	docs := []any{workload}
	if g.chance(0.6) {
		docs = append(docs, &corev1.Service{TypeMeta: tm("v1", "Service"), ObjectMeta: meta, Spec: corev1.ServiceSpec{
			Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		}})
	}
	if g.chance(0.3) {
		docs = append(docs, &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta, Data: map[string]string{
			"LOG_LEVEL": "info", "config.yaml": "listen: :8080\nmetrics: true\n",
		}})
	}
	return docs
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// template draws a pod template, from hardened (about half) to careless.
func (g *gen) template(app string, labels map[string]string) corev1.PodTemplateSpec {
	hardened := g.chance(0.5)
	spec := corev1.PodSpec{ServiceAccountName: app}
	if hardened {
		spec.AutomountServiceAccountToken = new(false)
		spec.SecurityContext = &corev1.PodSecurityContext{
			RunAsNonRoot: new(true), RunAsUser: new(int64(10001)), RunAsGroup: new(int64(10001)), FSGroup: new(int64(10001)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	} else if g.chance(0.3) {
		spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: new(int64(oneOf(g, 0, 1000)))}
	}
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app}}}})
	if g.chance(0.4) {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	if !hardened && g.chance(0.1) {
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: oneOf(g, "/var/log", "/var/run/docker.sock", "/etc", "/sys")}}})
	}
	if g.chance(0.2) {
		spec.InitContainers = []corev1.Container{g.container("migrate", hardened, false)}
	}
	spec.Containers = []corev1.Container{g.container(app, hardened, true)}
	for i := range g.r.IntN(3) {
		spec.Containers = append(spec.Containers, g.container(fmt.Sprintf("%s-%d", oneOf(g, "sidecar", "proxy", "exporter"), i), hardened, true))
	}
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}
}

func (g *gen) container(name string, hardened, serving bool) corev1.Container {
	c := corev1.Container{
		Name:  name,
		Image: fmt.Sprintf("registry.example.com/%s:%s", name, oneOf(g, "1.4.2", "2.0.0", "latest", "3.1.0-alpine", "1.27")),
		Args:  []string{"--config=/etc/app/config.yaml"},
		Env: []corev1.EnvVar{
			{Name: "LOG_LEVEL", Value: "info"},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app", ReadOnly: true}},
	}
	if !hardened && g.chance(0.1) {
		c.Env = append(c.Env, corev1.EnvVar{Name: "API_TOKEN", Value: "s3cr3t-token-value"})
	}
	if serving {
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		if !hardened && g.chance(0.05) {
			c.Ports[0].HostPort = 80
		}
		c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}}
		if g.chance(0.7) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}, PeriodSeconds: 5}
		}
	}
	if hardened || g.chance(0.5) {
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		}
	}
	switch {
	case hardened:
		c.SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	case g.chance(0.08):
		c.SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
	case g.chance(0.2):
		c.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{oneOf[corev1.Capability](g, "NET_ADMIN", "SYS_PTRACE", "NET_RAW", "NET_BIND_SERVICE")}}}
	}
	return c
}
