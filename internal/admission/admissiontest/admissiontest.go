// Package admissiontest builds AdmissionReview v1 requests from k8s.io/api
// objects, as the Kubernetes API server sends them to a validating webhook,
// for the admission controller's tests and benchmarks.
package admissiontest

import (
	"encoding/json"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// HardenedSpec is a pod spec that passes the Pod Security Standards
// restricted profile and every critical and high check of Bulwark's
// catalog: non-root, no privilege escalation, every capability dropped,
// RuntimeDefault seccomp, a read-only root filesystem, limits and probes.
func HardenedSpec() corev1.PodSpec {
	no, yes := false, true
	uid := int64(10001)
	return corev1.PodSpec{
		AutomountServiceAccountToken: &no,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:  "web",
			Image: "registry.example/shop/web:1.4.2",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "LOG_LEVEL", Value: "info"},
				{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "web-db"}, Key: "password",
				}}},
			},
			Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			},
			LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: &no,
				ReadOnlyRootFilesystem:   &yes,
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}
}

// PrivilegedSpec is HardenedSpec with the host's PID namespace and a
// privileged first container: checks privileged (5054, critical) and
// host-pid (5515, high) fail, and the PSS baseline profile with them.
func PrivilegedSpec() corev1.PodSpec {
	s := HardenedSpec()
	yes := true
	s.HostPID = true
	s.Containers[0].SecurityContext.Privileged = &yes
	return s
}

// ProductionDeployment is a Deployment as production clusters hold them:
// an application (HardenedSpec's, with more environment, a ConfigMap and a
// startup probe) and a log-shipping sidecar that runs as root, so checks
// run-as-root (high) and the PSS restricted profile fail, nothing critical.
func ProductionDeployment() *appsv1.Deployment {
	s := HardenedSpec()
	app := &s.Containers[0]
	app.Env = append(app.Env,
		corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: "FEATURES", Value: "checkout,search,recommendations"},
		corev1.EnvVar{Name: "API_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "web-api"}, Key: "token"}}},
	)
	app.VolumeMounts = append(app.VolumeMounts, corev1.VolumeMount{Name: "config", MountPath: "/etc/shop", ReadOnly: true})
	app.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, FailureThreshold: 30}
	root := int64(0)
	s.Containers = append(s.Containers, corev1.Container{
		Name:  "log-shipper",
		Image: "registry.example/infra/fluent-bit:3.1.9",
		Args:  []string{"--config", "/fluent-bit/etc/fluent-bit.conf"},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		},
		VolumeMounts:    []corev1.VolumeMount{{Name: "tmp", MountPath: "/var/log/app", ReadOnly: true}},
		SecurityContext: &corev1.SecurityContext{RunAsUser: &root, RunAsNonRoot: new(false)},
	})
	s.Volumes = append(s.Volumes, corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}})
	s.ServiceAccountName = "web"
	s.TerminationGracePeriodSeconds = new(int64(30))
	d := Deployment("shop", "web", s)
	d.Annotations = map[string]string{"deployment.kubernetes.io/revision": "7"}
	return d
}

// Pod returns a Pod with the spec.
func Pod(namespace, name string, spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: meta(namespace, name),
		Spec:       spec,
	}
}

// Deployment returns a Deployment of three replicas with the pod spec.
func Deployment(namespace, name string, spec corev1.PodSpec) *appsv1.Deployment {
	replicas := int32(3)
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(namespace, name),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec},
		},
	}
}

// CronJob returns a CronJob running the pod spec every hour.
func CronJob(namespace, name string, spec corev1.PodSpec) *batchv1.CronJob {
	spec.RestartPolicy = corev1.RestartPolicyOnFailure
	return &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: meta(namespace, name),
		Spec: batchv1.CronJobSpec{
			Schedule: "0 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec},
			}},
		},
	}
}

func meta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: namespace,
		Labels: map[string]string{"app": name, "app.kubernetes.io/part-of": "shop"},
	}
}

// resources maps kinds to the resources the API server names them by.
var resources = map[string]string{
	"Pod": "pods", "PodTemplate": "podtemplates", "ReplicationController": "replicationcontrollers",
	"Deployment": "deployments", "ReplicaSet": "replicasets", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets",
	"Job": "jobs", "CronJob": "cronjobs", "Service": "services", "ConfigMap": "configmaps",
}

// Request returns the AdmissionRequest the API server sends for op on obj
// (old for an UPDATE, nil otherwise), with the user kubernetes-admin. The
// object's TypeMeta names its kind.
func Request(uid string, op admissionv1.Operation, obj, old runtime.Object) *admissionv1.AdmissionRequest {
	some := obj
	if some == nil {
		some = old
	}
	gvk := some.GetObjectKind().GroupVersionKind()
	res := resources[gvk.Kind]
	if res == "" {
		res = strings.ToLower(gvk.Kind) + "s"
	}
	m, _ := some.(metav1.Object)
	req := &admissionv1.AdmissionRequest{
		UID:                types.UID(uid),
		Kind:               metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Resource:           metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: res},
		RequestKind:        &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		RequestResource:    &metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: res},
		Operation:          op,
		UserInfo:           authnv1.UserInfo{Username: "kubernetes-admin", UID: "admin-uid", Groups: []string{"system:masters", "system:authenticated"}},
		Object:             raw(obj),
		OldObject:          raw(old),
		DryRun:             new(false),
		Options:            runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		RequestSubResource: "",
	}
	if m != nil {
		req.Name, req.Namespace = m.GetName(), m.GetNamespace()
	}
	return req
}

func raw(obj runtime.Object) runtime.RawExtension {
	if obj == nil {
		return runtime.RawExtension{}
	}
	b, err := json.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("admissiontest: encode %T: %v", obj, err)) // k8s.io/api types always encode
	}
	return runtime.RawExtension{Raw: b}
}

// Review encodes an AdmissionReview v1 carrying req.
func Review(req *admissionv1.AdmissionRequest) []byte {
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		panic(fmt.Sprintf("admissiontest: encode review: %v", err))
	}
	return b
}

// DecodeResponse decodes the controller's answer, which must be an
// AdmissionReview v1 with a response.
func DecodeResponse(body []byte) (*admissionv1.AdmissionResponse, error) {
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rv); err != nil {
		return nil, fmt.Errorf("decode the answer: %w: %s", err, body)
	}
	if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" || rv.Response == nil || rv.Request != nil {
		return nil, fmt.Errorf("the answer is not an AdmissionReview v1 response: %s", body)
	}
	return rv.Response, nil
}
