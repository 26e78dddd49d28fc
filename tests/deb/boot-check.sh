#!/bin/sh
# Runs inside the booted container (tests/deb/check-deb.sh): the package as
# a newcomer uses it, under the container's real systemd, with the conffile
# as installed. Writes "ok NAME" / "FAIL NAME" lines into DIR/out (DIR: its
# one argument, chosen by check-deb.sh inside the root), then powers off.
dir=$1
mkdir -p "$dir" || exit 1
exec >"$dir/out" 2>&1
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# bounded wait: up to $2 tenths of a second for command $1
waitfor() { n=0; while [ "$n" -lt "$2" ]; do eval "$1" && return 0; sleep 0.1; n=$((n + 1)); done; return 1; }
ex=/usr/libexec/flare

check "the three units are active after boot" \
	"waitfor 'systemctl is-active -q flare-agent flare-manager flare-monitor' 100"
for u in flare-agent flare-manager flare-monitor; do
	systemctl is-active -q "$u" || systemctl status --no-pager "$u" | tail -5
done
user_of() { stat -c %U "/proc/$(systemctl show -p MainPID --value "$1")"; }
check "the manager runs as the flare user" "[ \"\$(user_of flare-manager)\" = flare ]"
check "the agent dropped root for agent.user" "[ \"\$(user_of flare-agent)\" = flare ]"
check "the key file is root:flare 0640" \
	"[ \"\$(stat -c '%U:%G %a' /etc/flare/flare.key)\" = 'root:flare 640' ]"

# the example service: two replicas under flare-run (registered with the
# monitor), a client through the service address
flare-run -- $ex/rr-server -l 127.0.0.1:9101 --tag one >/dev/null 2>&1 &
s1=$!
flare-run -- $ex/rr-server -l 127.0.0.1:9102 --tag two >/dev/null 2>&1 &
s2=$!
check "flarectl table shows both replicas alive" \
	"waitfor 'flarectl table 2>/dev/null | grep -q \"example-1.*alive\" && flarectl table | grep -q \"example-2.*alive\"' 100"
flarectl table
check "a client through flare-run reaches the service" \
	"flare-run -- $ex/rr-client -c 127.0.0.1:9001 -n 20 | grep -q 'errors=0'"
kill -9 "$s1"
check "after a replica's death the client still gets every reply" \
	"flare-run -- $ex/rr-client -c 127.0.0.1:9001 -n 20 | grep -q 'errors=0'"

check "a drain outlives systemctl restart flare-manager" \
	"flarectl drain example-2 >/dev/null && systemctl restart flare-manager && waitfor 'flarectl status 2>/dev/null | grep -q \"example-2.*DRAINED\"' 50 && [ -s /var/lib/flare/manager-1.drains ]"
flarectl undrain example-2 >/dev/null
check "flarectl config shows the config in use" \
	"flarectl config | head -1 | grep -q '^# manager 1: /etc/flare/flare.conf as loaded at'"
check "systemctl reload flare-agent takes a good config" \
	"systemctl reload flare-agent || { journalctl -u flare-agent -n 8 --no-pager; false; }"
cp /etc/flare/flare.conf "$dir/flare.conf.good"
# an operator's edit: a third replica, then every daemon reloaded
sed -i 's|address = "127.0.0.1:9102"; }|&,\n      { name = "example-3"; host = "local"; address = "127.0.0.1:9103"; }|' \
	/etc/flare/flare.conf
check "an edit reaches the table after systemctl reload of the three" \
	"systemctl reload flare-manager flare-monitor flare-agent && waitfor 'flarectl table | grep -q example-3' 50"
sed -i 's/replay = "request-reply";/replay = "request-reply"; retries = 3;/' /etc/flare/flare.conf
check "a reload with a typo in the config fails" "! systemctl reload flare-agent 2>/dev/null"
check "and the agent keeps running" "systemctl is-active -q flare-agent"
warn=$(flare-run -- $ex/rr-client -c 127.0.0.1:9001 -n 20 2>&1 >"$dir/client.out")
check "a client still starts, with flare, after one warning naming the line" \
	"grep -q 'errors=0' \"\$dir/client.out\" && echo \"\$warn\" | grep -q 'flare.conf:[0-9]*: unknown key' && [ \"\$(echo \"\$warn\" | wc -l)\" -eq 1 ]"
echo "$warn"
cp "$dir/flare.conf.good" /etc/flare/flare.conf
check "systemd-analyze verify accepts every unit" \
	"systemd-analyze verify --man=no /lib/systemd/system/flare-agent.service /lib/systemd/system/flare-manager.service /lib/systemd/system/flare-monitor.service /lib/systemd/system/flare-manager@1.service /lib/systemd/system/flare-monitor@local.service"
kill "$s2" 2>/dev/null
echo "boot-check done"
