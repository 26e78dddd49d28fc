#!/bin/sh
# make demo: the whole stack on this machine. Three replicas of a
# request/response service on three emulated hosts (utilization from files),
# the control plane, and a client under flare-run; the replica serving the
# client is killed with SIGKILL half way, and the client does not notice.
# (The full FLARe experiment, with CPU budgets per host, is the next step.)
set -e
build=${1:-build}
build=$(cd "$build" && pwd)
dir=$(mktemp -d /tmp/flare-demo.XXXXXX)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mport=$(port); svc=$(port); p1=$(port); p2=$(port); p3=$(port)
cat >"$dir/flare.conf" <<CONF
manager = { addresses = [ "127.0.0.1:$mport" ]; report_interval_ms = 100; };
agent = { shm = "/flare-demo-$$"; };
hosts = (
  { name = "alpha"; utilization = "file:$dir/alpha.util"; monitor_socket = "@flare-demo-$$-alpha"; },
  { name = "beta";  utilization = "file:$dir/beta.util";  monitor_socket = "@flare-demo-$$-beta"; },
  { name = "gamma"; utilization = "file:$dir/gamma.util"; monitor_socket = "@flare-demo-$$-gamma"; }
);
services = (
  { name = "A"; address = "127.0.0.1:$svc";
    replicas = (
      { name = "A-1"; host = "alpha"; address = "127.0.0.1:$p1"; load = 0.3; },
      { name = "A-2"; host = "beta";  address = "127.0.0.1:$p2"; load = 0.3; },
      { name = "A-3"; host = "gamma"; address = "127.0.0.1:$p3"; load = 0.3; } ); }
);
CONF
echo 0.20 >"$dir/alpha.util"; echo 0.60 >"$dir/beta.util"; echo 0.40 >"$dir/gamma.util"
conf="$dir/flare.conf"
"$build/flare-manager" -c "$conf" -f 2>"$dir/manager.log" & pids="$pids $!"
for h in alpha beta gamma; do
	"$build/flare-monitor" -c "$conf" --host $h -f 2>"$dir/monitor-$h.log" & pids="$pids $!"
done
"$build/flare-agent" -c "$conf" -f 2>"$dir/agent.log" & pids="$pids $!"
i=1
for p in $p1 $p2 $p3; do
	"$build/flare-run" -c "$conf" -- "$build/rr-server" -l 127.0.0.1:$p --tag A-$i --cpu-us 200 \
		2>"$dir/server-$i.log" & eval "srv$i=$!"; pids="$pids $!"
	i=$((i + 1))
done
sleep 1
echo "== the control plane, before (utilization: alpha 0.20, beta 0.60, gamma 0.40)"
"$build/flarectl" -c "$conf" status
echo
echo "== a client under flare-run: 1000 requests at 200 Hz to the service address 127.0.0.1:$svc"
FLARE_LOG=info "$build/flare-run" -c "$conf" -- "$build/rr-client" -c 127.0.0.1:$svc -n 1000 -r 200 \
	--log "$dir/latency.log" >"$dir/client.out" 2>"$dir/client.err" &
client=$!
sleep 2.5
first=$(awk 'NR==1 {print $4}' "$dir/latency.log")
victim=$(eval echo \$srv${first#A-})
echo "== SIGKILL of $first (pid $victim), the replica serving the client"
kill -9 "$victim"
sleep 0.5
"$build/flarectl" -c "$conf" status | sed -n '/^SERVICE/,$p'
wait $client && rc=0 || rc=$?
echo
echo "== the client finished with exit status $rc"
cat "$dir/client.out"
grep libflare "$dir/client.err" || true
echo "per-request latencies: $dir/latency.log (ms since start, id, latency us, replica)"
exit $rc
