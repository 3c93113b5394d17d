package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"bulwark/api"
	"bulwark/internal/compliance"
)

// maxCompliancePage is the most results the Console returns at once.
const maxCompliancePage = 1000

// complianceKinds are the compliance policies and result kinds: container, host.
var complianceKinds = []string{"container", "host"}

func complianceKind(arg string) (string, error) {
	for _, k := range complianceKinds {
		if arg == k {
			return k, nil
		}
	}
	return "", usagef("%q: want container or host", arg)
}

func (a *app) complianceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compliance",
		Short: "Compliance policies and the compliance explorer",
		Long: `Read and replace the compliance policies of running containers and of hosts,
and explore the Defenders' latest compliance results: which checks fail, on
how many containers, images and hosts, and which ones.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.compliancePolicyCommand(), a.complianceExplorerCommand())
	return cmd
}

func (a *app) compliancePolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Read and replace a compliance policy",
		Long: `Read and replace the compliance policy of running containers or of hosts, in
Prisma Cloud Compute's shape: ordered rules, the first enabled rule whose
collections match a resource decides. Until one is set, the built-in policy
applies: its first rule, "` + compliance.RuleIgnoreBulwark + `",
ignores Bulwark's own components.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "get container|host",
		Short: "Print a compliance policy: its rules as a table, or the document with -o json",
		Example: `  bulwarkctl compliance policy get container
  bulwarkctl compliance policy get host -o json > host-policy.json`,
		Args: args("KIND"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			kind, err := complianceKind(args[0])
			if err != nil {
				return err
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var doc json.RawMessage
			if err := c.do(ctx, http.MethodGet, "/api/v1/policies/compliance/"+kind, nil, nil, &doc); err != nil {
				return fmt.Errorf("get %s compliance policy: %w", kind, err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, doc)
			}
			var p compliance.Policy
			if err := json.Unmarshal(doc, &p); err != nil {
				return fmt.Errorf("get %s compliance policy: decode answer: %w", kind, err)
			}
			return writeComplianceRules(a.stdout, p.Rules)
		}),
	})
	var file string
	set := &cobra.Command{
		Use:   "set container|host --file FILE|-",
		Short: "Replace a compliance policy",
		Long: `Replace the compliance policy of running containers or of hosts with the JSON
document in FILE (- for standard input), as 'get -o json' prints it. The
Console validates it (rule names, effects, checks by slug or Prisma ID),
stores it as a new policy revision and pushes it to every connected Defender.`,
		Example: `  bulwarkctl compliance policy get container -o json > policy.json
  $EDITOR policy.json
  bulwarkctl compliance policy set container --file policy.json`,
		Args: args("KIND"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			kind, err := complianceKind(args[0])
			if err != nil {
				return err
			}
			if file == "" {
				return usagef("--file FILE (or - for standard input) is required")
			}
			var raw []byte
			if file == "-" {
				raw, err = io.ReadAll(io.LimitReader(a.stdin, 1<<20))
			} else {
				raw, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("read policy: %w", err)
			}
			var doc json.RawMessage
			if err := json.Unmarshal(raw, &doc); err != nil {
				return usagef("%s is not JSON: %v", file, err)
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var res struct {
				Revision int64 `json:"revision"`
			}
			if err := c.do(ctx, http.MethodPut, "/api/v1/policies/compliance/"+kind, nil, doc, &res); err != nil {
				return fmt.Errorf("set %s compliance policy: %w", kind, err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, res)
			}
			fmt.Fprintf(a.stdout, "Stored the %s compliance policy; the policy revision is now %d\n", kind, res.Revision)
			return nil
		}),
	}
	set.Flags().StringVarP(&file, "file", "f", "", "the policy JSON, or - for standard input")
	cmd.AddCommand(set)
	return cmd
}

// writeComplianceRules prints a policy's rules in order.
func writeComplianceRules(w io.Writer, rules []compliance.Rule) error {
	t := newTable(w, "#", "NAME", "EFFECT", "COLLECTIONS", "CHECKS")
	for i, r := range rules {
		effect := string(r.Effect)
		switch {
		case r.Disabled:
			effect = "disabled"
		case r.Condition != nil:
			effect = "listed checks"
		case effect == "":
			effect = "default"
		}
		var colls []string
		for _, c := range r.Collections {
			colls = append(colls, c.Name)
		}
		if len(colls) == 0 {
			colls = []string{"(all)"}
		}
		var checks []string
		if r.Condition != nil {
			for _, ref := range r.Condition.Checks {
				s := ref.Check
				if s == "" {
					s = strconv.Itoa(ref.ID)
				}
				if ref.Block {
					s += " (block)"
				}
				checks = append(checks, s)
			}
		}
		for _, slug := range slices.Sorted(maps.Keys(r.Checks)) {
			checks = append(checks, slug+"="+cmp.Or(string(r.Checks[slug]), "default"))
		}
		t.row(strconv.Itoa(i+1), r.Name, effect, strings.Join(colls, ", "), strings.Join(checks, ", "))
	}
	return t.flush()
}

