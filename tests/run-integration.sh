#!/bin/sh
# Runs every tests/integration/test_*.py with the build folder as argument.
# Each starts real daemons and processes, cleans up after itself, and ends
# with "N passed, N failed"; this script sums them into the same line.
build=$(cd "$1" && pwd)
passed=0; failed=0
for t in tests/integration/test_*.py; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .py)
	echo "== $name"
	out="$build/it-$name.out"
	timeout -k 10 600 python3 -u "$t" "$build" 2>&1 | tee "$out"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
	if [ -z "$line" ]; then
		echo "$name: no summary (crashed or timed out)"; failed=$((failed + 1)); continue
	fi
	passed=$((passed + ${line%% passed*}))
	f=${line#*passed, }; failed=$((failed + ${f%% failed}))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
