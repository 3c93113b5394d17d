package bulwark.custom.no_docker_hub_test

import data.bulwark.custom.no_docker_hub

test_hub_image if {
	no_docker_hub.deny with input as {"pod": {"containers": [{"name": "a", "image": "nginx", "path": "spec.containers[0]"}]}}
}
