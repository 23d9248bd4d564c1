#!/usr/bin/env bash
# Runs the whole service on this machine and shows it working:
#   1. installs and starts the real services (deploy/services.sh: PostgreSQL,
#      RabbitMQ, an NFS server, an XFS reflink pool, Keystone),
#   2. builds the three processes (Release),
#   3. starts a VolumeAgent, two BackupAgents and the Api in the background, and a
#      Prometheus that scrapes them (deploy/services.sh start-prometheus)
#      (logs in .state/logs/, PID files in .state/run/),
#   4. runs deploy/demo.sh against the Api,
#   5. keeps everything running until Ctrl-C, then stops the four processes and
#      the services this script started (services that were already running stay up).
#
# Usage: deploy/run.sh            as above; Ctrl-C stops
#        deploy/run.sh --no-wait  steps 1-4, then exit and leave everything running
#        deploy/run.sh --no-demo  steps 1-3 and 5 (no demo)
#        deploy/run.sh --hosts N [--zones Z]
#                                 N simulated storage hosts (default 1: the single host above),
#                                 host-a, host-b, ... on 127.0.0.11, 127.0.0.12, ..., each with its
#                                 own XFS reflink pool image, VolumeAgent and VB_AGENTS_PER_HOST
#                                 BackupAgents (default 1), spread round-robin over Z zones
#                                 (zone-1 ...; "nova" when Z is 1); the demo then also shows a
#                                 backup and a restore across hosts (deploy/demo.sh --cross-host)
#        deploy/run.sh stop       stops everything a run.sh started (from any terminal)
#        deploy/run.sh status     the processes and the services
#        deploy/run.sh rotate-key stops the processes, re-wraps every container's data key under a
#                                 new master key (no chunk is rewritten) and puts the new key in place
#        deploy/run.sh agents stop|start HOST
#                                 stops or starts the BackupAgents of one simulated host (the demo uses it)
#
# Ports (loopback only): Api 8776 (VB_API_PORT), VolumeAgent 5201 (VB_VOLUME_AGENT_PORT) and its
# metrics 5202 (VB_VOLUME_AGENT_METRICS_PORT), BackupAgents 5211 and 5212 (VB_BACKUP_AGENT_PORT_1,
# VB_BACKUP_AGENT_PORT_2), Prometheus 9090 (VB_PROMETHEUS_PORT).
# Auth: VB_AUTH_MODE=keystone (default: the Api validates Keystone tokens as its service user
# vb-api; the demo logs in with demo-member's password) or noauth (X-Auth-Token user:project).
# Broker: VB_BROKER=cluster runs the programs on the three-node RabbitMQ cluster (deploy/services.sh
# start-cluster; stop it with deploy/services.sh stop-cluster) instead of the single node (the default).
# Telemetry: export Telemetry__Console=true or OTEL_EXPORTER_OTLP_ENDPOINT=... before running;
# the processes inherit the environment.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
SERVICES=$REPO/deploy/services.sh
# The same state folder services.sh uses.
STATE=$(realpath -m "${VB_STATE:-$REPO/.state}")
RUN=$STATE/run
LOGS=$STATE/logs
SERVICES_FILE=$RUN/run-sh.services   # parts of deploy/services.sh that a run.sh started
SELF_PID_FILE=$RUN/run-sh.pid        # the run.sh that waits for Ctrl-C, if any

API_PORT=${VB_API_PORT:-8776}
VOLUME_AGENT_PORT=${VB_VOLUME_AGENT_PORT:-5201}
VOLUME_AGENT_METRICS_PORT=${VB_VOLUME_AGENT_METRICS_PORT:-5202}   # HTTP/1.1 /metrics: the gRPC port is HTTP/2 only
PROMETHEUS_PORT=${VB_PROMETHEUS_PORT:-9090}
BACKUP_AGENT_PORTS=("${VB_BACKUP_AGENT_PORT_1:-5211}" "${VB_BACKUP_AGENT_PORT_2:-5212}")
READY_TIMEOUT=${VB_READY_TIMEOUT:-90}   # seconds each process may take to answer
AUTH_MODE=${VB_AUTH_MODE:-keystone}
case $AUTH_MODE in noauth|keystone) ;; *) echo "run: VB_AUTH_MODE must be noauth or keystone, not $AUTH_MODE" >&2; exit 2 ;; esac

