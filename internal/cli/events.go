package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"bulwark/api"
)

// nextHeader is where the Console puts the cursor of a page's last event.
const nextHeader = "X-Bulwark-Next"

// maxEventPage is the most events the Console returns at once.
const maxEventPage = 1000

// eventsOptions are the flags of bulwarkctl events.
type eventsOptions struct {
	typ, container, image, host, since string
	limit                              int
	follow, hostEvents                 bool
	poll                               time.Duration // between polls when following; a hidden flag for tests
}

func (a *app) eventsCommand() *cobra.Command {
	var o eventsOptions
	cmd := &cobra.Command{
		Use:   "events [--type T] [--container ID] [--image I] [--host H] [--since 10m|TIME] [--limit N] [--follow] [--host-events]",
		Short: "Read runtime events: processes, network, files and kernel, in containers or on hosts",
		Long: `Read the runtime events Defenders reported, oldest first: events in containers,
or with --host-events those of processes in no container.

--type is process, network, filesystem, kernel, audit (the verdicts of
runtime rules and learned models), or one event kind such as file.write. --container takes a container ID or a prefix of at least 12
characters; --image an image name as the runtime reports it; --host the name
of the host. --since is a duration back from now (10m, 2h) or an RFC 3339 time.

--follow keeps polling (every second) and prints events as they arrive, until
interrupted (Ctrl-C), which exits 0. It starts at --since, by default now.
With -o json it prints one JSON object per line. Events a Defender delivers
late, with a time before the last one printed (its spool drained after a
disconnection), are not shown by --follow; list them without it.

Needs a role with the read permission.`,
		Example: `  bulwarkctl events --since 1h
  bulwarkctl events --type process --image nginx:1.27 --limit 20
  bulwarkctl events --host-events --host node-7 --follow
  bulwarkctl events --container 3f4e5d6c7b8a --follow -o json | jq .msg`,
		Args: args(),
		RunE: a.run(func(ctx context.Context, _ []string) error { return a.events(ctx, o) }),
	}
	f := cmd.Flags()
	f.StringVar(&o.typ, "type", "", "process, network, filesystem, kernel, audit, or an event kind")
	f.StringVar(&o.container, "container", "", "container ID, or a prefix of at least 12 characters")
	f.StringVar(&o.image, "image", "", "image name")
	f.StringVar(&o.host, "host", "", "host name")
	f.StringVar(&o.since, "since", "", "only events since: a duration back from now (10m) or an RFC 3339 time")
	f.IntVar(&o.limit, "limit", 100, "most events to list, 1 to 1000 (without --follow)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing events as they arrive, until interrupted")
	f.BoolVar(&o.hostEvents, "host-events", false, "events of processes in no container, instead of container events")
	f.DurationVar(&o.poll, "poll-interval", time.Second, "time between polls with --follow")
	_ = f.MarkHidden("poll-interval")
	return cmd
}

// query turns the options into the API's query parameters.
func (o eventsOptions) query(now time.Time) (url.Values, error) {
	q := url.Values{}
	if o.limit < 1 || o.limit > maxEventPage {
		return nil, usagef("--limit must be from 1 to %d, not %d", maxEventPage, o.limit)
	}
	if o.poll <= 0 {
		return nil, usagef("--poll-interval must be positive")
	}
	if o.hostEvents && (o.container != "" || o.image != "") {
		return nil, usagef("--container and --image select container events; drop them or --host-events")
	}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("type", o.typ)
	set("container", o.container)
	set("image", o.image)
	set("hostname", o.host)
	var since time.Time
	switch {
	case o.since == "" && o.follow:
		since = now
	case o.since == "":
	default:
		if d, err := time.ParseDuration(o.since); err == nil {
			if d < 0 {
				return nil, usagef("--since %s: want a duration back from now, positive", o.since)
			}
			since = now.Add(-d)
		} else if since, err = time.Parse(time.RFC3339Nano, o.since); err != nil {
			return nil, usagef("--since %q: want a duration (10m, 2h) or an RFC 3339 time", o.since)
		}
	}
	if !since.IsZero() {
		q.Set("from", since.UTC().Format(time.RFC3339Nano))
	}
	q.Set("limit", strconv.Itoa(o.limit))
	if o.follow {
		q.Set("limit", strconv.Itoa(maxEventPage))
	}
	return q, nil
}

func (a *app) events(ctx context.Context, o eventsOptions) error {
	q, err := o.query(time.Now())
	if err != nil {
		return err
	}
	path := "/api/v1/audits/runtime/container"
	if o.hostEvents {
		path = "/api/v1/audits/runtime/host"
	}
	c, err := a.authClient(ctx)
	if err != nil {
		return err
	}
	if !o.follow {
		page, _, err := c.eventPage(ctx, path, q)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if a.output == "json" {
			return writeJSON(a.stdout, page)
		}
		return writeEvents(a.stdout, page, true)
	}
	return a.followEvents(ctx, c, path, q, o.poll)
}

// followEvents prints pages as they come until ctx ends. It reads again at
// once after a full page and waits poll after a short one; the cursor of the
// last event printed makes sure no event is printed twice or skipped, also
// among events of the same instant.
func (a *app) followEvents(ctx context.Context, c *client, path string, q url.Values, poll time.Duration) error {
	header := true
	enc := json.NewEncoder(a.stdout)
	for {
		page, next, err := c.eventPage(ctx, path, q)
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: following ends normally
		case isTransient(err):
			fmt.Fprintf(a.stderr, "bulwarkctl: read events: %v; retrying\n", err)
		case err != nil:
			return fmt.Errorf("read events: %w", err)
		}
		for _, e := range page {
			if a.output == "json" {
				if err := enc.Encode(e); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
			}
		}
		if a.output != "json" && len(page) > 0 {
			if err := writeEvents(a.stdout, page, header); err != nil {
				return err
			}
			header = false
		}
		if next != "" {
			q.Set("after", next)
		}
		if len(page) == maxEventPage {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// isTransient reports whether an error is worth retrying while following:
// the network or the Console's own failure, not a refusal.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var te *tlsError
	return !errors.As(err, &te)
}

// eventPage GETs one page of runtime audits and the cursor that follows it.
// It is client.do with the answer's X-Bulwark-Next header.
func (c *client) eventPage(ctx context.Context, path string, q url.Values) ([]api.RuntimeAudit, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, "", fmt.Errorf("build request: %w", err)
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
		return nil, "", c.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if len(data) > maxResponse {
		return nil, "", fmt.Errorf("GET %s: answer larger than %d bytes", path, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", decodeAPIError(resp.StatusCode, data)
	}
	page := []api.RuntimeAudit{}
	if err := json.Unmarshal(data, &page); err != nil {
		return nil, "", fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	if page == nil {
		page = []api.RuntimeAudit{}
	}
	return page, resp.Header.Get(nextHeader), nil
}

// writeEvents prints events as a table, with its header when header is set.
func writeEvents(w io.Writer, es []api.RuntimeAudit, header bool) error {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)} // a followed page: no header again
	if header {
		t = newTable(w, "TIME", "HOST", "CONTAINER", "IMAGE", "TYPE", "PID", "MESSAGE")
	}
	for _, e := range es {
		container := e.ContainerName
		if container == "" && e.ContainerID != "" {
			container = e.ContainerID[:min(12, len(e.ContainerID))]
		}
		t.row(timeCell(e.Time), e.Hostname, container, e.ImageName, e.Type, strconv.FormatUint(uint64(e.PID), 10), strings.TrimSpace(e.Msg))
	}
	return t.flush()
}
