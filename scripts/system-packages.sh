#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks run as real third-party servers:
#   docker-registry  CNCF distribution 2.8, the OCI registry models are pushed to and pulled from
#   nginx-light      a fast static server (sendfile), the fast-link hub of the benchmarks
#   softhsm2         a software PKCS#11 token: `phaita models sign --pkcs11-uri` is tested against it
# Never fails the build: on a machine where they cannot be installed (no apt, not root, no sudo)
# it says why, and the tests that need them skip with that reason.
set -u
want=()
command -v docker-registry >/dev/null 2>&1 || want+=(docker-registry)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || want+=(nginx-light)
command -v softhsm2-util >/dev/null 2>&1 || want+=(softhsm2)
[ ${#want[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: no apt-get here; install ${want[*]} by hand (their tests will skip)" >&2
    exit 0
fi
run=()
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then run=(sudo -n); else
        echo "system-packages: not root and no password-less sudo; ${want[*]} not installed (their tests will skip)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${run[@]}" apt-get update -qq >/dev/null 2>&1 || true
if ! "${run[@]}" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1; then
    echo "system-packages: apt-get install ${want[*]} failed (their tests will skip)" >&2
fi
# The packages start their own services on install; the tests start their own servers on free ports.
for svc in docker-registry nginx; do
    "${run[@]}" service "$svc" stop >/dev/null 2>&1 || true
done
exit 0