TOPOLOGY_FILE=$RUN/run-sh.topology   # "HOSTS ZONES AGENTS_PER_HOST" of the running deployment
HOSTS=1 ZONES=1 AGENTS_PER_HOST=${VB_AGENTS_PER_HOST:-1}

# Simulated host I (0-based): host-a, host-b, ...; its loopback address; its zone (round-robin).
host_name() { printf 'host-%b' "\\x$(printf %x $((97 + $1)))"; }
host_ip()   { echo "127.0.0.$((11 + $1))"; }
host_zone() { if ((ZONES == 1)); then echo nova; else echo "zone-$(($1 % ZONES + 1))"; fi; }
host_pool() { echo "$STATE/hosts/$(host_name "$1")/pool"; }
agent_port() { echo "${BACKUP_AGENT_PORTS[$1 - 1]:-$((5210 + $1))}"; }

# PROCS: "name project port address", in start order (stopped in reverse).
build_procs() {
  local i k
  PROCS=()
  if ((HOSTS == 1)); then
    PROCS=(
      "volume-agent VolumeAgent $VOLUME_AGENT_PORT 127.0.0.1"
      "backup-agent-1 BackupAgent ${BACKUP_AGENT_PORTS[0]} 127.0.0.1"
      "backup-agent-2 BackupAgent ${BACKUP_AGENT_PORTS[1]} 127.0.0.1"
    )
  else
    for ((i = 0; i < HOSTS; i++)); do PROCS+=("volume-agent-$(host_name $i) VolumeAgent $VOLUME_AGENT_PORT $(host_ip $i)"); done
    for ((i = 0; i < HOSTS; i++)); do
      for ((k = 1; k <= AGENTS_PER_HOST; k++)); do PROCS+=("backup-agent-$(host_name $i)-$k BackupAgent $(agent_port $k) $(host_ip $i)"); done
    done
  fi
  PROCS+=("api Api $API_PORT 127.0.0.1")
}

# The topology of the deployment a run.sh started, for stop, status and agents.
load_topology() {
  [[ -s $TOPOLOGY_FILE ]] && read -r HOSTS ZONES AGENTS_PER_HOST <"$TOPOLOGY_FILE"
  build_procs
}
build_procs

say()  { echo "run: $*"; }
warn() { echo "run: WARNING: $*" >&2; }
die()  { echo "run: ERROR: $*" >&2; exit 1; }

# die_log MESSAGE LOG: fails with the last lines of a process's log.
die_log() {
  echo "run: ERROR: $1" >&2
  if [[ -f $2 ]]; then echo "---- last lines of $2 ----" >&2; tail -n 30 "$2" >&2; echo "----" >&2; fi
  exit 1
}

alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

port_open() { timeout 1 bash -c ">/dev/tcp/${2:-127.0.0.1}/$1" 2>/dev/null; }
port_holder() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n1; }

dll_of() { echo "$REPO/src/$1/bin/Release/net10.0/$1.dll"; }
# The VolumeAgent serves (mutual) TLS only; the others plain HTTP on loopback.
scheme_of() { if [[ $1 == VolumeAgent ]]; then echo https; else echo http; fi; }
pid_file() { echo "$RUN/$1.pid"; }
log_file() { echo "$LOGS/$1.log"; }

# proc_pid NAME PROJECT PORT [ADDRESS]: prints the PID of our running process, or fails.
# The command line must name our dll and port, so a stale PID file whose
# number now belongs to another program is never taken for ours.
proc_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -s $file ]] || return 1
  pid=$(head -n1 "$file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(dll_of "$2") --urls $(scheme_of "$2")://${4:-127.0.0.1}:$3" || return 1
  echo "$pid"
}

# stop_proc NAME PROJECT PORT: SIGTERM (graceful shutdown), SIGKILL after 30 s.
stop_proc() {
  local pid i
  if pid=$(proc_pid "$@"); then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do alive "$pid" || break; sleep 0.5; done
    if alive "$pid"; then
      warn "$1 (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "$1 stopped (pid $pid)"
  fi
  rm -f "$(pid_file "$1")"
}

