package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"bulwark/api"
	"bulwark/internal/runtimepolicy"
)

func (a *app) runtimeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Runtime defense: rules, learned models and incidents",
		Long: `Runtime defense: the runtime rules for containers and hosts, the models learned
for each container image, and the incidents that runtime audits form.

The rules' detections and deviations from a learned model become audits
(bulwarkctl events --type audit lists them); rules whose effect is prevent
have the kernel deny the action where the Defender has a mechanism for it,
and block also stops the container.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.runtimePolicyCommand(), a.runtimeModelsCommand(), a.runtimeIncidentsCommand())
	return cmd
}

// runtimeKind reads the KIND argument.
func runtimeKind(s string) (runtimepolicy.Kind, error) {
	switch runtimepolicy.Kind(s) {
	case runtimepolicy.Container, runtimepolicy.Host:
		return runtimepolicy.Kind(s), nil
	}
	return "", usagef("KIND must be container or host, not %q", s)
}

func (a *app) runtimePolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Read and replace the runtime rules for containers or hosts",
		Long: `Read and replace the runtime policy of containers or hosts: ordered rules, the
first enabled rule whose collections match decides (Prisma's shape, see
GET /api/v1/openapi.yaml). Before any is set the default policy is in force.`,
		Args: args(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "get KIND",
		Short: "Print the rules: a table, or with -o json the policy document",
		Example: `  bulwarkctl runtime policy get container
  bulwarkctl runtime policy get host -o json > host-runtime.json`,
		Args: args("KIND"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			k, err := runtimeKind(args[0])
			if err != nil {
				return err
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var doc json.RawMessage
			if err := c.do(ctx, http.MethodGet, "/api/v1/policies/"+k.PolicyType(), nil, nil, &doc); err != nil {
				return fmt.Errorf("get the %s runtime policy: %w", k, err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, doc)
			}
			p, err := runtimepolicy.ParsePolicy(doc)
			if err != nil {
				return fmt.Errorf("the Console's %s runtime policy: %w", k, err)
			}
			return writeRuntimeRules(a.stdout, p)
		}),
	})
	var file string
	set := &cobra.Command{
		Use:   "set KIND --file FILE|-",
		Short: "Replace the rules; the Console checks them and pushes them to every Defender",
		Long: `Replace the runtime policy of containers or hosts with the JSON document in
FILE (- for standard input). It is checked here first, so that a mistake is
reported before anything is sent, and again by the Console.`,
		Example: `  bulwarkctl runtime policy get container -o json > rules.json
  $EDITOR rules.json
  bulwarkctl runtime policy set container --file rules.json`,
		Args: args("KIND"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			k, err := runtimeKind(args[0])
			if err != nil {
				return err
			}
			raw, err := a.readInput(file)
			if err != nil {
				return err
			}
			if _, err := runtimepolicy.ParsePolicy(raw); err != nil {
				return usagef("%s: %v", file, err)
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var res struct {
				Revision int64 `json:"revision"`
			}
			if err := c.do(ctx, http.MethodPut, "/api/v1/policies/"+k.PolicyType(), nil, json.RawMessage(raw), &res); err != nil {
				return fmt.Errorf("set the %s runtime policy: %w", k, err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, res)
			}
			_, err = fmt.Fprintf(a.stdout, "Replaced the %s runtime policy (revision %d)\n", k, res.Revision)
			return err
		}),
	}
	set.Flags().StringVarP(&file, "file", "f", "", "the policy document, or - for standard input")
	cmd.AddCommand(set)
	return cmd
}

// readInput reads a JSON document from a file or, for "-", standard input.
func (a *app) readInput(file string) ([]byte, error) {
	if file == "" {
		return nil, usagef("--file FILE (or - for standard input) is required")
	}
	var raw []byte
	var err error
	if file == "-" {
		raw, err = io.ReadAll(io.LimitReader(a.stdin, 1<<20))
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if !json.Valid(raw) {
		return nil, usagef("%s is not JSON", file)
	}
	return raw, nil
}

// writeRuntimeRules prints one row per rule: where it applies and what it
// prevents or blocks.
func writeRuntimeRules(w io.Writer, p runtimepolicy.Policy) error {
	t := newTable(w, "#", "NAME", "STATE", "COLLECTIONS", "PREVENTS", "BLOCKS")
	for i, r := range p.Rules {
		state := "enabled"
		if r.Disabled {
			state = "disabled"
		}
		var cols []string
		for _, c := range r.Collections {
			cols = append(cols, c.Name)
		}
		if len(cols) == 0 {
			cols = []string{"all"}
		}
		e := runtimepolicy.Compile(r, nil)
		var prevents []string
		add := func(n int, what string) {
			if n > 0 {
				prevents = append(prevents, fmt.Sprintf("%d %s", n, what))
			}
		}
		add(len(e.Exec), "exec")
		add(len(e.Write), "write")
		add(len(e.ConnectPorts)+len(e.ConnectCIDRs), "connect")
		add(len(e.ListenDenied)+len(e.ListenAllowed), "listen")
		if e.Drift != nil {
			prevents = append(prevents, "drift")
		}
		t.row(strconv.Itoa(i+1), r.Name, state, strings.Join(cols, ","), strings.Join(prevents, ", "), strings.Join(e.Block, ","))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if p.LearningDisabled {
		_, err := fmt.Fprintln(w, "Learning is disabled: no new models.")
		return err
	}
	return nil
}

func (a *app) runtimeModelsCommand() *cobra.Command {
	var image, state string
	var limit int
	cmd := &cobra.Command{
		Use:     "models [--image I] [--state S]",
		Aliases: []string{"model", "profiles"},
		Short:   "List the models learned for container images",
		Long: `List the learned models: for each image, what its containers did while the
