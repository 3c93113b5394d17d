#!/usr/bin/env bash
# make demo: runs a Console on the embedded store in .data/demo with demo
# users, prints how to log in, and stays in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${BULWARK_DEMO_DIR:-$PWD/.data/demo}
API=${BULWARK_API_ADDR:-127.0.0.1:8083}
CHANNEL=${BULWARK_CHANNEL_ADDR:-127.0.0.1:8084}
mkdir -p "$DATA" && chmod 700 "$DATA"

# The demo keeps its admin password in a 0600 file so that every run can print it.
if [ ! -s "$DATA/admin-password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DATA/admin-password")
fi
PW=$(cat "$DATA/admin-password")

port=${API##*:}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "demo: something already listens on 127.0.0.1:$port (another demo?). Stop it or set BULWARK_API_ADDR." >&2
  exit 1
fi

BULWARK_ADMIN_PASSWORD=$PW bin/bulwark-console --data-dir "$DATA" --api-addr "$API" --channel-addr "$CHANNEL" \
  >"$DATA/console.out" 2>"$DATA/console.log" &
console=$!
defender=
WORKLOAD=bulwark-demo-web
stop() {
  if [ -n "${workload_started:-}" ]; then runc kill "$WORKLOAD" KILL 2>/dev/null; sleep 0.1; runc delete -f "$WORKLOAD" 2>/dev/null; fi
  kill $defender $console 2>/dev/null; wait $defender $console 2>/dev/null; echo "demo: stopped"
}
trap stop EXIT
trap 'exit 0' INT TERM

URL="https://$API"
for _ in $(seq 1 100); do
  curl -sfk "$URL/api/v1/_ping" >/dev/null 2>&1 && break
  kill -0 $console 2>/dev/null || { echo "demo: the Console exited:"; cat "$DATA/console.log"; exit 1; }
  sleep 0.1
done
curl -sfk "$URL/api/v1/_ping" >/dev/null || { echo "demo: the Console did not answer on $URL"; exit 1; }

ctl() { bin/bulwarkctl --console "$URL" --ca-cert "$DATA/pki/ca.pem" --username admin --password "$PW" "$@"; }

# A local Defender, from an install bundle made once.
if [ ! -e "$DATA/defender-bundle/bundle.json" ]; then
  ctl defender bundle --id "demo-$(hostname)" --out "$DATA/defender-bundle" >/dev/null
fi
bin/bulwark-defender --bundle "$DATA/defender-bundle" --state-dir "$DATA/defender-state" \
  >"$DATA/defender.log" 2>&1 &
defender=$!

# Demo data, once: an auditor, a CI user and a runtime policy.
if [ ! -e "$DATA/.seeded" ]; then
  printf 'auditor-demo-pw\n' | ctl users create alice --role auditor --password-stdin >/dev/null
  printf 'ci-demo-password\n' | ctl users create ci-bot --role ci-user --password-stdin >/dev/null
  curl -sf --cacert "$DATA/pki/ca.pem" -u "admin:$PW" -X PUT -H 'Content-Type: application/json' \
    -d '{"rules":[{"name":"demo - alert on everything","effect":"alert"}]}' "$URL/api/v1/policies/runtime/container" >/dev/null
  touch "$DATA/.seeded"
fi

# A demo workload: a busybox container (plain runc) that execs, writes under
# /etc and makes connections every few seconds, for the sensor to see.
start_workload() {
  local b="$DATA/workload"
  if [ ! -e "$b/config.json" ]; then
    mkdir -p "$b/rootfs/bin" "$b/rootfs/etc" "$b/rootfs/tmp"
    cp /bin/busybox "$b/rootfs/bin/"
    for a in sh sleep echo cat nc date true; do ln -sf busybox "$b/rootfs/bin/$a"; done
    (cd "$b" && runc spec)
    python3 - "$b/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "while true; do date > /etc/last-run; (nc -l -p 8080 >/dev/null &) ; sleep 0.2; echo hi | nc 127.0.0.1 8080; sleep 5; done"]
c["root"]["readonly"] = False
c["annotations"] = {"io.kubernetes.pod.name": "web-demo-0", "io.kubernetes.pod.namespace": "demo", "io.bulwark.image": "registry.local/demo/web:1.0"}
json.dump(c, open(p, "w"))
PY
  fi
  runc delete -f "$WORKLOAD" >/dev/null 2>&1 || true
  runc run --detach --bundle "$b" "$WORKLOAD" >"$DATA/workload.log" 2>&1 && workload_started=1
}
if [ "$(id -u)" -eq 0 ] && command -v runc >/dev/null && [ -x /bin/busybox ]; then
  start_workload || echo "demo: could not start the demo workload (see $DATA/workload.log)"
fi

cat <<MSG

  Bulwark Console is running (embedded store in $DATA).

    URL:       $URL
    username:  admin
    password:  $PW
    CA:        $DATA/pki/ca.pem

  Try:
    curl -s --cacert $DATA/pki/ca.pem $URL/api/v1/_ping
    curl -s --cacert $DATA/pki/ca.pem -u admin:$PW $URL/api/v1/users
    bin/bulwarkctl --console $URL --ca-cert $DATA/pki/ca.pem login --username admin
    bin/bulwarkctl users

  Demo users: alice (auditor, auditor-demo-pw), ci-bot (ci-user, ci-demo-password).
  A local Defender (bundle in $DATA/defender-bundle) is connected, with its
  eBPF sensor; a demo container ($WORKLOAD, pod web-demo-0) keeps it busy:
    bin/bulwarkctl --console $URL --ca-cert $DATA/pki/ca.pem --username admin --password $PW events --follow
    curl -s --cacert $DATA/pki/ca.pem -u admin:$PW $URL/api/v1/defenders
    bin/bulwark-defender status --state-dir $DATA/defender-state
  Logs: $DATA/console.log, $DATA/defender.log. Ctrl-C stops the demo; the data stays for the next run.

MSG
wait $console