stop_procs() {
  local i
  for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086 # split "name project port address"
    stop_proc ${PROCS[i]}
  done
}

# Stops the services a run.sh started (recorded by services.sh through VB_STARTED_FILE).
stop_services() {
  local parts=()
  [[ -s $SERVICES_FILE ]] && mapfile -t parts < <(sort -u "$SERVICES_FILE")
  if ((${#parts[@]} == 0)); then
    say "services: none were started by run.sh; leaving them as they are"
  else
    "$SERVICES" stop "${parts[@]}" || warn "stopping services (${parts[*]}) failed; see: $SERVICES status"
  fi
  rm -f "$SERVICES_FILE"
}

# Unmounts the simulated hosts' pools a run.sh mounted.
stop_host_pools() {
  local name
  [[ -s $RUN/run-sh.host-pools ]] || return 0
  while read -r name; do "$SERVICES" stop-host-pool "$name" || warn "could not unmount the pool of $name"; done <"$RUN/run-sh.host-pools"
  rm -f "$RUN/run-sh.host-pools"
}

stop_all() {
  stop_procs
  stop_host_pools
  stop_services
  rm -f "$TOPOLOGY_FILE"
}

# start_proc NAME PROJECT PORT ADDRESS [VAR=VALUE...]: starts the built dll in its own
# session (Ctrl-C in the terminal reaches run.sh, which stops it in order),
# from its output folder (where its appsettings.json is), listening on ADDRESS:PORT.
start_proc() {
  local name=$1 project=$2 port=$3 address=$4 dll log pid
  shift 4
  dll=$(dll_of "$project")
  log=$(log_file "$name")
  [[ -f $dll ]] || die "$dll is missing (did the build run?)"
  if port_open "$port" "$address"; then
    die "port $address:$port (for $name) is taken: $(port_holder "$port"); stop that process or choose another port (see the top of $0)"
  fi
  [[ -f $log ]] && mv -f "$log" "$log.1"   # the previous run's log stays one run
  (
    cd "$(dirname "$dll")"
    exec env "$@" setsid dotnet "$dll" --urls "$(scheme_of "$project")://$address:$port"
  ) >"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
}

# wait_ready NAME PROJECT PORT CHECK...: waits (bounded) until CHECK succeeds;
# fails at once, with the log's tail, when the process exits.
wait_ready() {
  local name=$1 project=$2 port=$3 t0=$SECONDS pid rc
  shift 3
  pid=$(head -n1 "$(pid_file "$name")")
  while ! "$@" >/dev/null 2>&1; do
    if ! alive "$pid"; then
      wait "$pid" 2>/dev/null && rc=0 || rc=$?
      # (bash itself may have reported the death just above, e.g. "Aborted": an unhandled exception.)
      if ((rc > 128)); then rc="$rc, killed by SIG$(kill -l $((rc - 128)))"; fi
      die_log "$name exited early (exit code $rc)" "$(log_file "$name")"
    fi
    ((SECONDS - t0 < READY_TIMEOUT)) || die_log "$name did not become ready on 127.0.0.1:$port within $READY_TIMEOUT s" "$(log_file "$name")"
    sleep 0.5
  done
  say "$name ready on port $port (pid $pid, $((SECONDS - t0)) s, log $(log_file "$name"))"
}

# Readiness: /health/ready answers 200 once the host has started (the Api after
# its migrations; the BackupAgents once their bus is connected). The VolumeAgent
# speaks gRPC over mutual TLS only: asked as the Api asks it, with the Api's certificate.
ready_tls()  { curl -sf --max-time 2 --cacert "$VB_PKI/ca.crt" --cert "$VB_PKI/api.crt" --key "$VB_PKI/api.key" "https://${2:-127.0.0.1}:$1/health/ready"; }
ready_http() { curl -sf --max-time 2 "http://${2:-127.0.0.1}:$1/health/ready"; }

build() {
  local log=$LOGS/build.log t0=$SECONDS project
  say "building VolumeAgent, BackupAgent and Api (Release; log $log)"
  : >"$log"
  for project in VolumeAgent BackupAgent Api; do
    DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 \
      timeout 900 dotnet build "src/$project/$project.csproj" -c Release -nodeReuse:false -v minimal >>"$log" 2>&1 \
      || die_log "dotnet build of src/$project failed" "$log"
  done
  say "build done in $((SECONDS - t0)) s"
}

# shellcheck disable=SC2154 # ConnectionStrings__* and VB_* come from services.sh env
start_everything() {
  # Exports ConnectionStrings__Postgres, VB_RABBITMQ_TLS (the Api's broker user), VB_RABBITMQ_TLS_AGENT (the
  # agents'), VB_PKI (the CA and certificates), VB_NFS_URL, VB_POOL, ...
  eval "$("$SERVICES" env)"
  "$SERVICES" master-key >/dev/null      # the programs refuse to start without it
  local volumes=$VB_POOL/demo repository=$VB_NFS_URL/demo i ca="Tls__CaFile=$VB_PKI/ca.crt"
  if [[ ${VB_BROKER:-single} == cluster ]]; then
    # The three-node cluster instead of the single node: the Api's and the agents' users over AMQPS, as on the single
    # node, and RabbitMq__ClusterNodes__* (the nodes' AMQPS listeners) the programs inherit.
    "$SERVICES" start-cluster
    eval "$("$SERVICES" cluster-env tls)"
  fi

  echo "$HOSTS $ZONES $AGENTS_PER_HOST" >"$TOPOLOGY_FILE"
  if ((HOSTS > 1)); then start_hosts; return; fi
  install -d -m 700 "$volumes"
  start_proc volume-agent VolumeAgent "$VOLUME_AGENT_PORT" 127.0.0.1 \
    "Volumes__PoolPath=$volumes" "Volumes__Zone=nova" "Telemetry__Instance=volume-agent" \
    "$ca" "Tls__CertificateFile=$VB_PKI/volume-agent.crt" "Tls__KeyFile=$VB_PKI/volume-agent.key" \
    "Telemetry__MetricsListener=http://127.0.0.1:$VOLUME_AGENT_METRICS_PORT"
  wait_ready volume-agent VolumeAgent "$VOLUME_AGENT_PORT" ready_tls "$VOLUME_AGENT_PORT"

  for i in 1 2; do
    start_proc "backup-agent-$i" BackupAgent "${BACKUP_AGENT_PORTS[i - 1]}" 127.0.0.1 \
      "ConnectionStrings__RabbitMq=$VB_RABBITMQ_TLS_AGENT" \
      "$ca" "Tls__CertificateFile=$VB_PKI/backup-agent-nova.crt" "Tls__KeyFile=$VB_PKI/backup-agent-nova.key" \
      "Agent__Host=host-a" "Agent__Zone=nova" "Agent__PoolPath=$volumes" \
      "Agent__VolumeAgentAddress=https://127.0.0.1:$VOLUME_AGENT_PORT" \
      "Repository__Target=$repository" \
      "Encryption__MasterKeyFile=$VB_MASTER_KEY_FILE" \
      "Telemetry__Instance=backup-agent-$i"
  done
  for i in 1 2; do
    wait_ready "backup-agent-$i" BackupAgent "${BACKUP_AGENT_PORTS[i - 1]}" ready_http "${BACKUP_AGENT_PORTS[i - 1]}"
  done

  start_api "Storage__Hosts__0__Name=host-a" "Storage__Hosts__0__Zone=nova" \
    "Storage__Hosts__0__Address=https://127.0.0.1:$VOLUME_AGENT_PORT"
}

# start_api STORAGE_SETTING...: the Api, with its list of storage hosts.
start_api() {
  start_proc api Api "$API_PORT" 127.0.0.1 \
    "ConnectionStrings__Postgres=$ConnectionStrings__Postgres" \
    "ConnectionStrings__RabbitMq=$VB_RABBITMQ_TLS" \
    "$ca" "Tls__CertificateFile=$VB_PKI/api.crt" "Tls__KeyFile=$VB_PKI/api.key" \
    "Auth__Mode=$AUTH_MODE" \
    "Auth__Keystone__Url=$VB_KEYSTONE_URL" "Auth__Keystone__Username=vb-api" \
    "Auth__Keystone__PasswordFile=$VB_KEYSTONE_SECRETS/vb-api" \
    "Encryption__MasterKeyFile=$VB_MASTER_KEY_FILE" \
    "$@" "Telemetry__Instance=api"
  wait_ready api Api "$API_PORT" ready_http "$API_PORT"
}

# --hosts N: each simulated host's pool, VolumeAgent and BackupAgents, then the Api knowing them all.
start_hosts() {
  local i h ip storage=() ca="Tls__CaFile=$VB_PKI/ca.crt"
  for ((i = 0; i < HOSTS; i++)); do
    h=$(host_name $i) ip=$(host_ip $i)
    "$SERVICES" start-host-pool "$h" "${VB_HOST_POOL_SIZE:-10G}"
    grep -qx "$h" "$RUN/run-sh.host-pools" 2>/dev/null || echo "$h" >>"$RUN/run-sh.host-pools"
    # Each VolumeAgent's certificate names its own address; its BackupAgents' names their zone.
    "$REPO/deploy/pki.sh" issue "volume-agent-$h" volume-agent "" "IP:$ip" >/dev/null
    "$REPO/deploy/pki.sh" issue "backup-agent-$(host_zone $i)" backup-agent "$(host_zone $i)" >/dev/null
    start_proc "volume-agent-$h" VolumeAgent "$VOLUME_AGENT_PORT" "$ip" \
      "Volumes__PoolPath=$(host_pool $i)" "Volumes__Zone=$(host_zone $i)" "Telemetry__Instance=volume-agent-$h" \
      "$ca" "Tls__CertificateFile=$VB_PKI/volume-agent-$h.crt" "Tls__KeyFile=$VB_PKI/volume-agent-$h.key" \
      "Telemetry__MetricsListener=http://$ip:$VOLUME_AGENT_METRICS_PORT"
    storage+=("Storage__Hosts__${i}__Name=$h" "Storage__Hosts__${i}__Zone=$(host_zone $i)" "Storage__Hosts__${i}__Address=https://$ip:$VOLUME_AGENT_PORT")
  done
  for ((i = 0; i < HOSTS; i++)); do
    wait_ready "volume-agent-$(host_name $i)" VolumeAgent "$VOLUME_AGENT_PORT" ready_tls "$VOLUME_AGENT_PORT" "$(host_ip $i)"
  done
  # The Api first: it declares every host's command queues, which the agents may read but not create.
  start_api "${storage[@]}"
  for ((i = 0; i < HOSTS; i++)); do start_agents_of $i; done
}

# start_agents_of I: host I's BackupAgents, each knowing the VolumeAgents of its zone's other hosts.
start_agents_of() {
  local i=$1 j k h ip zone peers=()
  h=$(host_name "$i") ip=$(host_ip "$i") zone=$(host_zone "$i")
  for ((j = 0; j < HOSTS; j++)); do
    if ((j != i)) && [[ $(host_zone $j) == "$zone" ]]; then
      peers+=("Agent__VolumeAgents__$(host_name $j)=https://$(host_ip $j):$VOLUME_AGENT_PORT")
    fi
  done
  for ((k = 1; k <= AGENTS_PER_HOST; k++)); do
    start_proc "backup-agent-$h-$k" BackupAgent "$(agent_port $k)" "$ip" \
      "ConnectionStrings__RabbitMq=$VB_RABBITMQ_TLS_AGENT" \
      "Tls__CaFile=$VB_PKI/ca.crt" "Tls__CertificateFile=$VB_PKI/backup-agent-$zone.crt" "Tls__KeyFile=$VB_PKI/backup-agent-$zone.key" \
      "Agent__Host=$h" "Agent__Name=$h-agent-$k" "Agent__Zone=$zone" "Agent__PoolPath=$(host_pool "$i")" \
      "Agent__VolumeAgentAddress=https://$ip:$VOLUME_AGENT_PORT" "${peers[@]}" \
      "Repository__Target=$VB_NFS_URL/demo" "Encryption__MasterKeyFile=$VB_MASTER_KEY_FILE" \
      "Telemetry__Instance=backup-agent-$h-$k"
  done
  for ((k = 1; k <= AGENTS_PER_HOST; k++)); do
    wait_ready "backup-agent-$h-$k" BackupAgent "$(agent_port $k)" ready_http "$(agent_port $k)" "$ip"
  done
}

# agents stop|start HOST: one simulated host's BackupAgents (deploy/demo.sh --cross-host stops a host's agents).
cmd_agents() {
  local action=${1:-} host=${2:-} i k
  load_topology
  for ((i = 0; i < HOSTS; i++)); do [[ $(host_name $i) == "$host" ]] && break; done
  ((HOSTS > 1 && i < HOSTS)) || die "usage: $0 agents stop|start HOST, HOST one of the hosts of a run.sh --hosts N"
  case $action in
    stop)  for ((k = 1; k <= AGENTS_PER_HOST; k++)); do stop_proc "backup-agent-$host-$k" BackupAgent "$(agent_port $k)" "$(host_ip $i)"; done ;;
    start) eval "$("$SERVICES" env)"; start_agents_of "$i" ;;
    *)     die "usage: $0 agents stop|start HOST" ;;
  esac
}