model learned (processes, listening and outbound ports, written directories).
After learning, anything else is audited. --state is learning,
manualRelearning, active or manualActive (edited).`,
		Example: `  bulwarkctl runtime models
  bulwarkctl runtime models --state learning
  bulwarkctl runtime models get 3f0c... -o json > model.json
  bulwarkctl runtime models edit 3f0c... --file model.json
  bulwarkctl runtime models relearn --all`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if limit < 1 || limit > 1000 {
				return usagef("--limit must be from 1 to 1000, not %d", limit)
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if image != "" {
				q.Set("image", image)
			}
			if state != "" {
				q.Set("state", state)
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			ms, err := getList[runtimepolicy.Model](ctx, c, "/api/v1/profiles/container", q)
			if err != nil {
				return fmt.Errorf("list models: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, ms)
			}
			return writeModels(a.stdout, ms)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&image, "image", "", "only the model of this image")
	f.StringVar(&state, "state", "", "only models in this state")
	f.IntVar(&limit, "limit", 100, "most models to list, 1 to 1000")

	cmd.AddCommand(&cobra.Command{
		Use:   "get ID",
		Short: "Print one model",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var m runtimepolicy.Model
			if err := c.do(ctx, http.MethodGet, "/api/v1/profiles/container/"+url.PathEscape(args[0]), nil, nil, &m); err != nil {
				return fmt.Errorf("get model %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, m)
			}
			return writeModel(a.stdout, m)
		}),
	})
	var file string
	edit := &cobra.Command{
		Use:   "edit ID --file FILE|-",
		Short: "Replace a model's lists; it stops learning and every Defender adopts it",
		Long: `Replace a model's processes, network and filesystem lists with those of the
