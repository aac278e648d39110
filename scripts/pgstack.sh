#!/usr/bin/env bash
# pgstack.sh - throwaway PostgreSQL + PgBouncer on 127.0.0.1 for poolsafe's tests; see scripts/README.md.
# usage: scripts/pgstack.sh install|up|env|status|check|down
#        scripts/pgstack.sh kill-bouncer|start-bouncer|restart-pg fast|immediate|stop-replica|start-replica|replica-delay MS   (faults)
set -euo pipefail
umask 077
usage() { sed -n '3,4s/^# \{0,1\}//p' "$0"; }
die() { echo "pgstack.sh: $*" >&2; exit 1; }

PG_PORT=${POOLSAFE_PG_PORT:-15432}
BOUNCER_PORT=${POOLSAFE_BOUNCER_PORT:-16432}
REPLICA_PORT=${POOLSAFE_REPLICA_PORT:-$((PG_PORT + 1))} # a streaming replica of PG_PORT's server
PASSWORD=${POOLSAFE_DB_PASSWORD:-poolsafe-secret}
DIR=${POOLSAFE_STACK_DIR:-${TMPDIR:-/tmp}/poolsafe-stack-$PG_PORT}
TIMEOUT=60 # seconds to wait for a server
[[ $PG_PORT =~ ^[0-9]+$ && $BOUNCER_PORT =~ ^[0-9]+$ && $REPLICA_PORT =~ ^[0-9]+$ &&
	$(printf '%s\n' "$PG_PORT" "$BOUNCER_PORT" "$REPLICA_PORT" | sort -u | wc -l) == 3 ]] ||
	die "POOLSAFE_PG_PORT, POOLSAFE_BOUNCER_PORT and POOLSAFE_REPLICA_PORT must be three different port numbers"