# A run.sh that is waiting for Ctrl-C, if one is.
waiting_run_sh() {
  local pid
  [[ -s $SELF_PID_FILE ]] || return 1
  pid=$(head -n1 "$SELF_PID_FILE")
  [[ $pid =~ ^[0-9]+$ && $pid != "$$" ]] && alive "$pid" \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'deploy/run.sh' || return 1
  echo "$pid"
}

cmd_stop() {
  local pid i
  if pid=$(waiting_run_sh); then
    # It stops everything itself, as on Ctrl-C.
    say "asking the running deploy/run.sh (pid $pid) to stop"
    kill -TERM "$pid"
    for ((i = 0; i < 240; i++)); do alive "$pid" || break; sleep 0.5; done
    alive "$pid" && warn "deploy/run.sh (pid $pid) still runs after 120 s; stopping what is left"
  fi
  rm -f "$SELF_PID_FILE"
  load_topology
  stop_all
}

cmd_status() {
  local entry name project port pid rc=0
  load_topology
  for entry in "${PROCS[@]}"; do
    read -r name project port address <<<"$entry"
    if pid=$(proc_pid "$name" "$project" "$port" "$address"); then
      printf '%-24s running (pid %s, %s://%s:%s)\n' "$name" "$pid" "$(scheme_of "$project")" "$address" "$port"
    else
      printf '%-24s stopped\n' "$name"; rc=1
    fi
  done
  "$SERVICES" status || rc=1
  if [[ -s $SERVICES_FILE ]]; then echo "(started by run.sh, stopped by 'deploy/run.sh stop': $(sort -u "$SERVICES_FILE" | tr '\n' ' '))"; fi
  return $rc
}