// explorerOptions are the flags of bulwarkctl compliance explorer.
type explorerOptions struct {
	check, typ, since               string
	hosts, images, namespaces, name []string
}

func (a *app) complianceExplorerCommand() *cobra.Command {
	var o explorerOptions
	cmd := &cobra.Command{
		Use:   "explorer [--check ID] [--type container|host] [--host H] [--image I] [--namespace N] [--name C] [--since 24h|TIME]",
		Short: "Which compliance checks fail, and where",
		Long: `Show the compliance explorer: for each failed check (Prisma ID or slug, type,
severity) how many containers, images and hosts fail it, worst first, from the
latest result each Defender reported for each running container and host.

With --check (a Prisma ID such as 5515, or a slug such as host-pid, which
matches its Docker and CRI IDs) list the containers and hosts failing that
check instead, with the deciding rule's effect and what was found.

--host, --image, --namespace and --name (container name) take globs ("*" any
string, "?" one character), repeated or comma-separated; an image, namespace
or name filter leaves hosts out. A stopped container keeps its last result:
--since (a duration back from now, 24h, or an RFC 3339 time) leaves out older
results.

Needs a role with the read permission.`,
		Example: `  bulwarkctl compliance explorer
  bulwarkctl compliance explorer --namespace prod --since 24h
  bulwarkctl compliance explorer --check 5515
  bulwarkctl compliance explorer --check host-pid --image 'nginx:*' -o json`,
		Args: args(),
	}
	f := cmd.Flags()
	cmd.RunE = a.run(func(ctx context.Context, _ []string) error {
		for _, name := range []string{"host", "image", "namespace", "name"} {
			// --host "" (an empty variable) would otherwise mean every host.
			if v, _ := f.GetStringSlice(name); f.Changed(name) && len(v) == 0 {
				return usagef("--%s: empty value", name)
			}
		}
		return a.explore(ctx, o, time.Now())
	})
	f.StringVar(&o.check, "check", "", "list the resources failing this check: a Prisma ID (5515) or a slug (host-pid)")
	f.StringVar(&o.typ, "type", "", "only container or only host results")
	f.StringSliceVar(&o.hosts, "host", nil, "host name globs")
	f.StringSliceVar(&o.images, "image", nil, "image globs")
	f.StringSliceVar(&o.namespaces, "namespace", nil, "Kubernetes namespace globs")
	f.StringSliceVar(&o.name, "name", nil, "container name globs")
	f.StringVar(&o.since, "since", "", "leave out results older than this: a duration back from now (24h) or an RFC 3339 time")
	return cmd
}

// query turns the options into the explorer's query parameters.
func (o explorerOptions) query(now time.Time) (url.Values, error) {
	q := url.Values{}
	if o.typ != "" {
		if _, err := complianceKind(o.typ); err != nil {
			return nil, usagef("--type %s", err)
		}
	}
	if o.typ == "host" && len(o.images)+len(o.namespaces)+len(o.name) > 0 {
		return nil, usagef("--image, --namespace and --name select containers; drop them or --type host")
	}
	for _, p := range []struct {
		param, flag string
		vals        []string
	}{{"hostname", "host", o.hosts}, {"image", "image", o.images}, {"namespace", "namespace", o.namespaces}, {"name", "name", o.name}} {
		for _, v := range p.vals {
			if strings.TrimSpace(v) == "" {
				return nil, usagef("--%s: empty value", p.flag)
			}
			q.Add(p.param, v)
		}
	}
	if o.since != "" {
		since, err := sinceTime(o.since, now)
		if err != nil {
			return nil, err
		}
		q.Set("from", since.UTC().Format(time.RFC3339Nano))
	}
	return q, nil
}

// sinceTime reads --since: a duration back from now or an RFC 3339 time.
func sinceTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usagef("--since %s: want a duration back from now, positive", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usagef("--since %q: want a duration (10m, 24h) or an RFC 3339 time", s)
	}
	return t, nil
}

// failingResources is the output of explorer --check.
type failingResources struct {
	Check      string                    `json:"check"`
	Containers []api.ContainerCompliance `json:"containers"`
	Hosts      []api.HostCompliance      `json:"hosts"`
}

