# Images must come from a registry of ours, not from Docker Hub.
package bulwark.custom.no_docker_hub

# registry is the registry host of an image reference; references without
# one ("nginx", "library/nginx", "acme/app") are pulled from Docker Hub.
registry(ref) := host if {
	parts := split(ref, "/")
	count(parts) > 1
	regex.match(`[.:]|^localhost$`, parts[0])
	host := parts[0]
} else := "docker.io"

hub(ref) if registry(ref) in {"docker.io", "index.docker.io", "registry-1.docker.io"}

deny contains {"msg": sprintf("image %s comes from Docker Hub", [c.image]), "path": concat(".", [c.path, "image"]), "container": c.name} if {
	some c in input.pod.containers
	hub(c.image)
}

deny contains {"msg": sprintf("image %s comes from Docker Hub", [img.value]), "path": img.key, "container": input.runtime.name} if {
	img := input.runtime.image
	hub(img.value)
}
