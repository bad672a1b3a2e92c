# Shared by scripts/test and scripts/demo: run as root, install Debian packages quietly.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=no
# apt_install PACKAGE...: installs without letting Debian start system services, unless
# INTAKE_ALLOW_SERVICE_START=yes (a policy-rc.d that exits 101 is in place meanwhile).
apt_install() {
    if [ "$apt_updated" = no ]; then
        as_root apt-get update -qq
        apt_updated=yes
    fi
    local policy=/usr/sbin/policy-rc.d created_policy=no
    if [ ! -e "$policy" ] && [ "${INTAKE_ALLOW_SERVICE_START:-no}" = no ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        created_policy=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
    if [ "$created_policy" = yes ]; then as_root rm -f "$policy"; fi
}
