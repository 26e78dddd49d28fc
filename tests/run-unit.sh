#!/bin/sh
# Runs each cmocka binary; fails if any fails. Each prints cmocka's summary.
dir=$1; shift
failed=0
for t in "$@"; do
	"$dir/$t" || { echo "FAILED: $t"; failed=$((failed + 1)); }
done
[ "$failed" -eq 0 ] || { echo "$failed unit test program(s) failed"; exit 1; }
