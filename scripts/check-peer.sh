#!/usr/bin/env bash
# Prints the peer summary written by internal/peer's TestPeerSuites and fails
# unless every suite ran on both drivers behind the transaction pooler with no
# failure outside internal/peer/expected_failures.txt.
set -euo pipefail
summary=${1:?usage: check-peer.sh SUMMARY_FILE}
want=(sqlx pgx-stdlib pq)
if [[ ! -s $summary ]]; then
	echo "peer: no summary at $summary: the peer suites did not run" >&2
	exit 1
fi
cat "$summary"
status=0
for s in "${want[@]}"; do
	for d in pgx pq; do
		line=$(grep -F "peer $s $d/transaction: " "$summary" || true)
		if [[ -z $line ]]; then
			echo "peer: suite $s on $d/transaction is missing" >&2
			status=1
		elif [[ $line != *" passed, 0 failed, "* ]]; then
			echo "peer: suite $s on $d/transaction has failures outside internal/peer/expected_failures.txt" >&2
			status=1
		fi
	done
done
exit $status