JSON document in FILE (- for standard input), typically a model printed by
'bulwarkctl runtime models get ID -o json' and changed. The model stops
learning (manualActive) and every Defender adopts it.`,
		Args: args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			raw, err := a.readInput(file)
			if err != nil {
				return err
			}
			if _, err := runtimepolicy.ParseModelEdit(raw); err != nil {
				return usagef("%s: %v", file, err)
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var m runtimepolicy.Model
			if err := c.do(ctx, http.MethodPut, "/api/v1/profiles/container/"+url.PathEscape(args[0]), nil, json.RawMessage(raw), &m); err != nil {
				return fmt.Errorf("edit model %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, m)
			}
			_, err = fmt.Fprintf(a.stdout, "Edited the model of %s (generation %d)\n", m.Image, m.Generation)
			return err
		}),
	}
	edit.Flags().StringVarP(&file, "file", "f", "", "the model document, or - for standard input")
	cmd.AddCommand(edit)
	var all bool
	relearn := &cobra.Command{
		Use:   "relearn ID | --all",
		Short: "Forget what a model (or every model) learned and learn again from now",
		Args: func(_ *cobra.Command, got []string) error {
			switch {
			case all && len(got) == 0, !all && len(got) == 1:
				return nil
			case all:
				return usagef("give a model ID or --all, not both")
			}
			return usagef("expected a model ID or --all, got %d argument(s)", len(got))
		},
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			if all {
				var res struct {
					Relearning int `json:"relearning"`
				}
				if err := c.do(ctx, http.MethodPost, "/api/v1/profiles/container/learn", nil, nil, &res); err != nil {
					return fmt.Errorf("relearn models: %w", err)
				}
				if a.output == "json" {
					return writeJSON(a.stdout, res)
				}
				_, err = fmt.Fprintf(a.stdout, "%d models learn again\n", res.Relearning)
				return err
			}
			var m runtimepolicy.Model
			if err := c.do(ctx, http.MethodPost, "/api/v1/profiles/container/"+url.PathEscape(args[0])+"/learn", nil, nil, &m); err != nil {
				return fmt.Errorf("relearn model %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, m)
			}
			_, err = fmt.Fprintf(a.stdout, "The model of %s learns again\n", m.Image)
			return err
		}),
	}
	relearn.Flags().BoolVar(&all, "all", false, "every model")
	cmd.AddCommand(relearn)
	return cmd
}

func writeModels(w io.Writer, ms []runtimepolicy.Model) error {
	t := newTable(w, "ID", "IMAGE", "STATE", "GEN", "PROCESSES", "LISTEN", "OUTBOUND", "PATHS", "LEARNING ENDS", "HOSTS")
	for _, m := range ms {
		ends := ""
		if m.Learning() && !m.LearningEnds.IsZero() {
			ends = timeCell(m.LearningEnds)
		}
		t.row(m.ID, m.Image, string(m.State), strconv.FormatInt(m.Generation, 10), strconv.Itoa(len(m.Processes)),
			ports(m.Network.ListeningPorts), ports(m.Network.OutboundPorts), strconv.Itoa(len(m.Filesystem.Paths)), ends, strings.Join(m.Hosts, ","))
	}
	return t.flush()
}

func ports(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func writeModel(w io.Writer, m runtimepolicy.Model) error {
	fmt.Fprintf(w, "Model %s of %s: %s, generation %d\n", m.ID, m.Image, m.State, m.Generation)
	if !m.LearningStarted.IsZero() {
		fmt.Fprintf(w, "Learning from %s", timeCell(m.LearningStarted))
		if !m.LearningEnds.IsZero() {
			fmt.Fprintf(w, " to %s", timeCell(m.LearningEnds))
		}
		fmt.Fprintln(w)
	}
	t := newTable(w, "WHAT", "LEARNED")
	for _, p := range m.Processes {
		t.row("process", p.Path)
	}
	for _, p := range m.Network.ListeningPorts {
		t.row("listens on", strconv.Itoa(int(p)))
	}
	for _, p := range m.Network.OutboundPorts {
		t.row("connects to port", strconv.Itoa(int(p)))
	}
	for _, a := range m.Network.OutboundIPs {
		t.row("connects to", a)
	}
	for _, p := range m.Filesystem.Paths {
		t.row("writes in", p)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if m.Truncated {
		_, err := fmt.Fprintln(w, "Learning saw more than a model holds; what did not fit is audited.")
		return err
	}
	return nil
}

func (a *app) runtimeIncidentsCommand() *cobra.Command {
	var o struct {
		since, host, container, category, typ string
		open                                  bool
		limit                                 int
	}
	cmd := &cobra.Command{
		Use:     "incidents [--since 24h] [--host H] [--container ID] [--category C] [--type container|host] [--open]",
		Aliases: []string{"incident"},
		Short:   "List incidents: runtime audits of one container or host close in time",
		Example: `  bulwarkctl runtime incidents --since 24h --open
  bulwarkctl runtime incidents get defender-1a2b:4711
  bulwarkctl runtime incidents ack defender-1a2b:4711`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if o.limit < 1 || o.limit > 1000 {
				return usagef("--limit must be from 1 to 1000, not %d", o.limit)
			}
			q := url.Values{"limit": {strconv.Itoa(o.limit)}}
			if o.since != "" {
				since, err := sinceTime(o.since, time.Now())
				if err != nil {
					return err
				}
				q.Set("from", since.UTC().Format(time.RFC3339Nano))
			}
			for k, v := range map[string]string{"hostname": o.host, "containerID": o.container, "category": o.category, "type": o.typ} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if o.open {
				q.Set("acknowledged", "false")
			}
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			incs, err := getList[api.Incident](ctx, c, "/api/v1/audits/incidents", q)
			if err != nil {
				return fmt.Errorf("list incidents: %w", err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, incs)
			}
			t := newTable(a.stdout, "ID", "TIME", "CATEGORY", "WHERE", "IMAGE", "AUDITS", "ACKNOWLEDGED")
			for _, i := range incs {
				ack := "no"
				if i.Acknowledged {
					ack = "by " + i.AcknowledgedBy
				}
				t.row(i.ID, timeCell(i.Time), i.Category, incidentWhere(i), i.ImageName, strconv.Itoa(i.AuditCount), ack)
			}
			return t.flush()
		}),
	}
	f := cmd.Flags()
	f.StringVar(&o.since, "since", "", "incidents active since: a duration back from now (24h) or an RFC 3339 time")
	f.StringVar(&o.host, "host", "", "host name")
	f.StringVar(&o.container, "container", "", "container ID or a prefix")
	f.StringVar(&o.category, "category", "", "category, such as reverseShell or cryptoMiner")
	f.StringVar(&o.typ, "type", "", "container or host")
	f.BoolVar(&o.open, "open", false, "only incidents not acknowledged")
	f.IntVar(&o.limit, "limit", 100, "most incidents to list, 1 to 1000")

	cmd.AddCommand(&cobra.Command{
		Use:   "get ID",
		Short: "Print an incident: its audits and the container's forensic record",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var inc api.Incident
			if err := c.do(ctx, http.MethodGet, "/api/v1/audits/incidents/"+url.PathEscape(args[0]), nil, nil, &inc); err != nil {
				return fmt.Errorf("get incident %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, inc)
			}
			return writeIncident(a.stdout, inc)
		}),
	})
	var reopen bool
	ack := &cobra.Command{
		Use:   "ack ID [--reopen]",
		Short: "Acknowledge an incident (or reopen it)",
		Args:  args("ID"),
		RunE: a.run(func(ctx context.Context, args []string) error {
			c, err := a.authClient(ctx)
			if err != nil {
				return err
			}
			var inc api.Incident
			if err := c.do(ctx, http.MethodPatch, "/api/v1/audits/incidents/acknowledge/"+url.PathEscape(args[0]), nil, api.IncidentAck{Acknowledged: !reopen}, &inc); err != nil {
				return fmt.Errorf("acknowledge incident %s: %w", args[0], err)
			}
			if a.output == "json" {
				return writeJSON(a.stdout, inc)
			}
			verb := "Acknowledged"
			if reopen {
				verb = "Reopened"
			}
			_, err = fmt.Fprintf(a.stdout, "%s incident %s\n", verb, inc.ID)
			return err
		}),
	}
	ack.Flags().BoolVar(&reopen, "reopen", false, "mark it not acknowledged again")
	cmd.AddCommand(ack)
	return cmd
}

func incidentWhere(i api.Incident) string {
	if i.Type == "host" {
		return "host " + i.Hostname
	}
	name := i.ContainerName
	if name == "" {
		name = shortID(i.ContainerID)
	}
	return name + " on " + i.Hostname
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func writeIncident(w io.Writer, i api.Incident) error {
	fmt.Fprintf(w, "Incident %s: %s, %d audits from %s to %s\n", i.ID, i.Category, i.AuditCount, timeCell(i.Time), timeCell(i.LastTime))
	fmt.Fprintf(w, "Where: %s", cell(incidentWhere(i)))
	if i.ImageName != "" {
		fmt.Fprintf(w, ", image %s", cell(i.ImageName))
	}
	fmt.Fprintln(w)
	if i.Acknowledged {
		fmt.Fprintf(w, "Acknowledged by %s at %s\n", cell(i.AcknowledgedBy), timeCell(i.AcknowledgedAt))
	}
	fmt.Fprintln(w, "\nAudits:")
	t := newTable(w, "TIME", "ATTACK", "EFFECT", "RULE", "MESSAGE")
	for _, a := range i.Audits {
		effect := a.Effect
		switch {
		case a.Prevented:
			effect += " (prevented by " + a.Mechanism + ")"
		case a.Blocked:
			effect += " (stopped)"
		}
		t.row(timeCell(a.Time), a.AttackType, effect, a.RuleName, a.Msg)
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, f := range i.Forensics {
		fmt.Fprintf(w, "\nForensic record (%s):\n", cell(f.Reason))
		pt := newTable(w, "PID", "PPID", "UID", "STARTED", "EXITED", "COMMAND")
		for _, p := range f.Processes {
			exited := ""
			if p.Exited != nil {
				exited = timeCell(*p.Exited)
			}
			cmdline := strings.Join(p.Argv, " ")
			if cmdline == "" {
				cmdline = p.Exe
			}
			pt.row(strconv.Itoa(int(p.PID)), strconv.Itoa(int(p.PPID)), strconv.Itoa(int(p.UID)), timeCell(p.Start), exited, cmdline)
		}
		if err := pt.flush(); err != nil {
			return err
		}
		et := newTable(w, "TIME", "EVENT", "PID", "EXE", "DETAIL", "AUDIT")
		for _, e := range f.Events {
			detail := ""
			switch {
			case e.File != nil && e.File.NewPath != "":
				detail = e.File.Path + " -> " + e.File.NewPath
			case e.File != nil:
				detail = e.File.Path
			case e.Net != nil && e.Net.DstPort != 0:
				detail = fmt.Sprintf("%s:%d", e.Net.DstAddr, e.Net.DstPort)
			case e.Net != nil:
				detail = fmt.Sprintf("port %d", e.Net.SrcPort)
			}
			et.row(timeCell(e.Time), e.Kind, strconv.Itoa(int(e.PID)), e.Exe, detail, e.Audit)
		}
		if err := et.flush(); err != nil {
			return err
		}
		if f.Dropped > 0 {
			fmt.Fprintf(w, "(%d earlier events no longer in the record)\n", f.Dropped)
		}
	}
	return nil
}