# A new master key: every container's data key re-wrapped under it (BackupAgent rotate-master-key; chunks and manifests
# stay as they are), then it replaces the old one, which is kept aside until the operator deletes it. The programs are
# stopped first, so that none writes a new container under the old key meanwhile; start them again with run.sh.
cmd_rotate_key() {
  eval "$("$SERVICES" env)"
  local current new retired
  current=$("$SERVICES" master-key)
  new=$current.new
  retired=$current.retired-$(date -u +%Y%m%dT%H%M%SZ)
  stop_procs
  [[ -f $(dll_of BackupAgent) ]] || build
  (umask 077; head -c 32 /dev/urandom >"$new")
  if ! env "Repository__Target=$VB_NFS_URL/demo" "Encryption__MasterKeyFile=$current" \
      dotnet "$(dll_of BackupAgent)" rotate-master-key --new-key-file "$new"; then
    rm -f "$new"   # the rotation left every old wrap in place: the current key still opens every container
    die "rotation failed (see above): the current master key stays in use"
  fi
  mv "$current" "$retired"
  mv "$new" "$current"
  say "the new master key is $current; the old one is kept as $retired until you delete it"
  say "start the programs again (deploy/run.sh); records exported before must be exported again"
}

# ------------------------------------------------------------------- main ---

