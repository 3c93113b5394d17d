// Package collection scopes policy rules to resources: a Collection is a
// named set of globs over images, containers, hosts, labels, namespaces and
// clusters, as in Prisma Cloud Compute. Every policy type (compliance,
// runtime, …) matches its ordered rules against resources with it.
package collection

import (
	"slices"
	"strings"
)

// Collection is a named set of resources given by globs: "*" matches any
// string (including "/"), "?" one character. An empty list matches every
// resource; a resource is in the collection when every non-empty list has a
// glob matching it. Labels are "key:value" globs ("app:web*", "team:*").
type Collection struct {
	Name       string   `json:"name"`
	Images     []string `json:"images,omitempty"`
	Containers []string `json:"containers,omitempty"`
	Hosts      []string `json:"hosts,omitempty"`
	Labels     []string `json:"labels,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	Clusters   []string `json:"clusters,omitempty"`

	// Prisma's collections also scope cloud resources Bulwark does not
	// inventory (accounts, serverless functions, app IDs, code
	// repositories). They are kept so that Prisma documents round-trip; a
	// resource here has none of them, so such a list matches only when it
	// is empty or holds "*".
	AccountIDs []string `json:"accountIDs,omitempty"`
	AppIDs     []string `json:"appIDs,omitempty"`
	CodeRepos  []string `json:"codeRepos,omitempty"`
	Functions  []string `json:"functions,omitempty"`
	// Descriptive fields of Prisma's collections, kept as given.
	Description string `json:"description,omitempty"`
	Color       string `json:"color,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Modified    string `json:"modified,omitempty"`
	System      bool   `json:"system,omitempty"`
	Prisma      bool   `json:"prisma,omitempty"`
}

// Resource is what a collection is matched against: a container (running
// or in a manifest), an image or a host.
type Resource struct {
	Image     string            `json:"image,omitempty"`
	Container string            `json:"container,omitempty"`
	Host      string            `json:"host,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Cluster   string            `json:"cluster,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Matches reports whether r is in the collection.
func (c Collection) Matches(r Resource) bool {
	return anyGlob(c.Images, r.Image) && anyGlob(c.Containers, r.Container) && anyGlob(c.Hosts, r.Host) &&
		anyGlob(c.Namespaces, r.Namespace) && anyGlob(c.Clusters, r.Cluster) && labelsMatch(c.Labels, r.Labels) &&
		anyGlob(c.AccountIDs, "") && anyGlob(c.AppIDs, "") && anyGlob(c.CodeRepos, "") && anyGlob(c.Functions, "")
}

// Any reports whether r is in any of cs; no collections scope every
// resource, as a rule without collections applies to all.
func Any(cs []Collection, r Resource) bool {
	return len(cs) == 0 || slices.ContainsFunc(cs, func(c Collection) bool { return c.Matches(r) })
}

func anyGlob(globs []string, s string) bool {
	return len(globs) == 0 || slices.ContainsFunc(globs, func(g string) bool { return Glob(g, s) })
}

func labelsMatch(globs []string, labels map[string]string) bool {
	if len(globs) == 0 || slices.Contains(globs, "*") {
		return true
	}
	for _, g := range globs {
		kg, vg, ok := strings.Cut(g, ":")
		if !ok {
			vg = "*"
		}
		for k, v := range labels {
			if Glob(kg, k) && Glob(vg, v) {
				return true
			}
		}
	}
	return false
}

// Glob reports whether s matches pattern, where "*" matches any sequence of
// characters (slashes included, unlike path.Match) and "?" any one character.
func Glob(pattern, s string) bool {
	// Iterative matching with one backtrack point: linear in practice.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
