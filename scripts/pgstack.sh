#!/usr/bin/env bash
# pgstack.sh - throwaway local PostgreSQL + PgBouncer stack for poolsafe tests.
#
# Usage: scripts/pgstack.sh up|down|env|status|install
#
# Everything (data dir, sockets, configs, logs, pidfiles) lives in one state
# directory under the system temp dir, never inside the checkout. Both servers
# listen on 127.0.0.1 only; unix sockets are placed in the state dir. System
# services (a Debian cluster on 5432, the packaged pgbouncer on 6432) are
# neither used nor touched.
#
# Run `scripts/pgstack.sh help` for the list of environment variables.

set -euo pipefail

PROG=${0##*/}

usage() {
	cat <<EOF
Usage: $PROG up|down|env|status|install

Manage a THROWAWAY local PostgreSQL cluster plus PgBouncer (127.0.0.1 only).

Commands:
  install Install PostgreSQL and PgBouncer with apt-get if missing (as root).
  up      Create (if needed) and start PostgreSQL and PgBouncer, wait until both
          accept connections, then print the env exports on stdout.
          Idempotent: if the stack is already healthy it only prints the exports.
  down    Stop what 'up' started and delete the state directory.
  env     Print the shell exports (use: eval "\$($PROG env)").
  status  Report whether each component is running; exit 0 only if both are.

PgBouncer databases (both point at PostgreSQL database 'poolsafe'):
  poolsafe_tx       pool_mode=transaction, pool_size=2 (tiny on purpose)
  poolsafe_session  pool_mode=session,     pool_size=60
  pgbouncer         admin console (user poolsafe), e.g. SHOW POOLS;

Environment:
  POOLSAFE_PG_PORT        PostgreSQL port            (default 15432)
  POOLSAFE_BOUNCER_PORT   PgBouncer port             (default 16432)
  POOLSAFE_DB_PASSWORD    password of role poolsafe  (default poolsafe-secret)
  POOLSAFE_STACK_DIR      state directory  (default \${TMPDIR:-/tmp}/poolsafe-stack-<pg port>)
  POOLSAFE_STACK_TIMEOUT  seconds to wait for readiness (default 60)
  POOLSAFE_PG_BINDIR      PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
  POOLSAFE_PGBOUNCER      pgbouncer binary   (default: from PATH or /usr/sbin/pgbouncer)
  POOLSAFE_STACK_USER     OS user running the servers when invoked as root (default postgres)

When run as root, missing packages (postgresql, pgbouncer) are installed with
apt-get and the servers run as the 'postgres' user (initdb, pg_ctl and
pgbouncer all refuse to run as root). Otherwise they run as the invoking user.
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

DB_USER=poolsafe
DB_NAME=poolsafe
TX_ALIAS=poolsafe_tx
SESSION_ALIAS=poolsafe_session
TX_POOL_SIZE=2
SESSION_POOL_SIZE=60
HOST=127.0.0.1

PG_PORT=${POOLSAFE_PG_PORT:-15432}
BOUNCER_PORT=${POOLSAFE_BOUNCER_PORT:-16432}
DB_PASSWORD=${POOLSAFE_DB_PASSWORD-poolsafe-secret}
TIMEOUT=${POOLSAFE_STACK_TIMEOUT:-60}

validate_port() { # name value
	local name=$1 value=$2
	[[ $value =~ ^[0-9]+$ ]] || die "$name must be a number, got '$value'"
	((10#$value >= 1024 && 10#$value <= 65535)) ||
		die "$name must be between 1024 and 65535, got '$value'"
}

validate_config() {
	validate_port POOLSAFE_PG_PORT "$PG_PORT"
	validate_port POOLSAFE_BOUNCER_PORT "$BOUNCER_PORT"
	PG_PORT=$((10#$PG_PORT))
	BOUNCER_PORT=$((10#$BOUNCER_PORT))
	((PG_PORT != BOUNCER_PORT)) || die "POOLSAFE_PG_PORT and POOLSAFE_BOUNCER_PORT must differ"
	if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || ((10#$TIMEOUT == 0)); then
		die "POOLSAFE_STACK_TIMEOUT must be a positive number of seconds, got '$TIMEOUT'"
	fi
	TIMEOUT=$((10#$TIMEOUT))
	[[ -n $DB_PASSWORD ]] || die "POOLSAFE_DB_PASSWORD must not be empty"
	[[ $DB_PASSWORD != *$'\n'* && $DB_PASSWORD != *$'\r'* ]] ||
		die "POOLSAFE_DB_PASSWORD must not contain line breaks"

	local lo hi p
	if read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then
		for p in "$PG_PORT" "$BOUNCER_PORT"; do
			if ((p >= lo && p <= hi)); then
				log "warning: port $p is inside the ephemeral port range $lo-$hi; it may be taken by outgoing connections"
			fi
		done
	fi
}

setup_paths() {
	local tmp=${TMPDIR:-/tmp}
	STATE_DIR=${POOLSAFE_STACK_DIR:-${tmp%/}/poolsafe-stack-$PG_PORT}
	[[ $STATE_DIR == /* ]] || STATE_DIR=$PWD/$STATE_DIR
	STATE_DIR=${STATE_DIR%/}
	[[ -n $STATE_DIR && $STATE_DIR != / ]] || die "refusing to use / as state directory"
	# Paths end up unquoted in postgresql.conf / pgbouncer.ini: keep them simple.
	[[ $STATE_DIR =~ ^[A-Za-z0-9._/+@:-]+$ ]] ||
		die "state directory '$STATE_DIR' contains unsupported characters (set POOLSAFE_STACK_DIR to a plain path)"

	MARKER=$STATE_DIR/.poolsafe-stack
	STAMP=$STATE_DIR/stack.conf
	DATA_DIR=$STATE_DIR/data
	SOCK_DIR=$STATE_DIR/run
	PG_LOG=$STATE_DIR/postgresql.log
	INITDB_LOG=$STATE_DIR/initdb.log
	BOUNCER_INI=$STATE_DIR/pgbouncer.ini
	BOUNCER_USERLIST=$STATE_DIR/userlist.txt
	BOUNCER_LOG=$STATE_DIR/pgbouncer.log
	BOUNCER_PID=$STATE_DIR/pgbouncer.pid
	LOCK_FILE=$STATE_DIR.lock

	# Unix socket paths are limited to 107 bytes.
	local sock=$SOCK_DIR/.s.PGSQL.$PG_PORT.lock
	((${#sock} < 100)) || die "state directory path too long for unix sockets: $STATE_DIR (set POOLSAFE_STACK_DIR to something shorter)"
}

# The script talks to the servers itself; never let the caller's libpq
# environment (PGHOST, PGSERVICE, PGSSLMODE, ...) redirect those connections.
scrub_pg_env() {
	local v
	for v in $(compgen -e); do
		case $v in PG*) unset "$v" ;; esac
	done
}

# ---------------------------------------------------------------------------
# Binaries, packages, users
# ---------------------------------------------------------------------------

IS_ROOT=0
if [[ $EUID -eq 0 ]]; then IS_ROOT=1; fi
RUN_USER=

find_pg_bindir() {
	local want=${1-} d v
	if [[ -n ${POOLSAFE_PG_BINDIR-} ]]; then
		printf '%s\n' "$POOLSAFE_PG_BINDIR"
		return 0
	fi
	# An existing data directory must be served by its own major version.
	if [[ -n $want && -x /usr/lib/postgresql/$want/bin/initdb ]]; then
		printf '%s\n' "/usr/lib/postgresql/$want/bin"
		return 0
	fi
	if [[ -d /usr/lib/postgresql ]]; then
		# shellcheck disable=SC2012 # plain version directory names
		for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rV); do
			if [[ -x /usr/lib/postgresql/$v/bin/initdb ]]; then
				printf '%s\n' "/usr/lib/postgresql/$v/bin"
				return 0
			fi
		done
	fi
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null || true)
		if [[ -n $d && -x $d/initdb ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	fi
	if command -v initdb >/dev/null 2>&1; then
		d=$(command -v initdb)
		printf '%s\n' "${d%/*}"
		return 0
	fi
	return 1
}

find_pgbouncer() {
	if [[ -n ${POOLSAFE_PGBOUNCER-} ]]; then
		printf '%s\n' "$POOLSAFE_PGBOUNCER"
	elif command -v pgbouncer >/dev/null 2>&1; then
		command -v pgbouncer
	elif [[ -x /usr/sbin/pgbouncer ]]; then
		printf '%s\n' /usr/sbin/pgbouncer
	else
		return 1
	fi
}

# Locate binaries; install missing packages when root (only if $1 == install).
resolve_binaries() {
	local mode=${1-}
	local data_version=
	if [[ -r $DATA_DIR/PG_VERSION ]]; then
		data_version=$(<"$DATA_DIR/PG_VERSION")
	fi

	local missing=()
	PG_BINDIR=$(find_pg_bindir "$data_version" || true)
	local b
	if [[ -z $PG_BINDIR ]]; then
		missing+=(postgresql)
	else
		for b in initdb pg_ctl pg_isready psql; do
			if [[ ! -x $PG_BINDIR/$b ]]; then
				missing+=(postgresql)
				break
			fi
		done
	fi
	PGBOUNCER_BIN=$(find_pgbouncer || true)
	[[ -n $PGBOUNCER_BIN && -x $PGBOUNCER_BIN ]] || missing+=(pgbouncer)

	if ((${#missing[@]} > 0)); then
		if [[ $mode != install ]]; then
			die "missing: ${missing[*]} (run '$PROG up' as root to install, or: apt-get install -y ${missing[*]})"
		fi
		if ((!IS_ROOT)); then
			log "missing packages: ${missing[*]}"
			log "install them first, e.g.:"
			log "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]}"
			log "(or point POOLSAFE_PG_BINDIR / POOLSAFE_PGBOUNCER at existing binaries)"
			exit 1
		fi
		command -v apt-get >/dev/null 2>&1 ||
			die "missing packages (${missing[*]}) and apt-get is not available; install them manually"
		log "installing missing packages: ${missing[*]} (apt-get)"
		log "note: the packages may start system services on 5432/6432; this stack does not use or touch them"
		apt-get -o DPkg::Lock::Timeout=300 update >&2 ||
			die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "${missing[@]}" >&2 ||
			die "apt-get install ${missing[*]} failed"
		PG_BINDIR=$(find_pg_bindir "$data_version" || true)
		PGBOUNCER_BIN=$(find_pgbouncer || true)
		[[ -n $PG_BINDIR && -x $PG_BINDIR/initdb ]] || die "PostgreSQL binaries still not found after install"
		[[ -n $PGBOUNCER_BIN && -x $PGBOUNCER_BIN ]] || die "pgbouncer still not found after install"
	fi

	if [[ -n $data_version ]]; then
		local bin_version
		bin_version=$("$PG_BINDIR/pg_ctl" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)?.*/\1/')
		[[ $bin_version == "${data_version%%.*}" ]] ||
			die "data dir $DATA_DIR is PostgreSQL $data_version but $PG_BINDIR is version $bin_version; run '$PROG down' first"
	fi
}

resolve_run_user() {
	if ((IS_ROOT)); then
		RUN_USER=${POOLSAFE_STACK_USER:-postgres}
		[[ $RUN_USER != root ]] || die "POOLSAFE_STACK_USER must not be root (initdb/pgbouncer refuse to run as root)"
		id -u "$RUN_USER" >/dev/null 2>&1 ||
			die "user '$RUN_USER' does not exist (it is created by the postgresql package)"
	else
		RUN_USER=$(id -un)
	fi
}

# Run a command as the user owning the stack (postgres when we are root).
# fd 9 (our flock) is closed so that daemons started here never inherit it.
as_owner() {
	if ((IS_ROOT)); then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u "$RUN_USER" -- "$@" 9>&-)
		else
			local cmd
			printf -v cmd '%q ' "$@"
			(cd / && su -s /bin/sh "$RUN_USER" -c "$cmd" 9>&-)
		fi
	else
		"$@" 9>&-
	fi
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Write stdin to a file (mode 0600) as the stack owner. $2 == append: append.
owner_write() { # file [append]
	# shellcheck disable=SC2016 # $1 is expanded by the inner sh
	if [[ ${2-} == append ]]; then
		as_owner sh -c 'umask 077 && cat >>"$1"' sh "$1"
	else
		as_owner sh -c 'umask 077 && cat >"$1"' sh "$1"
	fi
}

urlencode() {
	local hex out='' h
	hex=$(printf '%s' "$1" | od -An -tx1 -v)
	for h in $hex; do
		case $h in
		# 0-9, A-Z, a-z, '-', '.', '_', '~'
		3[0-9] | 4[1-9a-f] | 5[0-9a] | 6[1-9a-f] | 7[0-9a] | 2d | 2e | 5f | 7e)
			# shellcheck disable=SC2059 # building an escape on purpose
			out+=$(printf "\\x$h")
			;;
		*)
			out+=%$(printf '%s' "$h" | tr '[:lower:]' '[:upper:]')
			;;
		esac
	done
	printf '%s' "$out"
}

password_digest() {
	printf '%s' "$DB_PASSWORD" | sha256sum | cut -d' ' -f1
}

print_env() {
	local pw
	pw=$(urlencode "$DB_PASSWORD")
	printf "export POOLSAFE_TEST_DIRECT_URL='postgres://%s:%s@%s:%s/%s?sslmode=disable'\n" \
		"$DB_USER" "$pw" "$HOST" "$PG_PORT" "$DB_NAME"
	printf "export POOLSAFE_TEST_SESSION_URL='postgres://%s:%s@%s:%s/%s?sslmode=disable'\n" \
		"$DB_USER" "$pw" "$HOST" "$BOUNCER_PORT" "$SESSION_ALIAS"
	printf "export POOLSAFE_TEST_TX_URL='postgres://%s:%s@%s:%s/%s?sslmode=disable'\n" \
		"$DB_USER" "$pw" "$HOST" "$BOUNCER_PORT" "$TX_ALIAS"
}

stamp_content() {
	printf 'pg_port=%s\nbouncer_port=%s\npassword_sha256=%s\n' \
		"$PG_PORT" "$BOUNCER_PORT" "$(password_digest)"
}

# Returns 1 if the state dir was created with different settings.
stamp_matches() {
	[[ ! -f $STAMP ]] || [[ "$(cat "$STAMP")" == "$(stamp_content)" ]]
}

# psql over TCP as the poolsafe role; extra args are passed through.
run_psql() { # port dbname args...
	local port=$1 db=$2
	shift 2
	PGPASSWORD=$DB_PASSWORD PGCONNECT_TIMEOUT=3 PGSSLMODE=disable PGAPPNAME=pgstack \
		"$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h "$HOST" -p "$port" -U "$DB_USER" -d "$db" "$@"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
	(exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# True if $1 is a live (non-zombie) process whose name starts with $2.
proc_alive() { # pid name
	local pid=$1 name=$2 stat state
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	if [[ -r /proc/$pid/stat ]]; then
		stat=$(<"/proc/$pid/stat") || return 1
		state=${stat##*) }
		state=${state%% *}
		[[ $state != Z && $state != X ]] || return 1
		[[ $(<"/proc/$pid/comm") == "$name"* ]] || return 1
		return 0
	fi
	[[ ! -d /proc/self ]] && kill -0 "$pid" 2>/dev/null
}

# Prints the postmaster pid if our cluster is running.
pg_pid() {
	local pid
	[[ -r $DATA_DIR/postmaster.pid ]] || return 1
	read -r pid <"$DATA_DIR/postmaster.pid" || return 1
	proc_alive "$pid" postgres || return 1
	printf '%s\n' "$pid"
}

# Prints the pgbouncer pid if our pgbouncer is running.
bouncer_pid() {
	local pid
	[[ -r $BOUNCER_PID ]] || return 1
	read -r pid <"$BOUNCER_PID" || return 1
	proc_alive "$pid" pgbouncer || return 1
	printf '%s\n' "$pid"
}

pg_healthy() {
	pg_pid >/dev/null &&
		"$PG_BINDIR/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 3 >/dev/null 2>&1 &&
		[[ "$(run_psql "$PG_PORT" "$DB_NAME" -c 'SELECT 1' 2>/dev/null)" == 1 ]]
}

bouncer_healthy() {
	bouncer_pid >/dev/null &&
		[[ "$(run_psql "$BOUNCER_PORT" "$TX_ALIAS" -c 'SELECT 1' 2>/dev/null)" == 1 ]] &&
		[[ "$(run_psql "$BOUNCER_PORT" "$SESSION_ALIAS" -c 'SELECT 1' 2>/dev/null)" == 1 ]]
}

show_logs() {
	local f
	for f in "$INITDB_LOG" "$PG_LOG" "$BOUNCER_LOG"; do
		if [[ -s $f ]]; then
			printf '%s: ----- last lines of %s -----\n' "$PROG" "$f" >&2
			tail -n 30 "$f" >&2 || true
		fi
	done
}

fail() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	show_logs
	exit 1
}

acquire_lock() {
	command -v flock >/dev/null 2>&1 || return 0
	# Braces: a bare 'exec 9>>f 2>/dev/null' would silence stderr for good.
	if { exec 9>>"$LOCK_FILE"; } 2>/dev/null; then
		if ! flock -n 9; then
			log "waiting for lock $LOCK_FILE (another $PROG up/down in progress)"
			flock -w "$((TIMEOUT * 2))" 9 ||
				die "timed out waiting for lock $LOCK_FILE; check for a stuck $PROG or a process holding it: fuser -v $LOCK_FILE"
		fi
	else
		log "warning: cannot open lock file $LOCK_FILE; continuing without lock"
	fi
}

# pgbouncer >= 1.21 can track protocol-level prepared statements. Force it off
# so the pooler does not paper over prepared statements.
bouncer_supports_prepared() {
	local v major minor
	v=$("$PGBOUNCER_BIN" --version 2>/dev/null | sed -nE '1s/^[Pp]g[Bb]ouncer ([0-9]+)\.([0-9]+).*/\1 \2/p')
	[[ -n $v ]] || return 1
	read -r major minor <<<"$v"
	((major > 1 || (major == 1 && minor >= 21)))
}

# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------

prepare_state_dir() {
	if [[ -e $STATE_DIR && ! -f $MARKER ]]; then
		if [[ -d $STATE_DIR && -z "$(ls -A "$STATE_DIR" 2>/dev/null)" ]]; then
			: # empty directory: adopt it
		else
			die "$STATE_DIR exists but was not created by $PROG; refusing to use it (set POOLSAFE_STACK_DIR)"
		fi
	fi
	if [[ -f $STAMP ]] && ! stamp_matches; then
		die "$STATE_DIR was created with different ports/password; run '$PROG down' first (with the old settings), or set POOLSAFE_STACK_DIR"
	fi

	if ((IS_ROOT)); then
		install -d -m 0755 -o "$RUN_USER" -g "$(id -gn "$RUN_USER")" "$STATE_DIR" "$SOCK_DIR"
		as_owner test -w "$STATE_DIR" ||
			die "user '$RUN_USER' cannot write $STATE_DIR (is a parent directory private, e.g. under /root?); set POOLSAFE_STACK_DIR or TMPDIR"
	else
		install -d -m 0755 "$STATE_DIR" "$SOCK_DIR"
	fi
	if [[ ! -f $MARKER ]]; then
		echo "created by pgstack.sh; removed by: pgstack.sh down" | owner_write "$MARKER"
	fi
	stamp_content | owner_write "$STAMP"
}

init_cluster() {
	if [[ -f $DATA_DIR/PG_VERSION ]]; then
		return 0
	fi
	# A half-initialised data dir (interrupted initdb) is useless: start over.
	if [[ -e $DATA_DIR ]]; then
		log "removing incomplete data directory $DATA_DIR"
		rm -rf -- "$DATA_DIR"
	fi
	log "initialising PostgreSQL cluster in $DATA_DIR ($PG_BINDIR)"
	local pwfile=$STATE_DIR/.pwfile
	printf '%s\n' "$DB_PASSWORD" | owner_write "$pwfile"
	if ! as_owner env LC_ALL=C "$PG_BINDIR/initdb" \
		--pgdata="$DATA_DIR" \
		--username="$DB_USER" \
		--pwfile="$pwfile" \
		--auth=scram-sha-256 \
		--encoding=UTF8 \
		--locale=C \
		--no-sync >"$INITDB_LOG" 2>&1; then
		rm -f -- "$pwfile"
		fail "initdb failed"
	fi
	rm -f -- "$pwfile"

	owner_write "$DATA_DIR/postgresql.conf" append <<EOF

# ---- added by pgstack.sh (throwaway test cluster) ----
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$SOCK_DIR'
max_connections = 200
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

start_postgres() {
	if pg_pid >/dev/null; then
		log "PostgreSQL already running (pid $(pg_pid))"
	else
		if port_in_use "$PG_PORT"; then
			die "port $HOST:$PG_PORT is already in use by another process; set POOLSAFE_PG_PORT"
		fi
		log "starting PostgreSQL on $HOST:$PG_PORT"
		if ! as_owner "$PG_BINDIR/pg_ctl" -D "$DATA_DIR" -l "$PG_LOG" -w -t "$TIMEOUT" start >/dev/null 2>&1; then
			fail "PostgreSQL failed to start within ${TIMEOUT}s"
		fi
	fi

	local deadline=$((SECONDS + TIMEOUT))
	until "$PG_BINDIR/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail "PostgreSQL is not accepting connections on $HOST:$PG_PORT after ${TIMEOUT}s"
		sleep 0.5
	done

	local exists
	exists=$(run_psql "$PG_PORT" postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>&1) ||
		fail "cannot connect to PostgreSQL as $DB_USER: $exists"
	if [[ $exists != 1 ]]; then
		log "creating database $DB_NAME"
		local out
		out=$(run_psql "$PG_PORT" postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" 2>&1) ||
			fail "CREATE DATABASE failed: $out"
	fi
}

write_bouncer_config() {
	local pw=${DB_PASSWORD//\"/\"\"}
	printf '"%s" "%s"\n' "$DB_USER" "$pw" | owner_write "$BOUNCER_USERLIST"

	local prepared_line='; max_prepared_statements: not supported by this pgbouncer version (< 1.21), prepared statements are not tracked anyway'
	if bouncer_supports_prepared; then
		prepared_line='max_prepared_statements = 0'
	fi

	owner_write "$BOUNCER_INI" <<EOF
; generated by pgstack.sh - throwaway test pooler, 127.0.0.1 only
[databases]
$TX_ALIAS = host=$HOST port=$PG_PORT dbname=$DB_NAME pool_mode=transaction pool_size=$TX_POOL_SIZE
$SESSION_ALIAS = host=$HOST port=$PG_PORT dbname=$DB_NAME pool_mode=session pool_size=$SESSION_POOL_SIZE

[pgbouncer]
listen_addr = $HOST
listen_port = $BOUNCER_PORT
unix_socket_dir = $SOCK_DIR
logfile = $BOUNCER_LOG
pidfile = $BOUNCER_PID

auth_type = scram-sha-256
auth_file = $BOUNCER_USERLIST
admin_users = $DB_USER
stats_users = $DB_USER

pool_mode = session
default_pool_size = $SESSION_POOL_SIZE
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
$prepared_line

client_tls_sslmode = disable
server_tls_sslmode = disable
server_login_retry = 1
EOF
}

start_bouncer() {
	if bouncer_pid >/dev/null; then
		log "PgBouncer already running (pid $(bouncer_pid))"
	else
		# Stale pidfile from a crashed pgbouncer would make it refuse to start.
		rm -f -- "$BOUNCER_PID"
		if port_in_use "$BOUNCER_PORT"; then
			die "port $HOST:$BOUNCER_PORT is already in use by another process; set POOLSAFE_BOUNCER_PORT"
		fi
		write_bouncer_config
		log "starting PgBouncer on $HOST:$BOUNCER_PORT ($("$PGBOUNCER_BIN" --version | head -n1))"
		if ! as_owner "$PGBOUNCER_BIN" -d "$BOUNCER_INI" >>"$BOUNCER_LOG.stderr" 2>&1; then
			[[ -s $BOUNCER_LOG.stderr ]] && tail -n 20 "$BOUNCER_LOG.stderr" >&2
			fail "PgBouncer failed to start"
		fi
	fi

	local deadline=$((SECONDS + TIMEOUT)) err_tx err_session
	while :; do
		err_tx=$(run_psql "$BOUNCER_PORT" "$TX_ALIAS" -c 'SELECT 1' 2>&1) && [[ $err_tx == 1 ]] &&
			err_session=$(run_psql "$BOUNCER_PORT" "$SESSION_ALIAS" -c 'SELECT 1' 2>&1) && [[ $err_session == 1 ]] &&
			break
		if ((SECONDS >= deadline)); then
			[[ -s $BOUNCER_LOG.stderr ]] && tail -n 20 "$BOUNCER_LOG.stderr" >&2
			fail "PgBouncer pools not usable on $HOST:$BOUNCER_PORT after ${TIMEOUT}s (last: ${err_tx:-} ${err_session:-})"
		fi
		bouncer_pid >/dev/null || {
			sleep 0.5
			bouncer_pid >/dev/null || fail "PgBouncer exited during startup"
		}
		sleep 0.5
	done
	start_watchdog
}

cmd_up() {
	setup_paths
	resolve_binaries install
	resolve_run_user
	acquire_lock

	if [[ -f $MARKER ]] && stamp_matches && pg_healthy && bouncer_healthy; then
		log "stack already running in $STATE_DIR"
		start_watchdog
		print_env
		return 0
	fi

	prepare_state_dir
	init_cluster
	start_postgres
	start_bouncer
	log "stack is up: PostgreSQL $HOST:$PG_PORT, PgBouncer $HOST:$BOUNCER_PORT ($TX_ALIAS: transaction/$TX_POOL_SIZE, $SESSION_ALIAS: session/$SESSION_POOL_SIZE)"
	log "state dir: $STATE_DIR   (eval \"\$($0 env)\" to use it)"
	print_env
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

# PgBouncer 1.18 (Debian 12) can exit on a cancel-request race
# ("FATAL … disconnect_client(): bad client state: 0", pgbouncer issue
# #801; seen here under the test suite's cancellations). The watchdog
# restarts it within a fraction of a second
# so one crash does not take the rest of a test run down with it; every
# restart is logged to watchdog.log.
start_watchdog() {
	local pid
	if [[ -r $STATE_DIR/watchdog.pid ]] && read -r pid <"$STATE_DIR/watchdog.pid" && proc_alive "$pid" bash; then
		return 0
	fi
	rm -f -- "$STATE_DIR/watchdog.stop"
	# shellcheck disable=SC2016 # expanded by the watchdog's own shell
	local script='echo $$ >"$1/watchdog.pid"
while [ ! -e "$1/watchdog.stop" ]; do
	pid=$(cat "$1/pgbouncer.pid" 2>/dev/null)
	st=
	[ -n "$pid" ] && st=$(sed -n "s/^[0-9]* (.*) \(.\) .*/\1/p" "/proc/$pid/stat" 2>/dev/null)
	if [ -z "$st" ] || [ "$st" = Z ]; then
		[ -e "$1/watchdog.stop" ] && break
		echo "$(date -u +%FT%TZ) watchdog: pgbouncer is not running, restarting it" >>"$1/watchdog.log"
		rm -f "$1/pgbouncer.pid"
		"$2" -d "$3" >>"$1/watchdog.log" 2>&1
		sleep 1
	fi
	sleep 0.2
done'
	# fd 9 is the lock: the background job must not keep it.
	as_owner setsid bash -c "$script" pgstack-watchdog "$STATE_DIR" "$PGBOUNCER_BIN" "$BOUNCER_INI" </dev/null >/dev/null 2>&1 9>&- &
	disown || true
}

stop_watchdog() {
	local pid i
	[[ -d $STATE_DIR ]] || return 0
	as_owner touch "$STATE_DIR/watchdog.stop" 2>/dev/null || touch "$STATE_DIR/watchdog.stop"
	if [[ -r $STATE_DIR/watchdog.pid ]] && read -r pid <"$STATE_DIR/watchdog.pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			proc_alive "$pid" bash || break
			sleep 0.1
		done
	fi
	rm -f -- "$STATE_DIR/watchdog.pid"
}

stop_bouncer() {
	local pid i
	stop_watchdog
	pid=$(bouncer_pid) || return 0
	log "stopping PgBouncer (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		bouncer_pid >/dev/null || return 0
		sleep 0.1
	done
	log "PgBouncer did not exit, sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.2
	! bouncer_pid >/dev/null || die "could not stop PgBouncer (pid $pid)"
}

stop_postgres() {
	local pid
	pid=$(pg_pid) || return 0
	log "stopping PostgreSQL (pid $pid)"
	if [[ -z $PG_BINDIR ]]; then
		kill -INT "$pid" 2>/dev/null || true
	elif ! as_owner "$PG_BINDIR/pg_ctl" -D "$DATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1; then
		log "fast shutdown failed, trying immediate"
		as_owner "$PG_BINDIR/pg_ctl" -D "$DATA_DIR" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
	fi
	local i
	for ((i = 0; i < 100; i++)); do
		pg_pid >/dev/null || return 0
		sleep 0.1
	done
	die "could not stop PostgreSQL (pid $pid); state dir $STATE_DIR left in place"
}

cmd_down() {
	setup_paths
	if [[ ! -e $STATE_DIR ]]; then
		log "nothing to do: $STATE_DIR does not exist"
		return 0
	fi
	[[ -f $MARKER ]] || die "$STATE_DIR was not created by $PROG; refusing to touch it"
	# Binaries are optional here: without pg_ctl we fall back to signals.
	local data_version=
	[[ -r $DATA_DIR/PG_VERSION ]] && data_version=$(<"$DATA_DIR/PG_VERSION")
	PG_BINDIR=$(find_pg_bindir "$data_version" || true)
	if ((IS_ROOT)); then
		RUN_USER=$(stat -c %U "$STATE_DIR")
		[[ $RUN_USER != root ]] || RUN_USER=${POOLSAFE_STACK_USER:-postgres}
	else
		RUN_USER=$(id -un)
	fi
	acquire_lock

	stop_bouncer
	stop_postgres
	log "removing $STATE_DIR"
	rm -rf -- "$STATE_DIR"
	# The (empty) lock file beside the state dir is kept on purpose: deleting
	# it while others wait on it would let two invocations run concurrently.
	log "stack is down"
}

# ---------------------------------------------------------------------------
# status / env
# ---------------------------------------------------------------------------

cmd_status() {
	setup_paths
	local data_version=
	[[ -r $DATA_DIR/PG_VERSION ]] && data_version=$(<"$DATA_DIR/PG_VERSION")
	PG_BINDIR=$(find_pg_bindir "$data_version" || true)
	[[ -n $PG_BINDIR && -x $PG_BINDIR/psql ]] || {
		echo "postgresql: not running (PostgreSQL binaries not installed)"
		echo "pgbouncer:  not running"
		return 1
	}

	local rc=0 pid
	echo "state dir:  $STATE_DIR$([[ -e $STATE_DIR ]] || echo ' (absent)')"
	if pid=$(pg_pid); then
		if pg_healthy; then
			echo "postgresql: running (pid $pid, $HOST:$PG_PORT, data $DATA_DIR)"
		else
			echo "postgresql: process $pid exists but is NOT accepting connections as $DB_USER on $HOST:$PG_PORT"
			rc=1
		fi
	else
		echo "postgresql: not running"
		rc=1
	fi
	if pid=$(bouncer_pid); then
		if bouncer_healthy; then
			echo "pgbouncer:  running (pid $pid, $HOST:$BOUNCER_PORT, $TX_ALIAS=transaction/$TX_POOL_SIZE, $SESSION_ALIAS=session/$SESSION_POOL_SIZE)"
		else
			echo "pgbouncer:  process $pid exists but pools are NOT usable on $HOST:$BOUNCER_PORT"
			rc=1
		fi
	else
		echo "pgbouncer:  not running"
		rc=1
	fi
	return "$rc"
}

cmd_env() {
	setup_paths
	if [[ -f $STAMP ]] && ! stamp_matches; then
		log "warning: the stack in $STATE_DIR was started with different ports/password than the current environment"
	fi
	print_env
}

# ---------------------------------------------------------------------------

cmd_install() {
	setup_paths
	resolve_binaries install
	log "PostgreSQL ($PG_BINDIR) and PgBouncer ($PGBOUNCER_BIN) are installed"
}

main() {
	if (($# != 1)); then
		usage >&2
		exit 2
	fi
	case $1 in
	-h | --help | help)
		usage
		exit 0
		;;
	up | down | env | status | install) ;;
	*)
		printf '%s: unknown command: %s\n\n' "$PROG" "$1" >&2
		usage >&2
		exit 2
		;;
	esac
	scrub_pg_env
	validate_config
	"cmd_$1"
}

main "$@"