wait_mode=wait demo=yes
case ${1:-} in
  stop)   cmd_stop; exit ;;
  status) cmd_status; exit ;;
  rotate-key) cmd_rotate_key; exit ;;
  agents) shift; cmd_agents "$@"; exit ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
while (($# > 0)); do
  case $1 in
    --no-wait) wait_mode=no-wait ;;
    --no-demo) demo=no ;;
    --hosts) HOSTS=${2:-}; shift ;;
    --zones) ZONES=${2:-}; shift ;;
    *) die "unknown argument: $1 (usage: $0 [--no-wait] [--no-demo] [--hosts N [--zones Z]] | stop | status)" ;;
  esac
  shift
done
[[ $HOSTS =~ ^[1-9][0-9]*$ && HOSTS -le 26 ]] || die "--hosts takes 1 to 26"
[[ $ZONES =~ ^[1-9][0-9]*$ && ZONES -le HOSTS ]] || die "--zones takes 1 to the number of hosts ($HOSTS)"
[[ $AGENTS_PER_HOST =~ ^[1-9]$ ]] || die "VB_AGENTS_PER_HOST takes 1 to 9"

((EUID == 0)) || die "run as root: deploy/services.sh installs packages, mounts the pool and starts servers"
command -v dotnet >/dev/null || die "dotnet not found: install the .NET 10 SDK"
if pid=$(waiting_run_sh); then
  die "deploy/run.sh already runs (pid $pid); stop it first: deploy/run.sh stop"
