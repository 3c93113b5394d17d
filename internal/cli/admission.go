package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"bulwark/internal/audit"
)

func (a *app) admissionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admission",
		Short: "The Kubernetes admission controller: webhook configuration and decisions",
		Long: `The Console's Kubernetes admission controller (bulwark-console --admission-addr)
checks Pods and pod controllers as a cluster creates or updates them. Its policy
is 'bulwarkctl policy get|set admission': audit mode warns, enforce mode denies
what a rule blocks.

webhook-config prints the ValidatingWebhookConfiguration that points a cluster
at it; audits lists what it decided.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.webhookConfigCommand(), a.admissionAuditsCommand())
	return cmd
}

type webhookOptions struct {
	service, namespace, url, cluster, failurePolicy, name string
	port, timeout                                         int
}

func (a *app) webhookConfigCommand() *cobra.Command {
	var o webhookOptions
	cmd := &cobra.Command{
		Use:   "webhook-config --service NAME --namespace NS [--url URL] [--failure-policy Fail|Ignore]",
		Short: "Print the ValidatingWebhookConfiguration that sends a cluster's workloads to the Console",
		Long: `Print, as YAML (or JSON with -o json), the admissionregistration.k8s.io/v1
ValidatingWebhookConfiguration that sends the creation and update of Pods and
every pod controller to the Console's admission controller, for 'kubectl apply
-f -'. Its caBundle is the Console CA, which issued the admission listener's
certificate; its namespaceSelector leaves out the admission policy's exempt
namespaces and the Service's own namespace.

