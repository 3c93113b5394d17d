package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"bulwark/api"
	"bulwark/internal/audit"
	"bulwark/internal/event"
	"bulwark/internal/store"
)

// Bounds of one incident's detail.
const (
	incidentAudits    = 100
	incidentForensics = 5
	// forensicsSlack widens the window in which an incident's forensic
	// records are looked for: a record goes with the first audit of a
	// container, which may open an earlier incident.
	forensicsSlack = time.Minute
)

// listIncidents answers GET /api/v1/audits/incidents: incidents newest
// first, with Prisma's ?offset= and ?limit=, and filters ?from= ?to=
// ?hostname= ?containerID= ?category= ?acknowledged= ?type=container|host.
func (s *Server) listIncidents(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	f := store.IncidentFilter{Host: q.Get("hostname"), ContainerID: q.Get("containerID"), Category: q.Get("category")}
	var err error
	if f.Since, err = parseTimeParam(q.Get("from"), "from"); err != nil {
		return err
	}
	if f.Until, err = parseTimeParam(q.Get("to"), "to"); err != nil {
		return err
	}
	if f.Limit, err = parseIntParam(q.Get("limit"), "limit", 0, 1000); err != nil {
		return err
	}
	if f.Offset, err = parseIntParam(q.Get("offset"), "offset", 0, 1<<30); err != nil {
		return err
	}
	switch v := q.Get("acknowledged"); v {
	case "":
	case "true", "false":
		b := v == "true"
		f.Acknowledged = &b
	default:
		return badRequest("query parameter acknowledged=%q must be true or false", v)
	}
	switch v := q.Get("type"); v {
	case "":
	case "container":
		f.InContainer = true
	case "host":
		f.HostOnly = true
	default:
		return badRequest("query parameter type=%q must be container or host", v)
	}
	incs, err := s.store.Incidents(r.Context(), f)
	if err != nil {
		return fmt.Errorf("list incidents: %w", err)
	}
	out := make([]api.Incident, 0, len(incs))
	for _, inc := range incs {
		out = append(out, toIncident(inc))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func toIncident(inc store.Incident) api.Incident {
	typ := "container"
	if inc.ContainerID == "" {
		typ = "host"
	}
	return api.Incident{
		ID: inc.ID, Type: typ, Category: inc.Category, Time: inc.First, LastTime: inc.Last, Hostname: inc.Host, DefenderID: inc.DefenderID,
		ContainerID: inc.ContainerID, ContainerName: inc.ContainerName, ImageName: inc.Image, Namespace: inc.Namespace,
		AuditCount: inc.Audits, Detections: nonNil(inc.Detections), Acknowledged: inc.Acknowledged, AcknowledgedBy: inc.AckBy, AcknowledgedAt: inc.AckAt,
	}
}

// getIncident answers GET /api/v1/audits/incidents/{id}: the incident with
// its audits and the Defender's forensic records of the container.
func (s *Server) getIncident(w http.ResponseWriter, r *http.Request, _ principal) error {
	ctx := r.Context()
	inc, err := s.store.Incident(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	out := toIncident(inc)
	refs, err := s.store.IncidentAudits(ctx, inc.ID, incidentAudits)
	if err != nil {
		return fmt.Errorf("incident audits: %w", err)
	}
	for _, ref := range refs {
		es, err := s.store.Events(ctx, event.Filter{DefenderID: ref.DefenderID, AfterSeq: ref.Seq - 1, Limit: 1})
		if err != nil {
			return fmt.Errorf("incident audits: %w", err)
		}
		if len(es) == 1 && es[0].Seq == ref.Seq {
			a, _ := toRuntimeAudit(es[0])
			out.Audits = append(out.Audits, a)
		}
	}
	f := event.Filter{DefenderID: inc.DefenderID, Kind: event.KindRuntimeForensics, OrderByTime: true,
		Since: inc.First.Add(-forensicsSlack), Until: inc.Last.Add(forensicsSlack), Limit: incidentForensics}
	if inc.ContainerID != "" {
		f.ContainerID = inc.ContainerID
	} else {
		f.HostOnly = true
	}
	es, err := s.store.Events(ctx, f)
	if err != nil {
		return fmt.Errorf("incident forensics: %w", err)
	}
	for _, e := range es {
		var fr event.Forensics
		if json.Unmarshal(e.Data, &fr) == nil {
			out.Forensics = append(out.Forensics, fr)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ackIncident answers PATCH /api/v1/audits/incidents/acknowledge/{id}
// (Prisma): {"acknowledged": true} marks the incident handled, false
// reopens it.
func (s *Server) ackIncident(w http.ResponseWriter, r *http.Request, p principal) error {
	var body api.IncidentAck
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	id := r.PathValue("id")
	var inc store.Incident
	err := s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		var err error
		if inc, err = tx.Incident(ctx, id); err != nil {
			return "", err
		}
		inc.Acknowledged, inc.AckBy, inc.AckAt = body.Acknowledged, "", time.Time{}
		verb := "reopened"
		if body.Acknowledged {
			inc.AckBy, inc.AckAt, verb = p.username, s.cfg.Now(), "acknowledged"
		}
		return fmt.Sprintf("%s incident %s", verb, id), tx.PutIncident(ctx, inc)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toIncident(inc))
	return nil
}

// auditFields adds a runtime.audit's verdict to its listing.
func auditFields(a *api.RuntimeAudit, data []byte) {
	var au event.Audit
	if err := json.Unmarshal(data, &au); err != nil {
		return
	}
	v := au.Audit
	a.Type, a.Msg = v.Category, v.Message
	a.RuleName, a.Effect, a.AttackType, a.Prevented, a.Mechanism, a.Blocked = v.Rule, v.Effect, v.Detection, v.Prevented, v.Mechanism, v.Blocked
	if v.BlockError != "" {
		a.Msg += " (container not stopped: " + v.BlockError + ")"
	}
}
