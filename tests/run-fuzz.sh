#!/bin/sh
# Runs every fuzz target for SECONDS each, from a corpus kept under the
# build folder (seeded from tests/fuzz/corpus when present).
dir=$1; seconds=$2; shift 2
export LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp:print_suppressions=0"
failed=0; passed=0
for t in "$@"; do
	corpus="$dir/corpus/$t"
	mkdir -p "$corpus"
	seed=tests/fuzz/corpus/${t%_scalar} # a scalar build shares its target's seeds
	[ -d "$seed" ] && cp -n "$seed"/* "$corpus/" 2>/dev/null
	if "$dir/$t" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=1024 \
		-artifact_prefix="$dir/crash-$t-" "$corpus" >"$dir/$t.log" 2>&1; then
		runs=$(grep -o 'Done [0-9]* runs' "$dir/$t.log" | tail -1)
		echo "fuzz $t: ok (${runs:-no summary}) in ${seconds}s"
		passed=$((passed + 1))
	else
		echo "fuzz $t: FAILED, see $dir/$t.log"; tail -30 "$dir/$t.log"
		failed=$((failed + 1))
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
