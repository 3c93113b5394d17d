# Secrets are not passed as literal environment variables.
package bulwark.custom.plaintext_secrets

secretish(name) if regex.match(`(?i)(passw(or)?d|secret|token|api_?key)`, name)

deny contains sprintf("container %s sets %s in plain text", [c.name, e.name]) if {
	some c in input.pod.containers
	some e in c.env
	secretish(e.name)
	e.value != ""
}

deny contains sprintf("%s is set in plain text (%s)", [e.name, e.key]) if {
	some e in input.runtime.env
	secretish(e.name)
	e.value != ""
}
