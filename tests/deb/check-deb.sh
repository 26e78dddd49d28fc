#!/bin/sh
# make check-deb: the package from make deb as an operator gets it.
#  1. lintian, and what the .deb holds (conffile, multiarch library, demo
#     programs out of /usr/bin, a maintainer);
#  2. installed by dpkg into a Debian root of its own (debootstrap, kept in
#     FLARE_DEB_CACHE): its maintainer scripts run there, not on this
#     machine (the flare user, the key, the units enabled);
#  3. that root booted under its own systemd (systemd-nspawn, a private
#     network): the units start, a client goes through a replica's death,
#     a reload takes a good config and refuses a bad one while clients still
#     start (tests/deb/boot-check.sh, run inside at boot);
#  4. purged: what postinst made goes.
set -e
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
deb=$(ls "$build"/deb/flare_*.deb | sort -V | tail -1)
cache=${FLARE_DEB_CACHE:-/var/cache/flare-check-deb}
mirror=${FLARE_DEB_MIRROR:-http://deb.debian.org/debian}
base="$cache/bookworm-minbase.tar"
work=$(mktemp -d /tmp/flare-deb-XXXXXX)
root="$work/root"
trap 'rm -rf "$work"' EXIT INT TERM
passed=0; failed=0
check() {
	if eval "$2"; then echo "ok   $1"; passed=$((passed + 1))
	else echo "FAIL $1"; failed=$((failed + 1)); fi
}
in_root() { chroot "$root" /bin/sh -c "$1"; }

# 1. the .deb itself
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/files"
dpkg-deb -e "$deb" "$work/control"
lintian --allow-root --fail-on error "$deb" >"$work/lintian" 2>&1 && lint=0 || lint=$?
check "lintian finds no error" "[ $lint -eq 0 ]"
sed 's/^/     /' "$work/lintian"
check "/etc/flare/flare.conf is a conffile" "grep -qx /etc/flare/flare.conf '$work/control/conffiles'"
check "the library is in the multiarch path" \
	"grep -qx '/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/flare/libflare.so' '$work/files'"
check "the demo programs are out of /usr/bin" \
	"grep -qx /usr/libexec/flare/rr-client '$work/files' && ! grep -q '^/usr/bin/rr-' '$work/files'"
check "the maintainer is not on localhost" \
	"! grep -q '^Maintainer:.*@localhost' '$work/control/control'"

# 2. a Debian root with what the package depends on, installed offline
if [ ! -s "$base" ]; then
	mkdir -p "$cache"
	debootstrap --variant=minbase \
		--include=systemd,systemd-sysv,dbus,adduser,procps,libconfig9,libevent-2.1-7,libsodium23 \
		bookworm "$work/boot" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -5 "$work/debootstrap.log"; echo "check-deb: debootstrap failed"; exit 1; }
	tar -C "$work/boot" -cf "$base.tmp.$$" . && mv "$base.tmp.$$" "$base"
	rm -rf "$work/boot"
fi
mkdir "$root" && tar -C "$root" -xf "$base"
cp "$deb" "$root/tmp/flare.deb"
check "dpkg installs the package, its scripts run in the root" \
	"in_root 'dpkg -i /tmp/flare.deb' >'$work/install.log' 2>&1 || { cat '$work/install.log'; false; }"
check "postinst made the flare system user" "in_root 'getent passwd flare' | grep -q ':/nonexistent:'"
check "postinst made the key, root:flare 0640" \
	"[ \"\$(in_root 'stat -c \"%U:%G %a %s\" /etc/flare/flare.key')\" = 'root:flare 640 32' ]"
check "the units are enabled" \
	"for u in flare-agent flare-manager flare-monitor; do [ -L '$root'/etc/systemd/system/multi-user.target.wants/\$u.service ] || exit 1; done"
check "the conffile is valid as installed" "in_root 'flare-agent -c /etc/flare/flare.conf --check' >/dev/null"
check "flare-run preloads the packaged library" \
	"in_root 'flare-run -- /bin/sh -c \"echo \\\$LD_PRELOAD\"' 2>&1 | grep -qx '/usr/\(bin/../\)\?lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/flare/libflare.so'"
check "the man pages are there" "[ -s '$root/usr/share/man/man5/flare.conf.5.gz' ]"

# 3. booted under the root's own systemd, where this machine can
inside=var/tmp/flare-boot-check # the boot check's results, inside the root
install -m 755 "$here/boot-check.sh" "$root/usr/local/sbin/flare-boot-check"
sed "s|@DIR@|/$inside|" "$here/flare-boot-check.service" \
	>"$root/etc/systemd/system/flare-boot-check.service"
ln -s /etc/systemd/system/flare-boot-check.service \
	"$root/etc/systemd/system/multi-user.target.wants/flare-boot-check.service"
# --keep-unit --register=no: no machined or system bus needed on this side
timeout -k 5 150 systemd-nspawn -q -D "$root" --boot --private-network --register=no \
	--keep-unit --console=passive </dev/null >"$work/boot.log" 2>&1 || true
if [ -s "$root/$inside/out" ]; then
	sed 's/^/     /' "$root/$inside/out" | grep -v '^     \(ok\|FAIL\) '
	bp=$(grep -c '^ok ' "$root/$inside/out" || true)
	bf=$(grep -c '^FAIL ' "$root/$inside/out" || true)
	grep -E '^(ok|FAIL) ' "$root/$inside/out"
	passed=$((passed + bp)); failed=$((failed + bf))
	check "the boot check ran to its end" "grep -q '^boot-check done' '$root/$inside/out'"
elif grep -q "Reached target.*Multi-User\|Reached target.*multi-user" "$work/boot.log"; then
	tail -20 "$work/boot.log"
	check "the booted root ran the boot check" false
else
	# no systemd-nspawn boot on this machine (no namespaces, no cgroups):
	# not counted, and said
	echo "skip the boot under systemd: systemd-nspawn could not boot the root here:"
	tail -5 "$work/boot.log" | sed 's/^/     /'
fi

# 4. purge
check "purge removes the key and the conffile" \
	"in_root 'dpkg --purge flare' >/dev/null 2>&1 && [ ! -e '$root/etc/flare/flare.key' ] && [ ! -e '$root/etc/flare/flare.conf' ]"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
