#!/usr/bin/env bash
# Runs internal/enforcer's privileged tests inside a qemu VM that boots
# Debian's own kernel with bpf in lsm=, so that the BPF LSM programs, which the
# CI machine's kernel refuses, are tested for real (like tetragon's vmtests).
#
# The kernel comes from Debian's linux-image-amd64 package, downloaded (not
# installed) and extracted once into $VMTEST_CACHE (git-ignored). The VM boots
# an initramfs holding busybox, runc with its libraries and the static test
# binary; it runs the tests with BULWARK_ENFORCER_WANT=bpf-lsm, so they fail
# unless exec, file-write, connect and bind are enforced by BPF LSM there (the
# tests also run the fallback mechanisms with BPF LSM disabled), prints the
# exit code on the serial console and powers off. TCG only: KVM does not work
# on the CI machines. A soft lockup in the guest panics it (and so ends the
# run at once, with its trace in the output) rather than waiting for the
# timeout. VMTEST_APPEND replaces "quiet" on the kernel command line
# (loglevel=7 to see everything). One virtual CPU (VMTEST_SMP): with two, TCG
# runs each on its own host thread, and twice a guest locked up softly
# (44 s in syscall_trace_enter while the tests attached and detached syscall
# tracepoints, whose code the kernel patches with cross-CPU synchronisation);
# with one there is nothing to synchronise with, and the run is faster too.
#
# internal/sensor's loading and cwd tests run there too (VMTEST_SENSOR_RUN;
# "" skips them): the sensor must load whole, cwd walk included, on that
# older verifier as well.
#
#   scripts/vmtest.sh                 # every enforcer test, and the sensor's
#   VMTEST_RUN=TestExecDenied scripts/vmtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${VMTEST_CACHE:-.cache/vmtest}
RUN=${VMTEST_RUN:-.}
SENSOR_RUN=${VMTEST_SENSOR_RUN-^(TestProbesReported|TestKernelCwd.*|TestProcessEvents)\$}
TIMEOUT=${VMTEST_TIMEOUT:-900}
GO=${GO:-go}

if [ "$(id -u)" -ne 0 ]; then
  echo "vmtest: run as root (device nodes in the initramfs, packages)" >&2
  exit 1
fi

# Packages: name → a file that proves it is installed.
declare -A pkgs=(
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [cpio]=/usr/bin/cpio
  [busybox-static]=/bin/busybox
  [runc]=/usr/sbin/runc
)
missing=()
for p in "${!pkgs[@]}"; do
  [ -e "${pkgs[$p]}" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "vmtest: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel: Debian's current linux-image-<version>-amd64, extracted once.
mkdir -p "$CACHE"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
kdir="$CACHE/$kpkg"
if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1; then
  deb=$(ls "$CACHE/${kpkg}"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    echo "vmtest: downloading $kpkg"
    (cd "$CACHE" && { apt-get download -qq -o APT::Sandbox::User=root "$kpkg" || { apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root "$kpkg"; }; })
    deb=$(ls "$CACHE/${kpkg}"_*.deb | head -1)
  fi
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir.tmp" ./boot
  rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
  # Only the newest kernel is kept.
  find "$CACHE" -maxdepth 1 -name 'linux-image-*' ! -name "${kpkg}*" -exec rm -rf {} +
fi
kernel=$(ls "$kdir"/boot/vmlinuz-* | head -1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/initrd"
mkdir -p "$root"/{bin,sbin,usr/sbin,dev,proc,sys,tmp,run,etc,newroot}

# The static test binaries.
CGO_ENABLED=0 "$GO" test -c -o "$root/enforcer.test" ./internal/enforcer
CGO_ENABLED=0 "$GO" test -c -o "$root/sensor.test" ./internal/sensor

# busybox and its applets; runc and its libraries.
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
  [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
cp /usr/sbin/runc "$root/usr/sbin/runc"
for lib in $(ldd /usr/sbin/runc | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"

# Stage 1: runc's pivot_root cannot leave the initramfs, so the system moves
# to a tmpfs first.
cat >"$root/init" <<'EOF'
#!/bin/sh
mount -t tmpfs -o size=1g tmpfs /newroot
cp -a /bin /sbin /usr /lib /lib64 /etc /dev /enforcer.test /sensor.test /stage2 /newroot/
mkdir -p /newroot/proc /newroot/sys /newroot/tmp /newroot/run
exec switch_root /newroot /stage2
EOF
cat >"$root/stage2" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "vmtest: kernel \$(uname -r), lsm=\$(cat /sys/kernel/security/lsm)"
cd /tmp
BULWARK_ENFORCER_WANT=bpf-lsm /enforcer.test -test.v -test.count=${VMTEST_COUNT:-1} -test.timeout=12m -test.run '$RUN'
rc=\$?
if [ -n '$SENSOR_RUN' ]; then
  /sensor.test -test.v -test.count=1 -test.timeout=5m -test.run '$SENSOR_RUN'
  src=\$?
  echo "BULWARK-VMTEST-SENSOR-EXIT=\$src"
  [ \$rc -ne 0 ] || rc=\$src
fi
echo "BULWARK-VMTEST-EXIT=\$rc"
poweroff -f
EOF
chmod +x "$root/init" "$root/stage2"
(cd "$root" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1 >"$work/initramfs.cpio.gz")

echo "vmtest: booting $(basename "$kernel") (qemu TCG)"
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 2048 -smp "${VMTEST_SMP:-1}" -no-reboot -nographic \
  -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
  -append "console=ttyS0 lsm=lockdown,capability,landlock,yama,apparmor,bpf panic=-1 softlockup_panic=1 ${VMTEST_APPEND:-quiet}" \
  </dev/null | tee "$work/serial.log"
qemu=${PIPESTATUS[0]}
set -e
rc=$(grep -ao 'BULWARK-VMTEST-EXIT=[0-9]*' "$work/serial.log" | tail -1 | cut -d= -f2 || true)
if [ -z "$rc" ]; then
  echo "vmtest: no result from the VM (qemu exit $qemu; timeout ${TIMEOUT}s)" >&2
  exit 1
fi
src=$(grep -ao 'BULWARK-VMTEST-SENSOR-EXIT=[0-9]*' "$work/serial.log" | tail -1 | cut -d= -f2 || true)
if [ "$rc" -ne 0 ]; then
  echo "vmtest: tests failed in the VM (exit $rc; sensor tests: ${src:-not run})" >&2
  exit "$rc"
fi
echo "vmtest: enforcer tests passed in the VM through BPF LSM${src:+; sensor tests passed}"
