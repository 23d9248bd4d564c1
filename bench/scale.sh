#!/usr/bin/env bash
# Scale, measured: see bench/README.md ("Scale").
#
#   bench/scale.sh
#
# Three simulated storage hosts in two zones (scale-a and scale-c in zone-1, scale-b in zone-2; loopback 127.0.0.21-23),
# each with its own XFS reflink pool image (deploy/services.sh start-host-pool) and VolumeAgent, one Api (noauth) on a
# fresh database and a fresh RabbitMQ virtual host, and BENCH_VOLUMES volumes made through the Api (half per zone,
# placed by capacity), each holding BENCH_DATA_MIB MiB of data of its own. Then, for each agent count of BENCH_AGENTS
# (BackupAgents per zone, spread over the zone's hosts), it starts those agents and, through the REST API, asks for one
# backup of every volume within a second, polls GET /backups/detail every BENCH_POLL_MS ms while they run, and prints
# how many ended available, in error (with fail_reason), lost or stuck (bounded by BENCH_TIMEOUT), the time to the last
# one, the throughput, the listing's latency, the CPU seconds of the agents, ganesha, PostgreSQL, RabbitMQ, the Api and
# the VolumeAgents, the agents' peak memory and running jobs, and the queues' depth. After the last count it restores a
# sample of BENCH_SAMPLE backups into new volumes and checks their SHA-256 against the sources'. Each run's backups are
# deleted through the Api and its repository folder removed before the next.
#
# Uses the PostgreSQL, RabbitMQ, NFS server and PKI already running (ENV_FROM: a deploy/services.sh to take `env` from)
# and starts none of them; it removes its database, virtual host, pools, share folder and processes at the end.
# Ports: chosen free at start (never run.sh's). Needs root (loop mounts) and the .NET 10 SDK.
#
# Environment: BENCH_VOLUMES=100  BENCH_SIZE_GIB=1  BENCH_DATA_MIB=128  BENCH_AGENTS="1 2 4"  BENCH_SAMPLE=10
#              BENCH_TIMEOUT=900  BENCH_POLL_MS=50  BENCH_SEED=42  BENCH_POOL_SIZE=64G  BENCH_NO_BUILD=1
#              BENCH_AGENT_NICE=10 (the BackupAgents' nice value: below the Api, PostgreSQL and RabbitMQ, as batch work on a
#              machine shared with the control plane runs; in a deployment the agents have the storage hosts' cores.
#              0 puts them at everyone's priority)
#              ENV_FROM=deploy/services.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
ENV_FROM=${ENV_FROM:-deploy/services.sh}
eval "$($ENV_FROM env)"
VOLUMES=${BENCH_VOLUMES:-100} SIZE_GIB=${BENCH_SIZE_GIB:-1} DATA_MIB=${BENCH_DATA_MIB:-128}
AGENTS=${BENCH_AGENTS:-"1 2 4"} SAMPLE=${BENCH_SAMPLE:-10} TIMEOUT=${BENCH_TIMEOUT:-900} POLL_MS=${BENCH_POLL_MS:-50}
SEED=${BENCH_SEED:-42} POOL_SIZE=${BENCH_POOL_SIZE:-64G} AGENT_NICE=${BENCH_AGENT_NICE:-10}
OUT=$REPO/.state/bench
RUN=scale-$$-$(date +%s)
LOGS=$OUT/results/$RUN
LOG=$OUT/results/$RUN.log
mkdir -p "$OUT/build" "$LOGS"
say() { echo "scale: $*" >&2; }
die() { echo "scale: ERROR: $*" >&2; exit 1; }
((EUID == 0)) || die "run as root: the hosts' pools are loop-mounted XFS images"

