#!/bin/sh
# Installs the Debian packages flare needs that are missing; silent when all are present.
# usage: scripts/deps.sh GROUP...   (build | fuzz | test | demo | bench | hosts | deb)
set -e

pkgs_for() {
	case "$1" in
	build) echo "gcc libc6-dev make pkg-config libconfig-dev uthash-dev libcmocka-dev libevent-dev libsodium-dev libssl-dev" ;;
	fuzz) echo "clang libclang-rt-14-dev" ;;
	test) echo "python3 iproute2 procps util-linux curl wget redis-server redis-tools apache2-utils nginx-light memcached libmemcached-tools nodejs postgresql postgresql-client python3-prometheus-client groff-base openssl mariadb-server mariadb-client python3-pymysql openssh-server openssh-client patchelf libssl-dev liburing-dev strace" ;;
	demo) echo "gnuplot-nox python3 procps" ;;
	bench) echo "python3 procps util-linux haproxy strace valgrind" ;;
	hosts) echo "python3 iproute2 nftables procps" ;;
	deb) echo "debhelper dpkg-dev lintian debootstrap systemd-container" ;;
	*) echo "deps.sh: unknown group '$1'" >&2; exit 2 ;;
	esac
}

missing=""
for group in "$@"; do
	for p in $(pkgs_for "$group"); do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed"; then
			case " $missing " in *" $p "*) ;; *) missing="$missing $p" ;; esac
		fi
	done
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# the servers the tests run (nginx, memcached, PostgreSQL) are started by
# the tests on their own ports: keep their packages from starting system
# services (Debian's policy-rc.d), unless the machine has its own policy
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
	own_policy=1
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 755 "$policy"
fi
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
[ -n "$own_policy" ] && $SUDO rm -f "$policy"
exit ${rc:-0}
