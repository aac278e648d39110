#!/usr/bin/env bash
# Prints the conformance summary written by conformance.TestMatrix and fails
# unless all nine targets ran and none reported a failure.
set -euo pipefail
summary=${1:?usage: check-conformance.sh SUMMARY_FILE}
want=(pgx/direct pgx-simple_protocol/direct pq/direct
	pgx/session pgx-simple_protocol/session pq/session
	pgx/transaction pgx-simple_protocol/transaction pq/transaction)
if [[ ! -s $summary ]]; then
	echo "conformance: no summary at $summary: the matrix did not run" >&2
	exit 1
fi
cat "$summary"
status=0
for t in "${want[@]}"; do
	line=$(grep -F "conformance $t: " "$summary" || true)
	if [[ -z $line ]]; then
		echo "conformance: target $t is missing" >&2
		status=1
	elif [[ $line != *", 0 failed,"* ]]; then
		echo "conformance: target $t failed" >&2
		status=1
	fi
done
exit $status
