#!/bin/sh
# make check-deb: the package from make deb installed by dpkg into a fresh
# root of its own (an empty dpkg database: nothing on this machine changes),
# then its programs run from there: flare-run finds the packaged library,
# the daemons validate the packaged example config, the units are in place.
set -e
build=$(cd "$1" && pwd)
deb=$(ls "$build"/deb/flare_*.deb | tail -1)
root=$(mktemp -d /tmp/flare-deb-XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
passed=0; failed=0
check() { if eval "$2"; then echo "ok   $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi; }
check "dpkg installs the package" \
	"dpkg --root='$root' --force-depends --force-script-chrootless -i '$deb' >/dev/null 2>&1"
check "dpkg lists its files" "dpkg --root='$root' -L flare | grep -q /usr/lib/flare/libflare.so"
check "the daemons accept the packaged example config" \
	"'$root/usr/bin/flare-agent' -c '$root/usr/share/flare/example.conf' --check >/dev/null 2>&1"
check "flare-run preloads the packaged library" \
	"'$root/usr/bin/flare-run' -- /bin/sh -c 'echo \$LD_PRELOAD' | grep -q '^$root/usr/bin/../lib/flare/libflare.so$'"
check "the units run the packaged binaries" \
	"grep -q 'ExecStart=/usr/bin/flare-agent -c /etc/flare/flare.conf -f' '$root/usr/lib/systemd/system/flare-agent.service'"
check "the man pages are there" "[ -s '$root/usr/share/man/man5/flare.conf.5.gz' ]"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
