#!/bin/sh
# Runs every tests/integration/*.sh with the build folder as $1. Each script
# starts real daemons and processes, cleans up after itself (trap), and
# exits 0 on success. Prints the plain summary line CI reads.
build=$1
passed=0; failed=0; failures=""
for t in tests/integration/*.sh; do
	[ -e "$t" ] || continue
	name=$(basename "$t" .sh)
	start=$(date +%s)
	if timeout 600 sh "$t" "$build" >"$build/it-$name.log" 2>&1; then
		echo "integration $name: ok ($(( $(date +%s) - start ))s)"
		passed=$((passed + 1))
	else
		echo "integration $name: FAILED ($(( $(date +%s) - start ))s), last lines of $build/it-$name.log:"
		tail -25 "$build/it-$name.log" | sed 's/^/    /'
		failed=$((failed + 1)); failures="$failures $name"
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