fi
install -d -m 755 "$STATE" "$RUN" "$LOGS"

# Whatever happens from here on, a failed run stops what it started; a run that
# waits stops everything on Ctrl-C; --no-wait leaves everything up on success.
on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ $wait_mode == wait || $rc != 0 ]]; then
    echo
    ((rc == 0 || rc >= 128)) || say "failed (exit code $rc); logs are in $LOGS"
    say "stopping"
    stop_all
    rm -f "$SELF_PID_FILE"
    say "stopped"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
[[ $wait_mode == wait ]] && echo $$ >"$SELF_PID_FILE"

t_start=$SECONDS
# Processes left running by an earlier run (--no-wait) are restarted on the new build, whatever its topology.
wanted=("$HOSTS" "$ZONES" "$AGENTS_PER_HOST")
load_topology
stop_procs
read -r HOSTS ZONES AGENTS_PER_HOST <<<"${wanted[*]}"
build_procs

export VB_STARTED_FILE=$SERVICES_FILE
"$SERVICES" install
"$SERVICES" start
unset VB_STARTED_FILE

build
start_everything
say "all ${#PROCS[@]} processes up $((SECONDS - t_start)) s after start"
# Prometheus scrapes them all; a run that cannot start it goes on without it.
targets=()
for entry in "${PROCS[@]}"; do
  read -r name project port address <<<"$entry"
  [[ $project == VolumeAgent ]] && port=$VOLUME_AGENT_METRICS_PORT
  targets+=("$address:$port")
done
VB_STARTED_FILE=$SERVICES_FILE VB_PROMETHEUS_PORT=$PROMETHEUS_PORT VB_PROMETHEUS_TARGETS="${targets[*]}" \
  "$SERVICES" start-prometheus || warn "Prometheus did not start; the programs still serve /metrics"

if [[ $demo == yes ]]; then
  echo
  demo_env=(VB_API="http://127.0.0.1:$API_PORT" VB_VOLUME_DIR="$VB_POOL/demo" VB_AUTH_MODE="$AUTH_MODE")
  if ((HOSTS > 1)); then
    pools=()
    for ((i = 0; i < HOSTS; i++)); do pools+=("$(host_name $i)=$(host_pool $i)"); done
    demo_env+=(VB_HOST_POOLS="${pools[*]}" VB_AGENTS_CTL="$REPO/deploy/run.sh agents" VB_LOGS="$LOGS")
  fi
  env "${demo_env[@]}" "$REPO/deploy/demo.sh" || die "the demo failed (exit code $?); logs are in $LOGS"
  if ((HOSTS > 1)); then
    echo
    env "${demo_env[@]}" "$REPO/deploy/demo.sh" --cross-host || die "the cross-host demo failed (exit code $?); logs are in $LOGS"
  fi
  echo
fi

