#!/usr/bin/env bash
# PostgreSQL gateway throughput and latency beside a direct connection and
# beside pgbouncer (session mode), all in one run on this machine:
#   pgbench -S TPS through Vigil vs direct     goal >= 0.9
#   pgbench -S TPS through Vigil vs pgbouncer  (the field's usual proxy)
#   added latency per simple query, p50/p99 (single client)
#   beside gorelay (bench/gorelay: two io.Copy, nothing else), the floor
#   any Go proxy pays on this machine
# plus one round of -M prepared and one with TLS, Vigil's CPU per
# transaction and its RSS. A throwaway PostgreSQL (initdb in a temp dir,
# fsync=off), pgbouncer and vigil serve on free loopback ports; all of it
# is stopped and removed on exit.
#
# Needs PostgreSQL server+client and pgbouncer (installed with apt-get when
# missing and run as root; as root, postgres and pgbouncer run as the
# postgres user).
#
# Usage: bench/pg.sh
#        ROUNDS=1 T=5 LAT_T=5 bench/pg.sh      # quicker
#        VIGIL_BIN=bin/vigil bench/pg.sh       # skip the build
#        VIGIL_PROFILE=1 bench/pg.sh           # also print Vigil's CPU profile (top functions)
#        VIGIL_PROFILE=DIR bench/pg.sh         # same, and keep the profile and binary in DIR
#        PIN=1 bench/pg.sh                     # PostgreSQL and pgbench on CPU 0, each proxy on CPU 1
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}     # interleaved rounds of direct, pgbouncer, vigil
T=${T:-15}              # seconds per throughput run
LAT_T=${LAT_T:-10}      # seconds per latency run
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- prerequisites ---------------------------------------------------------
need_install=()
ls -d /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_install+=(postgresql)
ls -d /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need_install+=(postgresql-client)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || need_install+=(pgbouncer)
command -v openssl >/dev/null 2>&1 || need_install+=(openssl)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
if [ ${#need_install[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || { echo "missing: ${need_install[*]} (run as root to install them)" >&2; exit 1; }
	log "installing ${need_install[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
fi
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
CLK_TCK=$(getconf CLK_TCK)

# as_pg runs a command as the postgres user when we are root (PostgreSQL
# and pgbouncer refuse to run as root).
if [ "$(id -u)" = 0 ]; then
	PGOWNER=postgres
	id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
	PGOWNER=$(id -un)
	as_pg() { (cd / && "$@"); }
fi

# PIN=1 gives the proxy a core of its own, as on a deployment where it
# runs on another machine: PostgreSQL and pgbench share CPU 0, each proxy
# runs on CPU 1. Without it everything shares both CPUs.
PIN=${PIN:-}
if [ -n "$PIN" ] && [ "$(nproc)" -lt 2 ]; then echo "PIN=1 needs 2 CPUs" >&2; exit 1; fi
on_db_cpu() { if [ -n "$PIN" ]; then taskset -c 0 "$@"; else "$@"; fi; }
pin_proxy() { [ -z "$PIN" ] || taskset -a -p -c 1 "$1" >/dev/null; }

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p i
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		if ! ss -Htln "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
	done
	echo "no free port found" >&2
	return 1
}

# wait_for TIMEOUT_SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.1s.
wait_for() {
	local timeout=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then echo "timed out after ${timeout}s waiting for $what" >&2; return 1; fi
		sleep 0.1
	done
}

# --- state and cleanup -----------------------------------------------------
TMP=$(mktemp -d /tmp/vigil-pgbench.XXXXXX)
chmod 755 "$TMP"
PGDIR=$TMP/pg PGDATA=$TMP/pg/data BDIR=$TMP/bouncer VDATA=$TMP/vigil-data
vigil_pid= bouncer_pid= relay_pid= sampler_pid= pg_started=
cleanup() {
	local rc=$?
	set +e
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
	[ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null
	if [ -n "$vigil_pid" ] && kill -0 "$vigil_pid" 2>/dev/null; then
		kill -TERM "$vigil_pid"
		for _ in $(seq 1 150); do kill -0 "$vigil_pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$vigil_pid" 2>/dev/null; then
			echo "vigil did not stop within 15s of SIGTERM; killing it" >&2
			kill -KILL "$vigil_pid"
		fi
		wait "$vigil_pid" 2>/dev/null
	fi
	if [ -n "$bouncer_pid" ] && kill -0 "$bouncer_pid" 2>/dev/null; then
		kill -TERM "$bouncer_pid"
		for _ in $(seq 1 50); do kill -0 "$bouncer_pid" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$bouncer_pid" 2>/dev/null && kill -KILL "$bouncer_pid"
	fi
	[ -n "$pg_started" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1
	if [ $rc -ne 0 ]; then
		for f in "$TMP/vigil.err" "$PGDIR/postgres.log" "$BDIR/pgbouncer.log"; do
			[ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 20 "$f" >&2; }
		done
	fi
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- PostgreSQL --------------------------------------------------------------
APP_PW=$(openssl rand -hex 16)
install -d -o "$PGOWNER" -m 700 "$PGDIR"
log "initdb ($PGBIN)"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C -N >"$TMP/initdb.log" 2>&1 ||
	{ cat "$TMP/initdb.log" >&2; exit 1; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-keyout "$PGDIR/server.key" -out "$PGDIR/server.crt" 2>/dev/null
chown "$PGOWNER" "$PGDIR/server.key" "$PGDIR/server.crt"
chmod 600 "$PGDIR/server.key"
PG_PORT=$(free_port)
cat >>"$PGDATA/postgresql.conf" <<EOF
# bench/pg.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGDIR'
ssl = on
ssl_cert_file = '$PGDIR/server.crt'
ssl_key_file = '$PGDIR/server.key'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_connections = 100
EOF
log "starting postgres on 127.0.0.1:$PG_PORT"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDIR/postgres.log" -w -t 60 start >/dev/null
pg_started=1
PG_PID=$(head -n 1 "$PGDATA/postmaster.pid")
# Backends fork from the postmaster and inherit its CPU.
[ -z "$PIN" ] || taskset -a -p -c 0 "$PG_PID" >/dev/null
as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PG_PORT" -U postgres -d postgres \
	-c "CREATE ROLE app LOGIN PASSWORD '$APP_PW'" -c "CREATE DATABASE app OWNER app"
log "pgbench -i -s $SCALE app"
PGPASSWORD=$APP_PW PGSSLMODE=disable "$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U app app >"$TMP/init.log" 2>&1 ||
	{ cat "$TMP/init.log" >&2; exit 1; }

# --- pgbouncer ---------------------------------------------------------------
install -d -o "$PGOWNER" -m 700 "$BDIR"
BOUNCER_PORT=$(free_port)
cat >"$BDIR/pgbouncer.ini" <<EOF
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $BDIR/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 16
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = $BDIR/pgbouncer.log
pidfile = $BDIR/pgbouncer.pid
EOF
printf '"app" "%s"\n' "$APP_PW" >"$BDIR/userlist.txt"
chown "$PGOWNER" "$BDIR/pgbouncer.ini" "$BDIR/userlist.txt"
chmod 600 "$BDIR/userlist.txt"
log "starting pgbouncer (session mode) on 127.0.0.1:$BOUNCER_PORT"
as_pg "$PGBOUNCER" -d "$BDIR/pgbouncer.ini"
wait_for 10 "pgbouncer's pid file" test -s "$BDIR/pgbouncer.pid"
bouncer_pid=$(cat "$BDIR/pgbouncer.pid")
pin_proxy "$bouncer_pid"
wait_for 15 "pgbouncer to accept logins" env PGPASSWORD="$APP_PW" PGSSLMODE=disable PGCONNECT_TIMEOUT=2 \
	"$PGBIN/psql" -X -At -h 127.0.0.1 -p "$BOUNCER_PORT" -U app -d app -c 'select 1'

# --- Vigil -------------------------------------------------------------------
if [ -n "${VIGIL_BIN:-}" ]; then
	cp "$VIGIL_BIN" "$TMP/vigil"
else
	log "go build -o \$TMP/vigil ./cmd/vigil"
	go build -o "$TMP/vigil" ./cmd/vigil
fi
go build -o "$TMP/gorelay" ./bench/gorelay
RELAY_PORT=$(free_port)
"$TMP/gorelay" "127.0.0.1:$RELAY_PORT" "127.0.0.1:$PG_PORT" 2>"$TMP/gorelay.err" &
relay_pid=$!
pin_proxy "$relay_pid"
wait_for 15 "gorelay to relay a login" env PGPASSWORD="$APP_PW" PGSSLMODE=disable PGCONNECT_TIMEOUT=2 \
	"$PGBIN/psql" -X -At -h 127.0.0.1 -p "$RELAY_PORT" -U app -d app -c 'select 1'
printf 'pg:\n  allow_plaintext_loopback: true\n' >"$TMP/vigil.yaml"
vigil_env=()
[ -n "${VIGIL_PROFILE:-}" ] && vigil_env=(VIGIL_CPUPROFILE="$TMP/vigil.pprof")
log "starting vigil serve"
env "${vigil_env[@]}" "$TMP/vigil" serve --data "$VDATA" --http-addr 127.0.0.1:0 --ssh-addr 127.0.0.1:0 --pg-addr 127.0.0.1:0 \
	--config "$TMP/vigil.yaml" >"$TMP/vigil.out" 2>"$TMP/vigil.err" &
vigil_pid=$!
pin_proxy "$vigil_pid"
deadline=$((SECONDS + 60))
until grep -q 'msg="vigil serving"' "$TMP/vigil.err"; do
	kill -0 "$vigil_pid" 2>/dev/null || { echo "vigil serve exited" >&2; exit 1; }
	[ $SECONDS -lt $deadline ] || { echo "vigil serve did not start within 60s" >&2; exit 1; }
	sleep 0.1
done
read -r VIGIL_HTTP VIGIL_PG < <(sed -n 's/.*msg="vigil serving" http=\([^ ]*\) ssh=[^ ]* pg=\([^ ]*\).*/\1 \2/p' "$TMP/vigil.err" | head -n 1)
VIGIL_PG_PORT=${VIGIL_PG##*:}
export VIGIL_DATA=$VDATA VIGIL_ADDR=http://$VIGIL_HTTP
DB_PW=$APP_PW "$TMP/vigil" target add db1 --pg "127.0.0.1:$PG_PORT" --database app --login app --password-env DB_PW --tls disable >&2
TOKEN=$("$TMP/vigil" token issue --user bench --grant db1:app:query --ttl 2h)
wait_for 15 "a login through vigil" env PGPASSWORD="$TOKEN" PGSSLMODE=disable PGCONNECT_TIMEOUT=5 \
	"$PGBIN/psql" -X -At -h 127.0.0.1 -p "$VIGIL_PG_PORT" -U app -d db1 -c 'select 1'
log "vigil: http $VIGIL_HTTP, pg $VIGIL_PG (pid $vigil_pid)"

# --- measuring ---------------------------------------------------------------
# stat_ticks PID: CPU ticks of PID itself (user+sys) and of its reaped
# children, "own children".
stat_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "0 0"; return; }
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo "$((${12} + ${13})) $((${14} + ${15}))"
}
proc_ticks() { stat_ticks "$1" | awk '{ print $1 + $2 }'; }
# pg_ticks: CPU ticks of the postmaster, its live children (backends,
# pgbouncer's pooled ones too) and its reaped ones; read again when a
# backend was reaped meanwhile (it would count twice or not at all).
pg_ticks() {
	local i a b own l1 l2 t c
	for i in $(seq 1 50); do
		read -r _ a < <(stat_ticks "$PG_PID")
		l1=$(pgrep -P "$PG_PID" | tr '\n' ' ')
		t=0
		for c in $l1; do t=$((t + $(proc_ticks "$c"))); done
		l2=$(pgrep -P "$PG_PID" | tr '\n' ' ')
		read -r own b < <(stat_ticks "$PG_PID")
		if [ "$a" = "$b" ] && [ "$l1" = "$l2" ]; then break; fi
		sleep 0.05
	done
	echo $((own + b + t))
}
# busy_ticks: CPU ticks the whole machine spent busy (all CPUs).
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
rss_kib() { awk -v k="${2:-VmRSS}:" '$1 == k { print $2 }' "/proc/$1/status"; }
metric() { curl -fsS "http://$VIGIL_HTTP/metrics" | awk -v m="$1" '$1 == m { printf "%d\n", $2 }'; }

RESULTS=$TMP/results.tsv # section path round tps tx proxy_us_tx pg_us_tx client_us_tx others_cores
: >"$RESULTS"
declare -A seen_cmd
COMMANDS=()
record_cmd() { [ -n "${seen_cmd[$1]:-}" ] || { seen_cmd[$1]=1; COMMANDS+=("$1"); }; }

# pgb SECTION PATH ROUND SSLMODE PGBENCH-ARGS...: one pgbench run on PATH
# (direct, pgbouncer or vigil); appends its figures to $RESULTS.
pgb() {
	local section=$1 path=$2 round=$3 sslmode=$4 port db pw pwname proxy=
	shift 4
	case $path in
	direct) port=$PG_PORT db=app pw=$APP_PW pwname='$APP_PW' ;;
	pgbouncer) port=$BOUNCER_PORT db=app pw=$APP_PW pwname='$APP_PW' proxy=$bouncer_pid ;;
	gorelay) port=$RELAY_PORT db=app pw=$APP_PW pwname='$APP_PW' proxy=$relay_pid ;;
	vigil) port=$VIGIL_PG_PORT db=db1 pw=$TOKEN pwname='$TOKEN' proxy=$vigil_pid ;;
	esac
	record_cmd "PGSSLMODE=$sslmode PGPASSWORD=$pwname pgbench $* -h 127.0.0.1 -p $port -U app $db   # $path"
	local out=$TMP/pgbench.$section.$path.$round p0 g0 b0 p1 g1 b1 cpu wall tx tps
	p0=$([ -n "$proxy" ] && proc_ticks "$proxy" || echo 0)
	g0=$(pg_ticks)
	b0=$(busy_ticks)
	local TIMEFORMAT='%3U %3S %3R'
	if ! { time PGSSLMODE=$sslmode PGPASSWORD=$pw on_db_cpu "$PGBIN/pgbench" "$@" -h 127.0.0.1 -p "$port" -U app "$db" >"$out" 2>&1; } 2>"$out.time"; then
		echo "pgbench failed on $path ($section):" >&2
		cat "$out" >&2
		return 1
	fi
	b1=$(busy_ticks)
	sleep 0.2 # let the postmaster reap the backends
	p1=$([ -n "$proxy" ] && proc_ticks "$proxy" || echo 0)
	g1=$(pg_ticks)
	cpu=$(awk '{ print $1 + $2 }' "$out.time")
	wall=$(awk '{ print $3 }' "$out.time")
	tx=$(awk -F': ' '/^number of transactions actually processed/ { print $2 + 0 }' "$out")
	tps=$(awk '/^tps = / { print $3 }' "$out")
	if [ -z "$tps" ] || [ "${tx:-0}" -eq 0 ]; then
		echo "no result from pgbench on $path ($section):" >&2
		cat "$out" >&2
		return 1
	fi
	awk -v s="$section" -v p="$path" -v r="$round" -v tps="$tps" -v tx="$tx" -v pt=$((p1 - p0)) -v gt=$((g1 - g0)) -v bt=$((b1 - b0)) \
		-v c="$cpu" -v w="$wall" -v hz="$CLK_TCK" 'BEGIN {
			o = (bt - pt - gt) / hz - c; if (o < 0) o = 0
			printf "%s\t%s\t%s\t%.1f\t%d\t%.1f\t%.1f\t%.1f\t%.2f\n", s, p, r, tps, tx, pt / hz / tx * 1e6, gt / hz / tx * 1e6, c / tx * 1e6, o / w
		}' >>"$RESULTS"
	log "$(tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "%-9s %-9s round %s: %9.1f tps; CPU µs/tx: proxy %s, postgres %s, pgbench %s; other processes %s cores", $1, $2, $3, $4, $6, $7, $8, $9 }')"
}

