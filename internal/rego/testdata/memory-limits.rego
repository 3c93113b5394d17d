# Every container of a pod sets a memory limit.
package bulwark.custom.memory_limits

deny contains {"msg": sprintf("container %s has no memory limit", [c.name]), "paths": [concat(".", [c.path, "resources.limits.memory"])], "container": c.name} if {
	some c in input.pod.containers
	object.get(c, "kind", "") != "ephemeral"
	not c.resources.limits.memory
}