# The VolumeAgents and BackupAgents of this run, and where their metrics are.
topology_summary() {
  local i h ip k agents
  if ((HOSTS == 1)); then
    echo "  VolumeAgent       https://127.0.0.1:$VOLUME_AGENT_PORT (gRPC, mutual TLS: certificates in $VB_PKI), volumes in $VB_POOL/demo"
    echo "  BackupAgents      http://127.0.0.1:${BACKUP_AGENT_PORTS[0]} and :${BACKUP_AGENT_PORTS[1]}, repository $VB_NFS_URL/demo"
    echo "  Metrics           http://127.0.0.1:$API_PORT/metrics, :${BACKUP_AGENT_PORTS[0]}/metrics, :${BACKUP_AGENT_PORTS[1]}/metrics, :$VOLUME_AGENT_METRICS_PORT/metrics"
    return
  fi
  for ((i = 0; i < HOSTS; i++)); do
    h=$(host_name $i) ip=$(host_ip $i) agents=""
    for ((k = 1; k <= AGENTS_PER_HOST; k++)); do agents+="${agents:+, }http://$ip:$(agent_port $k)"; done
    printf '  %-17s %s\n' "$h ($(host_zone $i))" "VolumeAgent https://$ip:$VOLUME_AGENT_PORT (metrics :$VOLUME_AGENT_METRICS_PORT), volumes in $(host_pool $i); BackupAgents $agents"
  done
  echo "  Repository        $VB_NFS_URL/demo (certificates in $VB_PKI)"
  echo "  Metrics           http://127.0.0.1:$API_PORT/metrics and /metrics of every agent above"
}

if [[ $AUTH_MODE == keystone ]]; then
  DASHBOARD_SIGN_IN="an admin's Keystone token: OS_USERNAME=admin OS_PROJECT_NAME=admin OS_PASSWORD=\$(cat $VB_KEYSTONE_SECRETS/admin) openstack token issue"
else
  DASHBOARD_SIGN_IN="an admin's token, e.g. admin:demo"
fi
cat <<EOF
The service is running:
$(topology_summary)
  Dashboard         http://127.0.0.1:$API_PORT/dashboard (sign in with $DASHBOARD_SIGN_IN)
  Prometheus        http://127.0.0.1:$PROMETHEUS_PORT (try: sum(volumebackup_backups_total) by (volumebackup_outcome))
  Logs              $LOGS/
EOF
if [[ $AUTH_MODE == keystone ]]; then cat <<EOF
  Api (Cinder v3)   http://127.0.0.1:$API_PORT/v3/<project id>, Keystone tokens from $VB_KEYSTONE_URL
  Try               export OS_AUTH_URL=$VB_KEYSTONE_URL OS_USERNAME=demo-member OS_PROJECT_NAME=demo \\
                           OS_USER_DOMAIN_ID=default OS_PROJECT_DOMAIN_ID=default OS_IDENTITY_API_VERSION=3 \\
                           OS_PASSWORD=\$(cat $VB_KEYSTONE_SECRETS/demo-member)
                    openstack volume backup list; cinder backup-list
EOF
else cat <<EOF
  Api (Cinder v3)   http://127.0.0.1:$API_PORT/v3/<project>, header X-Auth-Token: <user>:<project>
  Try               curl -s -H 'X-Auth-Token: demo:demo' http://127.0.0.1:$API_PORT/v3/demo/backups/detail | jq
                    cinder --os-auth-type noauth --os-user-id demo --os-project-id demo \\
                           --os-endpoint http://127.0.0.1:$API_PORT/v3/demo backup-list
EOF
fi

if [[ $wait_mode == no-wait ]]; then
  echo "Left running. Stop everything with: deploy/run.sh stop"
  exit 0
fi

echo "Press Ctrl-C to stop (or run 'deploy/run.sh stop' in another terminal)."
# Watch the processes: one that dies ends the run, with its log.
while true; do
  for entry in "${PROCS[@]}"; do
    read -r name project port address <<<"$entry"
    proc_pid "$name" "$project" "$port" "$address" >/dev/null || die_log "$name exited unexpectedly" "$(log_file "$name")"
  done
  sleep 2 &
  wait $! || true
done