HOSTS=(scale-a scale-b scale-c)
ZONE_OF=([0]=zone-1 [1]=zone-2 [2]=zone-1)
ip_of() { echo "127.0.0.$((21 + $1))"; }
pool_of() { echo "$VB_STATE/hosts/${HOSTS[$1]}/pool"; }
free_port() { python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"; }

# The repository of a run costs about 0.6 of its data on the share (random extents do not compress); the volumes share
# one copy of the data per pool (reflinks), plus 4 KiB per chunk of their own.
need_gib=$(((VOLUMES * DATA_MIB * 6 / 10 + VOLUMES * DATA_MIB / 256 + 3 * DATA_MIB) / 1024 + 2))
free_gib=$(($(df --output=avail -k "$VB_NFS_EXPORT" | tail -n1) / 1024 / 1024))
((free_gib >= need_gib)) || die "the share's disk has $free_gib GiB free; a run needs about $need_gib GiB (lower BENCH_VOLUMES or BENCH_DATA_MIB)"

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  say "building bench/Bench.csproj (with the agents) and src/Api (Release)"
  for project in bench/Bench.csproj src/Api/Api.csproj; do
    dotnet build "$project" -c Release -nodeReuse:false --artifacts-path "$OUT/build" -v q -nologo >"$OUT/build.log" 2>&1 \
      || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
  done
fi
dll() { echo "$OUT/build/bin/$1/release/$1.dll"; }
BENCH=$(dll Bench)
MASTER_KEY=$OUT/master.key   # the bench's own, as bench/run.sh makes it
[[ -s $MASTER_KEY ]] || (umask 077; head -c 32 /dev/urandom >"$MASTER_KEY")

DB=${RUN//-/_}
VHOST=$RUN
declare -A PID=()
pools_started=()
cleanup() {
  local rc=$? name
  trap - EXIT
  for name in "${!PID[@]}"; do kill "${PID[$name]}" 2>/dev/null || true; done
  for name in "${!PID[@]}"; do wait "${PID[$name]}" 2>/dev/null || true; done
  for name in "${pools_started[@]}"; do
    "$VB_SERVICES" stop-host-pool "$name" >/dev/null || say "could not unmount the pool of $name"
    rm -f "$VB_STATE/hosts/$name/pool.img"; rmdir "$VB_STATE/hosts/$name/pool" "$VB_STATE/hosts/$name" 2>/dev/null || true
  done
  rm -rf "${VB_NFS_EXPORT:?}/$RUN"
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || say "could not drop database $DB"
  "$VB_SERVICES" delete-vhost "$VHOST" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME DLL URL VAR=VALUE...: a program from its output folder (its appsettings.json), logging to $LOGS/NAME.log;
# BackupAgents at the nice value BENCH_AGENT_NICE (nice execs the program: the PID stays the program's).
start() {
  local name=$1 dll=$2 url=$3 nice=0
  shift 3
  [[ $name == agent-* ]] && nice=$AGENT_NICE
  (cd "$(dirname "$dll")" && exec nice -n "$nice" env "$@" "Telemetry__Instance=$name" dotnet "$dll" --urls "$url") >"$LOGS/$name.log" 2>&1 &
  PID[$name]=$!
}
# ready NAME CURL-ARGS...: waits (at most 120 s) for /health/ready.
ready() {
  local name=$1 t0=$SECONDS
  shift
  until curl -sf --max-time 2 "$@" >/dev/null 2>&1; do
    kill -0 "${PID[$name]}" 2>/dev/null || { tail -n 20 "$LOGS/$name.log" >&2; die "$name exited"; }
    ((SECONDS - t0 < 120)) || { tail -n 20 "$LOGS/$name.log" >&2; die "$name not ready within 120 s"; }
    sleep 0.5
  done
}
stop() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }

say "run $RUN: $VOLUMES volumes of $SIZE_GIB GiB holding $DATA_MIB MiB of data each, BackupAgents per zone: $AGENTS, nice $AGENT_NICE (load $(cut -d' ' -f1-3 /proc/loadavg))"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
"$VB_SERVICES" vhost "$VHOST"
TLS=("Tls__CaFile=$VB_PKI/ca.crt")
VA_PORT=() STORAGE=()
for i in 0 1 2; do
  h=${HOSTS[$i]} ip=$(ip_of $i)
  pools_started+=("$h")
  "$VB_SERVICES" start-host-pool "$h" "$POOL_SIZE" >&2
  VB_PKI=$VB_PKI "$REPO/deploy/pki.sh" issue "bench-$h" volume-agent "" "IP:$ip" >&2
  VB_PKI=$VB_PKI "$REPO/deploy/pki.sh" issue "bench-backup-agent-${ZONE_OF[$i]}" backup-agent "${ZONE_OF[$i]}" >&2
  VA_PORT[i]=$(free_port "$ip")
  start "volume-agent-$h" "$(dll VolumeAgent)" "https://$ip:${VA_PORT[i]}" "${TLS[@]}" \
    "Tls__CertificateFile=$VB_PKI/bench-$h.crt" "Tls__KeyFile=$VB_PKI/bench-$h.key" \
    "Volumes__PoolPath=$(pool_of $i)" "Volumes__Zone=${ZONE_OF[$i]}"
  STORAGE+=("Storage__Hosts__${i}__Name=$h" "Storage__Hosts__${i}__Zone=${ZONE_OF[$i]}" "Storage__Hosts__${i}__Address=https://$ip:${VA_PORT[i]}")
done
for i in 0 1 2; do
  ready "volume-agent-${HOSTS[$i]}" --cacert "$VB_PKI/ca.crt" --cert "$VB_PKI/api.crt" --key "$VB_PKI/api.key" "https://$(ip_of $i):${VA_PORT[i]}/health/ready"
done
API_PORT=$(free_port 127.0.0.1)
API=http://127.0.0.1:$API_PORT
start api "$(dll Api)" "$API" "${TLS[@]}" "Tls__CertificateFile=$VB_PKI/api.crt" "Tls__KeyFile=$VB_PKI/api.key" \
  "ConnectionStrings__Postgres=${ConnectionStrings__Postgres/Database=volumebackup/Database=$DB}" \
  "ConnectionStrings__RabbitMq=${VB_RABBITMQ_TLS}$VHOST" "Auth__Mode=noauth" "Encryption__MasterKeyFile=$MASTER_KEY" "${STORAGE[@]}"
ready api "$API/health/ready"
say "3 VolumeAgents and the Api up (Api $API, logs $LOGS)"

export SCALE_API=$API SCALE_PROJECT=scale SCALE_VOLUMES=$VOLUMES SCALE_SIZE_GIB=$SIZE_GIB SCALE_DATA_MIB=$DATA_MIB SCALE_SAMPLE=$SAMPLE
export SCALE_SEED=$SEED SCALE_ZONES=zone-1,zone-2 SCALE_TIMEOUT=$TIMEOUT SCALE_POLL_MS=$POLL_MS
export SCALE_POOLS="${HOSTS[0]}=$(pool_of 0),${HOSTS[1]}=$(pool_of 1),${HOSTS[2]}=$(pool_of 2)"
export SCALE_AMQP=${VB_RABBITMQ_AGENT}$VHOST   # the queues' depth, read with the agents' user (passive declares)
queues=(create-backup-zone-1 create-backup-zone-2)
for i in 0 1 2; do queues+=("create-backup-${ZONE_OF[$i]}.${HOSTS[$i]}"); done
export SCALE_QUEUES=$(IFS=,; echo "${queues[*]}")
dotnet "$BENCH" scale-volumes "$LOGS/volumes.tsv"

# The shared services' process trees (their CPU is everyone's on this machine, not only this run's).
ganesha=$(head -n1 "$VB_STATE/run/ganesha.pid") postgres=$(head -n1 "$VB_STATE/pg/postmaster.pid") rabbitmq=$(head -n1 "$VB_STATE/run/rabbitmq.pid")
set -- $AGENTS
last=${!#}
for per_zone in $AGENTS; do
  total=$((2 * per_zone))
  agent_names=() agent_specs=()
  for ((k = 0; k < total; k++)); do
    # Zone-1's agents alternate over scale-a and scale-c, zone-2's all run on scale-b.
    if ((k % 2 == 0)); then i=$(((k / 2) % 2 == 0 ? 0 : 2)); else i=1; fi
    h=${HOSTS[$i]} ip=$(ip_of $i) zone=${ZONE_OF[$i]} port=$(free_port "$(ip_of $i)")
    name=agent-$per_zone-$k-$h
    peers=()
    for j in 0 1 2; do
      if ((j != i)) && [[ ${ZONE_OF[$j]} == "$zone" ]]; then peers+=("Agent__VolumeAgents__${HOSTS[$j]}=https://$(ip_of $j):${VA_PORT[j]}"); fi
    done
    start "$name" "$(dll BackupAgent)" "http://$ip:$port" "${TLS[@]}" \
      "Tls__CertificateFile=$VB_PKI/bench-backup-agent-$zone.crt" "Tls__KeyFile=$VB_PKI/bench-backup-agent-$zone.key" \
      "ConnectionStrings__RabbitMq=${VB_RABBITMQ_TLS_AGENT}$VHOST" \
      "Agent__Host=$h" "Agent__Name=$name" "Agent__Zone=$zone" "Agent__PoolPath=$(pool_of $i)" \
      "Agent__VolumeAgentAddress=https://$ip:${VA_PORT[i]}" "${peers[@]}" \
      "Repository__Target=$VB_NFS_URL/$RUN/agents-$per_zone" "Encryption__MasterKeyFile=$MASTER_KEY"
    agent_names+=("$name")
    agent_specs+=("$name=${PID[$name]}=http://$ip:$port/metrics")
    ready "$name" "http://$ip:$port/health/ready"
  done
  # Every agent's heartbeat has reached the Api (it lists it up), so none joins late.
  t0=$SECONDS
  until [[ $(curl -sf -H "X-Auth-Token: admin:scale" "$API/v3/scale/os-services?binary=cinder-backup" \
             | jq '[.services[] | select(.state == "up" and (.host | startswith("agent-'"$per_zone"'-")))] | length') == "$total" ]]; do
    ((SECONDS - t0 < 60)) || die "the Api does not list $total agents up within 60 s"
    sleep 0.5
  done
  va_pids=${PID[volume-agent-scale-a]},${PID[volume-agent-scale-b]},${PID[volume-agent-scale-c]}
  agent_pids=$(for n in "${agent_names[@]}"; do printf '%s,' "${PID[$n]}"; done)
  say "$total BackupAgents ($per_zone per zone) up; $VOLUMES backups (load $(cut -d' ' -f1-3 /proc/loadavg))"
  SCALE_PIDS="agents=$agent_pids;ganesha=$ganesha;postgres=$postgres;rabbitmq=$rabbitmq;api=${PID[api]};volume-agents=$va_pids" \
  SCALE_AGENTS=$(IFS=,; echo "${agent_specs[*]}") SCALE_RESTORE=$([[ $per_zone == "$last" ]] && echo 1 || echo 0) \
    dotnet "$BENCH" scale-run "$LOGS/volumes.tsv" "$total" | tee -a "$LOG"
  for n in "${agent_names[@]}"; do stop "$n"; done
  rm -rf "${VB_NFS_EXPORT:?}/$RUN/agents-$per_zone"
done

# The table: one row per agent count.
awk -v data="$DATA_MIB" '
  { delete f; for (i = 2; i <= NF; i++) if (split($i, kv, "=") == 2) f[kv[1]] = kv[2]; l = f["label"] }
  $1 == "RESULT"  { order[++n] = l; r[l] = f["available"] "/" f["backups"] " ok, " f["error"] " err, " f["lost"] " lost, " f["stuck"] " stuck"
                    last[l] = f["last_s"]; mibs[l] = f["mib_s"]; pm[l] = f["per_min"]; load[l] = f["load"] }
  $1 == "SUBMIT"  { submit[l] = f["seconds"] }
  $1 == "LATENCY" { lat[l] = f["p50_ms"] "/" f["p99_ms"] "/" f["max_ms"] }
  $1 == "CPU"     { cpu[l] = sprintf("%5.0f %7.0f %8.0f %8.0f %5.0f %5.0f %7.0f", f["agents"], f["ganesha"], f["postgres"], f["rabbitmq"], f["api"], f["volume-agents"], f["machine"]) }
  $1 == "AGENT"   { hwm[l] = hwm[l] (hwm[l] == "" ? "" : " ") f["hwm_mib"]; jobs[l] = (f["max_jobs"] > jobs[l] ? f["max_jobs"] : jobs[l]) }
  $1 == "QUEUED"  { q[l] = f["max_ready"] }
  END {
    printf "\n%-6s %-34s %6s %7s %6s %7s %16s | %5s %7s %8s %8s %5s %5s %7s | %6s %4s %s\n", "agents", "outcome", "submit", "last s", "MiB/s", "bkp/min",
      "detail p50/99/max", "agent", "ganesha", "postgres", "rabbitmq", "api", "vols", "machine", "queued", "jobs", "peak RSS MiB per agent"
    for (k = 1; k <= n; k++) { l = order[k]
      printf "%-6s %-34s %6.2f %7.1f %6.1f %7.1f %16s | %s | %6s %4s %s\n", l, r[l], submit[l], last[l], mibs[l], pm[l], lat[l], cpu[l], q[l], jobs[l], hwm[l] }
    print "(CPU in seconds over the run; ganesha, postgres and rabbitmq are shared with whatever else runs on this machine; machine = all busy CPU-s)"
  }' "$LOG" | tee -a "$LOG"
grep -E '^(ERROR|UNFINISHED|REJECTED|RESTORES|DELETES)' "$LOG" >&2 || true
say "nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); results in $LOG, process logs in $LOGS"