Reach the listener through a Service in front of the Console (--service and
--namespace; the certificate must name <service>.<namespace>.svc: start the
Console with --admission-dns), or at a URL outside the cluster (--url
https://HOST:PORT). --failure-policy Ignore (the default) admits workloads when
the Console cannot answer in time; Fail refuses them.`,
		Example: `  bulwarkctl admission webhook-config --service bulwark-admission --namespace bulwark | kubectl apply -f -
  bulwarkctl admission webhook-config --url https://console.example:8085 --failure-policy Fail --cluster prod-east`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			q := url.Values{}
			for _, p := range []struct{ name, value string }{
				{"service", o.service}, {"namespace", o.namespace}, {"url", o.url}, {"cluster", o.cluster},
				{"failurePolicy", o.failurePolicy}, {"name", o.name},
			} {
				if p.value != "" {
					q.Set(p.name, p.value)
				}
			}
			switch {
			case o.service == "" && o.url == "":
				return usagef("give --service and --namespace, or --url")
			case o.service != "" && o.url != "":
				return usagef("give --service or --url, not both")
			case o.service != "" && o.namespace == "":
				return usagef("--service needs --namespace")
			case o.failurePolicy != "" && o.failurePolicy != "Fail" && o.failurePolicy != "Ignore":
				return usagef("--failure-policy must be Fail or Ignore, not %q", o.failurePolicy)
			}
			if o.port != 0 {
				q.Set("port", strconv.Itoa(o.port))
			}
			if o.timeout != 0 {
				q.Set("timeoutSeconds", strconv.Itoa(o.timeout))
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var doc json.RawMessage
			if err := c.do(ctx, http.MethodGet, "/api/v1/admission/webhook", q, nil, &doc); err != nil {
				return fmt.Errorf("get the webhook configuration: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, doc)
			}
			out, err := yaml.JSONToYAML(doc)
			if err != nil {
				return fmt.Errorf("write the webhook configuration as YAML: %w", err)
			}
			_, err = a.stdout.Write(out)
			return err
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.service, "service", "", "the Service in front of the Console's admission listener")
	f.StringVar(&o.namespace, "namespace", "", "the Service's namespace")
	f.IntVar(&o.port, "port", 0, "the Service's port (default 443)")
	f.StringVar(&o.url, "url", "", "instead of a Service: the admission listener's https://HOST:PORT")
	f.StringVar(&o.cluster, "cluster", "", "name the cluster in the webhook's path, for rules whose collections list clusters")
	f.StringVar(&o.failurePolicy, "failure-policy", "", "Ignore (default: admit when the Console cannot answer) or Fail (refuse)")
	f.StringVar(&o.name, "name", "", "the configuration's name (default bulwark-admission)")
	f.IntVar(&o.timeout, "timeout", 0, "seconds the API server waits for an answer, 1-30 (default 10)")
	return cmd
}

type admissionAuditOptions struct {
	namespaces, effects, operations, kinds, clusters []string
	since                                            string
	limit                                            int
}

func (a *app) admissionAuditsCommand() *cobra.Command {
	var o admissionAuditOptions
	cmd := &cobra.Command{
		Use:   "audits [--namespace NS] [--effect allow|alert|block] [--since 24h] [--limit N]",
		Short: "List the admission controller's decisions, newest first",
		Long: `List what the admission controller decided about workloads, newest first:
allow (no failed check, an exempt namespace, or an update that left the pod
template as it was), alert (allowed with warnings; in audit mode also what a
rule would have blocked) or block (denied), with the rule, the user and the
failed checks (-o json shows every finding with its fields).`,
		Example: `  bulwarkctl admission audits --effect block --since 24h
  bulwarkctl admission audits --namespace prod,staging -o json`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if o.limit < 0 {
				return usagef("--limit must not be negative")
			}
			q := url.Values{}
			for _, p := range []struct {
				flag, param string
				vals        []string
			}{{"namespace", "namespace", o.namespaces}, {"effect", "effect", o.effects}, {"operation", "operation", o.operations},
				{"kind", "kind", o.kinds}, {"cluster", "cluster", o.clusters}} {
				for _, v := range p.vals {
					if strings.TrimSpace(v) == "" {
						return usagef("--%s: empty value", p.flag)
					}
					q.Add(p.param, v)
				}
			}
			if o.since != "" {
				since, err := sinceTime(o.since, time.Now())
				if err != nil {
					return err
				}
				q.Set("from", since.UTC().Format(time.RFC3339Nano))
			}
			if o.limit > 0 {
				q.Set("limit", strconv.Itoa(o.limit))
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			recs, err := getList[audit.Admission](ctx, c, "/api/v1/audits/admission", q)
			if err != nil {
				return fmt.Errorf("read the admission audit: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, recs)
			}
			return writeAdmissionAudits(a, recs)
		}),
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.namespaces, "namespace", nil, "only these namespaces (repeat or comma-separate)")
	f.StringSliceVar(&o.effects, "effect", nil, "only these effects: allow, alert, block")
	f.StringSliceVar(&o.operations, "operation", nil, "only these operations: CREATE, UPDATE")
	f.StringSliceVar(&o.kinds, "kind", nil, "only these kinds (Deployment, Pod…)")
	f.StringSliceVar(&o.clusters, "cluster", nil, "only these clusters")
	f.StringVar(&o.since, "since", "", "leave out older decisions: a duration back from now (24h) or an RFC 3339 time")
	f.IntVar(&o.limit, "limit", 0, "at most this many decisions, up to 1000 (default 100)")
	return cmd
}

func writeAdmissionAudits(a *app, recs []audit.Admission) error {
	t := newTable(a.stdout, "TIME", "EFFECT", "MODE", "OPERATION", "OBJECT", "USER", "RULE", "FAILED CHECKS")
	for _, r := range recs {
		obj := r.Kind + " " + r.Namespace + "/" + r.Name
		if r.Cluster != "" {
			obj = r.Cluster + ": " + obj
		}
		var checks []string
		for _, f := range r.Findings {
			id := f.PrismaID
			if id == "" {
				id = f.Check
			}
			checks = append(checks, id+"("+string(f.Effect)+")")
		}
		failed := strings.Join(checks, " ")
		if failed == "" {
			failed = r.Message
		}
		effect := r.Effect
		if r.DryRun {
			effect += " (dry run)"
		}
		t.row(timeCell(r.Time), effect, r.Mode, r.Operation, obj, r.Username, r.RuleName, failed)
	}
	return t.flush()
}