# The password goes into the URLs and userlist.txt as is.
[[ $PASSWORD =~ ^[A-Za-z0-9._~-]+$ ]] || die "POOLSAFE_DB_PASSWORD must be URL-safe: letters, digits, . _ ~ - only"
DIR=$(realpath -m "$DIR")
# The path goes unquoted into pgbouncer.ini, and unix socket paths are short.
[[ $DIR =~ ^/[A-Za-z0-9._/-]+$ && ${#DIR} -lt 80 ]] || die "POOLSAFE_STACK_DIR must be a short plain path: '$DIR'"
# The caller's libpq settings (PGHOST, PGSSLMODE, ...) must not redirect our psql.
for v in $(compgen -e); do [[ $v != PG* ]] || unset "$v"; done

find_bins() {
	BINDIR=${POOLSAFE_PG_BINDIR:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
	PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
}
find_bins
# initdb, postgres and pgbouncer refuse to run as root: as root, they run as postgres.
AS=()
((EUID != 0)) || AS=(runuser -u "${POOLSAFE_STACK_USER:-postgres}" --)
as() { (cd / && "${AS[@]}" "$@"); } # that user may not be allowed into the caller's directory
write() { as tee "$@" >/dev/null; } # stdin to a file, as the servers' user
# The throwaway cluster's settings, given on every start (postmaster.opts keeps them too).
PG_OPTS="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR/run -c max_connections=200"
PG_OPTS+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
PG_OPTS+=" -c wal_writer_delay=10ms" # with synchronous_commit=off, the replica sees a commit once the WAL writer runs
# statement statistics, statements inside functions too: the benchmark report shows where jobs_next's time goes
PG_OPTS+=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
pgctl() { as "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/postgresql.log" -o "$PG_OPTS -c port=$PG_PORT" -w -t "$TIMEOUT" "$@" >/dev/null; }
replctl() { as "$BINDIR/pg_ctl" -D "$DIR/replica" -l "$DIR/replica.log" -o "$PG_OPTS -c port=$REPLICA_PORT" -w -t "$TIMEOUT" "$@" >/dev/null; }
sql() { # port database statement
	PGPASSWORD=$PASSWORD PGCONNECT_TIMEOUT=3 "$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$1" -U poolsafe -d "$2" -c "$3"
}
ok() { [[ $(sql "$1" "$2" 'SELECT 1' 2>/dev/null) == 1 ]]; } # port database
alive() { [[ $1 =~ ^[0-9]+$ && $(ps -o stat=,comm= -p "$1") =~ ^[^Z\ ]+\ +$2$ ]]; } # pid name; zombies are dead
gone() { ! alive "$1" pgbouncer; }
bouncer_pid() { local p; p=$(cat "$DIR/pgbouncer.pid" 2>/dev/null) && alive "$p" pgbouncer && echo "$p"; }
bouncer_ok() { bouncer_pid >/dev/null && ok "$BOUNCER_PORT" poolsafe_tx && ok "$BOUNCER_PORT" poolsafe_session; }
fail() { tail -n 15 "$DIR"/*.log >&2 || true; die "$*"; }
wait_for() { # what command...: retry the command for up to TIMEOUT seconds
	local i
	for ((i = 0; i < TIMEOUT * 5; i++)); do "${@:2}" && return 0; sleep 0.2; done
	fail "timed out after ${TIMEOUT}s waiting for $1"
}
# pgstack.sh before its rewrite ran a watchdog that restarted PgBouncer: stop a leftover one.
stop_old_watchdog() {
	local p
	p=$(cat "$DIR/watchdog.pid" 2>/dev/null) && alive "$p" bash && kill "$p"
	rm -f "$DIR/watchdog.pid"
}

cmd_install() { # apt-get install what is missing (as root)
	local pkgs=() apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y)
	[[ -x $BINDIR/initdb ]] || pkgs+=(postgresql)
	[[ -x $PGBOUNCER ]] || pkgs+=(pgbouncer)
	command -v ps >/dev/null || pkgs+=(procps)
	((${#pkgs[@]})) || return 0
	((EUID == 0)) || die "missing ${pkgs[*]}: run 'pgstack.sh install' as root, or: sudo apt-get install ${pkgs[*]}"
	# apt-get update only if installing from the current package lists fails.
	"${apt[@]}" install "${pkgs[@]}" >&2 || { "${apt[@]}" update >&2 && "${apt[@]}" install "${pkgs[@]}" >&2; } ||
		die "apt-get install ${pkgs[*]} failed"
	find_bins
}

cmd_up() { # create/start both, wait until they accept connections, print the exports
	cmd_install
	[[ -e $DIR/.poolsafe-stack || ! -e $DIR || -z $(ls -A "$DIR") ]] ||
		die "$DIR exists but was not created by pgstack.sh: set POOLSAFE_STACK_DIR"
	as mkdir -p "$DIR/run" || die "cannot create $DIR as the servers' user: set POOLSAFE_STACK_DIR (under /tmp)"
	as touch "$DIR/.poolsafe-stack"
	stop_old_watchdog
	if [[ ! -f $DIR/data/PG_VERSION ]]; then
		rm -rf "$DIR/data" # an interrupted initdb
		echo "$PASSWORD" | write "$DIR/pwfile"
		as "$BINDIR/initdb" -D "$DIR/data" -U poolsafe --pwfile="$DIR/pwfile" -A scram-sha-256 -E UTF8 \
			--locale=C --no-sync >"$DIR/initdb.log" 2>&1 || fail "initdb failed"
		rm -f "$DIR/pwfile"
	fi
	pgctl status || pgctl start || fail "PostgreSQL did not start"
	wait_for "PostgreSQL on 127.0.0.1:$PG_PORT" ok "$PG_PORT" postgres
	[[ $(sql "$PG_PORT" postgres "SELECT 1 FROM pg_database WHERE datname = 'poolsafe'") == 1 ]] ||
		sql "$PG_PORT" postgres 'CREATE DATABASE poolsafe'
	if [[ ! -f $DIR/replica/standby.signal ]]; then
		as rm -rf "$DIR/replica" # an interrupted base backup
		as env PGPASSWORD="$PASSWORD" "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U poolsafe \
			-D "$DIR/replica" -R -X stream -c fast >"$DIR/basebackup.log" 2>&1 || fail "pg_basebackup failed"
	fi
	cmd_start-replica

	echo "\"poolsafe\" \"$PASSWORD\"" | write "$DIR/userlist.txt"
	# For PgBouncer 1.18 (Debian 12), which tracks no prepared statements. 1.22+ does by default:
	# there, add max_prepared_statements = 0 (1.18 refuses that line).
	write "$DIR/pgbouncer.ini" <<-EOF
		[databases]
		poolsafe_tx = host=127.0.0.1 port=$PG_PORT dbname=poolsafe pool_mode=transaction pool_size=2
		poolsafe_session = host=127.0.0.1 port=$PG_PORT dbname=poolsafe pool_mode=session pool_size=60
		poolsafe_replica_tx = host=127.0.0.1 port=$REPLICA_PORT dbname=poolsafe pool_mode=transaction pool_size=2
		[pgbouncer]
		listen_addr = 127.0.0.1
		listen_port = $BOUNCER_PORT
		unix_socket_dir = $DIR/run
		logfile = $DIR/pgbouncer.log
		pidfile = $DIR/pgbouncer.pid
		auth_type = scram-sha-256
		auth_file = $DIR/userlist.txt
		admin_users = poolsafe
		stats_users = poolsafe
		max_client_conn = 500
		ignore_startup_parameters = extra_float_digits
		client_tls_sslmode = disable
		server_tls_sslmode = disable
		server_login_retry = 1
	EOF
	if bouncer_pid >"$DIR/pgbouncer.expected-pid"; then # up adopts a running PgBouncer, with this configuration
		sql "$BOUNCER_PORT" pgbouncer RELOAD >/dev/null || fail "PgBouncer did not reload $DIR/pgbouncer.ini"
	fi
	cmd_start-bouncer
	stat -c %s "$DIR/pgbouncer.log" >"$DIR/pgbouncer.log-offset" # check reads the log from here
	cmd_env
}

cmd_env() { # eval "$(scripts/pgstack.sh env)"
	local base="postgres://poolsafe:$PASSWORD@127.0.0.1"
	echo "export POOLSAFE_TEST_DIRECT_URL='$base:$PG_PORT/poolsafe?sslmode=disable'"
	echo "export POOLSAFE_TEST_SESSION_URL='$base:$BOUNCER_PORT/poolsafe_session?sslmode=disable'"
	echo "export POOLSAFE_TEST_TX_URL='$base:$BOUNCER_PORT/poolsafe_tx?sslmode=disable'"
	echo "export POOLSAFE_TEST_REPLICA_DIRECT_URL='$base:$REPLICA_PORT/poolsafe?sslmode=disable'"
	echo "export POOLSAFE_TEST_REPLICA_TX_URL='$base:$BOUNCER_PORT/poolsafe_replica_tx?sslmode=disable'"
}

cmd_status() { # exit 0 only if both accept connections
	local rc=0
	if ok "$PG_PORT" poolsafe; then echo "postgresql: running on 127.0.0.1:$PG_PORT"; else echo "postgresql: NOT running"; rc=1; fi
	if ok "$REPLICA_PORT" poolsafe; then echo "replica:    running on 127.0.0.1:$REPLICA_PORT"; else echo "replica:    NOT running"; rc=1; fi
	if bouncer_ok; then echo "pgbouncer:  running on 127.0.0.1:$BOUNCER_PORT"; else echo "pgbouncer:  NOT running"; rc=1; fi
	echo "state dir:  $DIR"
	return "$rc"
}

cmd_check() { # exit 0 only if PgBouncer has run, without a FATAL, since up/start-bouncer
	local want offset fatal pid
	want=$(cat "$DIR/pgbouncer.expected-pid" 2>/dev/null) || die "check: nothing recorded in $DIR: run 'pgstack.sh up'"
	offset=$(cat "$DIR/pgbouncer.log-offset" 2>/dev/null || echo 0)
	fatal=$(tail -c "+$((offset + 1))" "$DIR/pgbouncer.log" 2>/dev/null | grep -E '\] FATAL |bad client state' || true)
	[[ -z $fatal ]] || die "check FAILED: PgBouncer crashed since up; $DIR/pgbouncer.log says:"$'\n'"$fatal"
	pid=$(bouncer_pid) || die "check FAILED: PgBouncer is not running: it crashed or was killed (nothing restarts it)"
	[[ $pid == "$want" ]] ||
		die "check FAILED: PgBouncer runs as pid $pid, not as pid $want started by up/start-bouncer: something restarted it"
	[[ $(sql "$BOUNCER_PORT" pgbouncer 'SHOW VERSION' 2>/dev/null) == PgBouncer* ]] ||
		die "check FAILED: PgBouncer (pid $pid) does not accept connections on 127.0.0.1:$BOUNCER_PORT"
	echo "pgstack.sh: check: PgBouncer (pid $pid) has run since up/start-bouncer without crashing" >&2
}

cmd_kill-bouncer() { # SIGKILL PgBouncer and wait until it is gone; nothing restarts it
	local pid
	pid=$(bouncer_pid) || die "kill-bouncer: PgBouncer is not running"
	kill -KILL "$pid" && wait_for "PgBouncer (pid $pid) to exit" gone "$pid"
}

cmd_start-bouncer() { # wait until PgBouncer accepts connections, starting it if it is not running
	[[ -f $DIR/pgbouncer.ini ]] || die "start-bouncer: no $DIR/pgbouncer.ini: run 'pgstack.sh up' first"
	if ! bouncer_pid >/dev/null; then
		rm -f "$DIR/pgbouncer.pid" # left behind by a SIGKILL
		as "$PGBOUNCER" -d -q "$DIR/pgbouncer.ini" || fail "PgBouncer did not start"
		wait_for "PgBouncer on 127.0.0.1:$BOUNCER_PORT" bouncer_ok
		bouncer_pid >"$DIR/pgbouncer.expected-pid" # check compares with it (an already running one is not recorded)
	fi
	wait_for "PgBouncer on 127.0.0.1:$BOUNCER_PORT" bouncer_ok
}

cmd_restart-pg() { # pg_ctl restart -m fast|immediate (immediate: a crash), wait until ready
	[[ $1 == fast || $1 == immediate ]] || die "usage: pgstack.sh restart-pg fast|immediate"
	pgctl -m "$1" restart || fail "pg_ctl restart -m $1 failed"
	wait_for "PostgreSQL on 127.0.0.1:$PG_PORT" ok "$PG_PORT" poolsafe
}

cmd_stop-replica() { # stop the replica (fast), as a replica outage
	replctl status || return 0
	replctl -m fast stop || fail "stopping the replica failed"
}

cmd_start-replica() { # start the replica and wait until it accepts reads
	replctl status || replctl start || fail "the replica did not start"
	wait_for "the replica on 127.0.0.1:$REPLICA_PORT" ok "$REPLICA_PORT" poolsafe
}

cmd_replica-delay() { # MS: the replica applies WAL MS milliseconds late (recovery_min_apply_delay; 0: at once)
	[[ $1 =~ ^[0-9]+$ ]] || die "usage: pgstack.sh replica-delay MILLISECONDS"
	sql "$REPLICA_PORT" poolsafe "ALTER SYSTEM SET recovery_min_apply_delay = '$1ms'" &&
		sql "$REPLICA_PORT" poolsafe 'SELECT pg_reload_conf()' >/dev/null || fail "replica-delay failed"
}

cmd_down() { # stop all three, delete the state directory
	[[ -e $DIR ]] || return 0
	[[ -e $DIR/.poolsafe-stack ]] || die "refusing to delete $DIR: it was not created by pgstack.sh"
	stop_old_watchdog
	local pid
	if pid=$(bouncer_pid); then kill -TERM "$pid" && wait_for "PgBouncer (pid $pid) to exit" gone "$pid"; fi
	if [[ -x $BINDIR/pg_ctl && -f $DIR/replica/PG_VERSION ]] && replctl status; then
		replctl -m fast stop || replctl -m immediate stop
	fi
	if [[ -x $BINDIR/pg_ctl && -f $DIR/data/PG_VERSION ]] && pgctl status; then
		pgctl -m fast stop || pgctl -m immediate stop
	fi
	rm -rf -- "$DIR"
}

case "${1-}:$#" in
install:1 | up:1 | env:1 | status:1 | check:1 | down:1 | kill-bouncer:1 | start-bouncer:1 | restart-pg:2 | \
	stop-replica:1 | start-replica:1 | replica-delay:2)
	"cmd_$1" "${@:2}" ;;
help:1 | -h:1 | --help:1) usage ;;
*) usage >&2; exit 2 ;;
esac