# sample_vigil DELAY ROUND: halfway through a run, Vigil's RSS, statement
# log queue depth and (round 1) a top snapshot.
sample_vigil() {
	sleep "$1"
	echo "$(rss_kib "$vigil_pid") $(metric vigil_querylog_queue_depth)" >"$TMP/sample.$2"
	if [ "$2" = 1 ]; then
		top -b -n 2 -d 1 -w 160 | awk '/^top -/ { n++ } n == 2' | sed -n '3p;7,14p' >"$TMP/top.txt"
	fi
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
BASE=(-n -S -c "$CLIENTS" -j "$JOBS")
log "warm-up: pgbench -S -T 5 direct"
PGSSLMODE=disable PGPASSWORD=$APP_PW on_db_cpu "$PGBIN/pgbench" "${BASE[@]}" -T 5 -h 127.0.0.1 -p "$PG_PORT" -U app app >/dev/null 2>&1
log "throughput: $ROUNDS rounds of direct, pgbouncer, gorelay, vigil; pgbench ${BASE[*]} -T $T (-M simple)"
for r in $(seq 1 "$ROUNDS"); do
	pgb simple direct "$r" disable "${BASE[@]}" -T "$T"
	pgb simple pgbouncer "$r" disable "${BASE[@]}" -T "$T"
	pgb simple gorelay "$r" disable "${BASE[@]}" -T "$T"
	sample_vigil $((T / 2)) "$r" &
	sampler_pid=$!
	pgb simple vigil "$r" disable "${BASE[@]}" -T "$T"
	wait "$sampler_pid" || true
	sampler_pid=
	echo "$(rss_kib "$vigil_pid")" >"$TMP/rss_after.$r"
done
VM_HWM=$(rss_kib "$vigil_pid" VmHWM)
log "extended protocol: -M prepared"
pgb prepared direct 1 disable "${BASE[@]}" -M prepared -T "$T"
pgb prepared vigil 1 disable "${BASE[@]}" -M prepared -T "$T"
log "TLS: sslmode=require on the client leg"
pgb tls direct 1 require "${BASE[@]}" -T "$T"
pgb tls vigil 1 require "${BASE[@]}" -T "$T"

# Latency per simple query, one client: pgbench's log has the latency of
# every transaction (one SELECT) in µs in its 3rd column.
mkdir -p "$TMP/lat"
LAT=$TMP/latency.tsv
: >"$LAT"
for path in direct pgbouncer gorelay vigil; do
	pgb latency "$path" 1 disable -n -S -c 1 -j 1 -T "$LAT_T" -l "--log-prefix=$TMP/lat/$path"
	cat "$TMP/lat/$path".* | awk '{ print $3 }' | sort -n | awk -v p="$path" '
		{ v[NR] = $1 }
		END {
			i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
			i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
			printf "%s\t%d\t%d\t%d\n", p, NR, v[i50], v[i99]
		}' >>"$LAT"
done

# Statement log: everything through Vigil is logged; wait for the queue
# to drain, then compare with what pgbench ran.
for _ in $(seq 1 100); do [ "$(metric vigil_querylog_queue_depth)" = 0 ] && break; sleep 0.1; done
QL_WRITTEN=$(metric vigil_querylog_written_total)
QL_DEPTH=$(metric vigil_querylog_queue_depth)
# Every session through Vigil has ended: none of its upstream connections
# should be left.
vigil_upstream() { ss -Htnp state established "dport = :$PG_PORT" | grep -c "pid=$vigil_pid," || true; }
for _ in $(seq 1 50); do [ "$(vigil_upstream)" = 0 ] && break; sleep 0.1; done
UPSTREAM_LEFT=$(vigil_upstream)
VIGIL_TX=$(awk -F'\t' '$2 == "vigil" { n += $5 } END { print n + 0 }' "$RESULTS")
VIGIL_RUNS=$(awk -F'\t' '$2 == "vigil" { n++ } END { print n + 0 }' "$RESULTS")

# --- summary -----------------------------------------------------------------
if [ -n "${VIGIL_PROFILE:-}" ]; then
	kill -TERM "$vigil_pid"
	wait "$vigil_pid" || true
	vigil_pid=
fi
echo
echo "== bench/pg.sh: Vigil PostgreSQL gateway vs direct vs pgbouncer (session mode) vs gorelay (bare Go relay) =="
echo "load:      $LOAD0 (1/5/15 min load average before the runs)"
echo "host:      $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo); everything on this machine over 127.0.0.1"
echo "versions:  $("$PGBIN/postgres" --version), $("$PGBOUNCER" --version | head -n 1), vigil $(git describe --always --dirty 2>/dev/null || echo '?'), $(go version | awk '{ print $3 }')"
echo "database:  pgbench scale $SCALE, shared_buffers=256MB, fsync=off synchronous_commit=off full_page_writes=off (only pgbench -i writes; -S reads)"
echo "auth:      scram-sha-256 direct and via pgbouncer (userlist, pool_mode=session, default_pool_size=16); via Vigil a token (grant db1:app:query), Vigil logs in upstream with scram"
echo "upstream:  pgbouncer, gorelay and Vigil reach PostgreSQL in plaintext (server_tls_sslmode=disable, target --tls disable)"
if [ -n "$PIN" ]; then
	echo "cpus:      PIN=1: PostgreSQL and pgbench on CPU 0, each proxy on CPU 1"
else
	echo "cpus:      PostgreSQL, pgbench and the proxy share all $(nproc) CPUs (PIN=1 gives the proxy its own)"
fi
echo
awk -F'\t' -v rounds="$ROUNDS" -v clients="$CLIENTS" -v jobs="$JOBS" -v t="$T" '
	function median(s,   a, n, i, j, x) {
		n = split(s, a, " ")
		for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function r(a, b) { return (b > 0) ? sprintf("%.3f", a / b) : "n/a" }
	{
		k = $1 SUBSEP $2
		tps[k] = tps[k] (tps[k] == "" ? "" : " ") $4
		pr[k] = pr[k] " " $6; pg[k] = pg[k] " " $7; cl[k] = cl[k] " " $8
		cell[$1, $2, $3] = $4
	}
	END {
		printf "Throughput: pgbench -n -S -c %s -j %s -T %s, -M simple, sslmode=disable, %s interleaved rounds\n", clients, jobs, t, rounds
		printf "%-10s", "path"
		for (i = 1; i <= rounds; i++) printf " %9s", "round" i
		printf " %9s %15s %15s %15s\n", "median", "proxy µs/tx", "postgres µs/tx", "pgbench µs/tx"
		split("direct pgbouncer gorelay vigil", P, " ")
		for (i = 1; i <= 4; i++) {
			p = P[i]; k = "simple" SUBSEP p
			printf "%-10s", p
			for (j = 1; j <= rounds; j++) printf " %9.1f", cell["simple", p, j]
			m[p] = median(tps[k])
			printf " %9.1f %15s %15.1f %15.1f\n", m[p], (p == "direct") ? "-" : sprintf("%.1f", median(pr[k])), median(pg[k]), median(cl[k])
		}
		printf "ratios of medians: vigil/direct %s (goal >= 0.9)   vigil/pgbouncer %s   vigil/gorelay %s   pgbouncer/direct %s   gorelay/direct %s\n", \
			r(m["vigil"], m["direct"]), r(m["vigil"], m["pgbouncer"]), r(m["vigil"], m["gorelay"]), r(m["pgbouncer"], m["direct"]), r(m["gorelay"], m["direct"])
		print ""
		printf "Extended protocol (-M prepared), 1 round:  direct %.1f tps   vigil %.1f tps (%s µs CPU/tx in vigil)   vigil/direct %s\n", \
			tps["prepared" SUBSEP "direct"], tps["prepared" SUBSEP "vigil"], median(pr["prepared" SUBSEP "vigil"]), r(tps["prepared" SUBSEP "vigil"], tps["prepared" SUBSEP "direct"])
		printf "TLS on the client leg (sslmode=require; Vigil->PostgreSQL stays plaintext), 1 round:  direct %.1f tps   vigil %.1f tps (%s µs CPU/tx in vigil)   vigil/direct %s\n", \
			tps["tls" SUBSEP "direct"], tps["tls" SUBSEP "vigil"], median(pr["tls" SUBSEP "vigil"]), r(tps["tls" SUBSEP "vigil"], tps["tls" SUBSEP "direct"])
	}' "$RESULTS"
awk -F'\t' '{ n++; o[n] = $9; s += $9; if ($9 > m) { m = $9; w = $1 " " $2 " round " $3 } }
	END { printf "CPU busy outside pgbench, proxy and postgres (other processes, kernel softirq): %.2f cores on average per run (max %.2f, %s)%s\n", s / n, m, w, (m > 0.2) ? ": figures may be disturbed; compare with a run on a quiet machine" : "" }' "$RESULTS"
echo
echo "Latency per simple query: pgbench -n -S -c 1 -j 1 -T $LAT_T -l (per-transaction latency, µs)"
awk -F'\t' '
	NR == FNR { tps[$2] = $4; next }
	{ n[$1] = $2; p50[$1] = $3; p99[$1] = $4 }
	END {
		printf "%-10s %8s %9s %8s %8s %14s %14s\n", "path", "queries", "tps", "p50", "p99", "added p50", "added p99"
		split("direct pgbouncer gorelay vigil", P, " ")
		for (i = 1; i <= 4; i++) {
			p = P[i]
			printf "%-10s %8d %9.1f %8d %8d", p, n[p], tps[p], p50[p], p99[p]
			if (p == "direct") printf " %14s %14s\n", "-", "-"
			else printf " %14s %14s\n", sprintf("%+d", p50[p] - p50["direct"]), sprintf("%+d", p99[p] - p99["direct"])
		}
	}' <(awk -F'\t' '$1 == "latency"' "$RESULTS") "$LAT"
echo
rss_during=$(awk '{ printf "%s%.1f", (NR > 1 ? "/" : ""), $1 / 1024 }' $(ls "$TMP"/sample.* | sort))
rss_after=$(awk '{ printf "%s%.1f", (NR > 1 ? "/" : ""), $1 / 1024 }' $(ls "$TMP"/rss_after.* | sort))
qdepth=$(awk '{ printf "%s%s", (NR > 1 ? "/" : ""), $2 }' $(ls "$TMP"/sample.* | sort))
echo "Vigil memory (VmRSS, MiB, rounds 1..$ROUNDS): during the $CLIENTS-client run $rss_during; after it $rss_after; peak VmHWM $(awk -v k="$VM_HWM" 'BEGIN { printf "%.1f", k / 1024 }')"
QL_WANT=$((VIGIL_TX + 2 * VIGIL_RUNS + 1))
echo "Statement log: $QL_WRITTEN statements written, $QL_WANT expected ($VIGIL_TX pgbench transactions in $VIGIL_RUNS runs through Vigil, 2 setup queries per run, 1 login check); queue depth (capacity 8192) mid-run $qdepth, at the end $QL_DEPTH"
echo "Vigil upstream connections still open after the runs: $UPSTREAM_LEFT; data dir: vigil.db (+WAL) $(du -cm "$VDATA"/vigil.db* | awk 'END { print $1 }') MiB, recordings $(du -sm "$VDATA/recordings" 2>/dev/null | awk '{ print $1 }') MiB"
nerr=$(grep -c 'level=ERROR' "$TMP/vigil.err" || true)
nwarn=$(grep -c 'level=WARN' "$TMP/vigil.err" || true)
echo "Vigil log: $nerr level=ERROR, $nwarn level=WARN lines"
{ grep -E 'level=(ERROR|WARN)' "$TMP/vigil.err" || true; } | sed -E 's/^time=[^ ]+ //' | sort | uniq -c | sort -rn | head -n 10 | sed 's/^/  /'
if [ -s "$TMP/top.txt" ]; then
	echo "top, halfway through round 1 through Vigil:"
	sed 's/^/  /' "$TMP/top.txt"
fi
if [ -n "${VIGIL_PROFILE:-}" ] && [ -s "$TMP/vigil.pprof" ]; then
	[ -d "$VIGIL_PROFILE" ] && cp "$TMP/vigil.pprof" "$TMP/vigil" "$VIGIL_PROFILE/"
	echo "Vigil CPU profile (whole run), top functions:"
	go tool pprof -top -nodecount=25 "$TMP/vigil" "$TMP/vigil.pprof" 2>/dev/null | sed 's/^/  /'
fi
echo
echo "Commands (ports of this run; \$APP_PW is the app role's password, \$TOKEN the Vigil token):"
cat <<EOF
  initdb -D \$PGDATA -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C -N
  pg_ctl -D \$PGDATA -w start   # port $PG_PORT, ssl=on (self-signed P-256), fsync=off
  PGPASSWORD=\$APP_PW pgbench -i -q -s $SCALE -h 127.0.0.1 -p $PG_PORT -U app app
  pgbouncer -d pgbouncer.ini    # 127.0.0.1:$BOUNCER_PORT, pool_mode=session, auth_type=scram-sha-256
  go run ./bench/gorelay 127.0.0.1:$RELAY_PORT 127.0.0.1:$PG_PORT
  vigil serve --data \$TMP/vigil-data --http-addr 127.0.0.1:0 --ssh-addr 127.0.0.1:0 --pg-addr 127.0.0.1:0 --config \$TMP/vigil.yaml   # pg: {allow_plaintext_loopback: true} -> pg $VIGIL_PG
  DB_PW=\$APP_PW vigil target add db1 --pg 127.0.0.1:$PG_PORT --database app --login app --password-env DB_PW --tls disable
  TOKEN=\$(vigil token issue --user bench --grant db1:app:query --ttl 2h)
EOF
printf '  %s\n' "${COMMANDS[@]}"