func (a *app) explore(ctx context.Context, o explorerOptions, now time.Time) error {
	q, err := o.query(now)
	if err != nil {
		return err
	}
	c, err := a.authClient(ctx)
	if err != nil {
		return err
	}
	if o.check == "" {
		if o.typ != "" {
			q.Set("type", o.typ)
		}
		var st api.ComplianceStats
		if err := c.do(ctx, http.MethodGet, "/api/v1/stats/compliance", q, nil, &st); err != nil {
			return fmt.Errorf("read the compliance explorer: %w", err)
		}
		if a.output == "json" {
			return writeJSON(a.stdout, st)
		}
		return writeComplianceStats(a.stdout, st)
	}

	q.Set("complianceIDs", o.check)
	out := failingResources{Check: o.check, Containers: []api.ContainerCompliance{}, Hosts: []api.HostCompliance{}}
	if o.typ != "host" {
		if out.Containers, err = allPages[api.ContainerCompliance](ctx, c, "/api/v1/containers", q); err != nil {
			return fmt.Errorf("list containers failing %s: %w", o.check, err)
		}
	}
	// A host has no image, namespace or container name: such filters leave hosts out.
	if o.typ != "container" && len(o.images)+len(o.namespaces)+len(o.name) == 0 {
		if out.Hosts, err = allPages[api.HostCompliance](ctx, c, "/api/v1/hosts", q); err != nil {
			return fmt.Errorf("list hosts failing %s: %w", o.check, err)
		}
	}
	if a.output == "json" {
		return writeJSON(a.stdout, out)
	}
	return writeFailingResources(a.stdout, out)
}

// allPages GETs every page of a list that the X-Bulwark-Next header pages.
func allPages[T any](ctx context.Context, c *client, path string, q url.Values) ([]T, error) {
	q = cloneValues(q)
	q.Set("limit", strconv.Itoa(maxCompliancePage))
	all := []T{}
	for {
		var page []T
		next, err := c.getPage(ctx, path, q, &page)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < maxCompliancePage || next == "" {
			return all, nil
		}
		q.Set("after", next)
	}
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// getPage GETs path into out and returns the answer's X-Bulwark-Next header.
func (c *client) getPage(ctx context.Context, path string, q url.Values, out any) (string, error) {
	var next string
	err := c.doWithHeader(ctx, http.MethodGet, path, q, out, func(h http.Header) { next = h.Get(nextHeader) })
	return next, err
}

// doWithHeader is client.do for a GET whose answer's headers matter.
func (c *client) doWithHeader(ctx context.Context, method, path string, query url.Values, out any, header func(http.Header)) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path+"?"+query.Encode(), nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	switch {
	case c.username != "" || c.password != "":
		req.SetBasicAuth(c.username, c.password)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeAPIError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	header(resp.Header)
	return nil
}

func writeComplianceStats(w io.Writer, st api.ComplianceStats) error {
	if len(st.IDs) == 0 {
		fmt.Fprintln(w, "No failed checks.")
	} else {
		t := newTable(w, "ID", "TYPE", "SEVERITY", "FAILED", "CONTAINERS", "IMAGES", "HOSTS", "TITLE")
		for _, e := range st.IDs {
			t.row(e.ID, e.Type, e.Severity, strconv.Itoa(e.Failed), strconv.Itoa(e.FailedContainers), strconv.Itoa(e.FailedImages), strconv.Itoa(e.FailedHosts), e.Title)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "Evaluated: %s (%s), %s\n", plural(st.Containers, "container"), plural(st.Images, "image"), plural(st.Hosts, "host"))
	return err
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// issuesOf returns the issues of a resource that are the check asked for.
func issuesOf(issues []api.ComplianceIssue, check string) []api.ComplianceIssue {
	var out []api.ComplianceIssue
	for _, i := range issues {
		if i.Check == check || strconv.Itoa(i.ID) == check {
			out = append(out, i)
		}
	}
	return out
}

func writeFailingResources(w io.Writer, r failingResources) error {
	if len(r.Containers)+len(r.Hosts) == 0 {
		_, err := fmt.Fprintf(w, "Nothing fails %s.\n", r.Check)
		return err
	}
	t := newTable(w, "TYPE", "HOST", "CONTAINER", "IMAGE", "NAMESPACE", "SCANNED", "ID", "EFFECT", "CAUSE")
	row := func(typ, host, ctr, image, ns string, scanned time.Time, issues []api.ComplianceIssue) {
		for _, i := range issuesOf(issues, r.Check) {
			id := i.Check
			if i.ID != 0 {
				id = strconv.Itoa(i.ID)
			}
			t.row(typ, host, ctr, image, ns, timeCell(scanned), id, i.Effect, i.Cause)
		}
	}
	for _, c := range r.Containers {
		name := c.Info.Name
		if name == "" {
			name = c.ID[:min(12, len(c.ID))]
		}
		row("container", c.Hostname, name, c.Info.Image, c.Info.Namespace, c.ScanTime, c.Info.ComplianceIssues)
	}
	for _, h := range r.Hosts {
		row("host", h.Hostname, "", "", "", h.ScanTime, h.ComplianceIssues)
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s and %s fail %s\n", plural(len(r.Containers), "container"), plural(len(r.Hosts), "host"), r.Check)
	return err
}
