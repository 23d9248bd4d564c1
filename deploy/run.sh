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
#        deploy/run.sh stop       stops everything a run.sh started (from any terminal)
#        deploy/run.sh status     the four processes and the services
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

# name project port, in start order (stopped in reverse).
PROCS=(
  "volume-agent VolumeAgent $VOLUME_AGENT_PORT"
  "backup-agent-1 BackupAgent ${BACKUP_AGENT_PORTS[0]}"
  "backup-agent-2 BackupAgent ${BACKUP_AGENT_PORTS[1]}"
  "api Api $API_PORT"
)

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

port_open() { timeout 1 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
port_holder() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n1; }

dll_of() { echo "$REPO/src/$1/bin/Release/net10.0/$1.dll"; }
pid_file() { echo "$RUN/$1.pid"; }
log_file() { echo "$LOGS/$1.log"; }

# proc_pid NAME PROJECT PORT: prints the PID of our running process, or fails.
# The command line must name our dll and port, so a stale PID file whose
# number now belongs to another program is never taken for ours.
proc_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -s $file ]] || return 1
  pid=$(head -n1 "$file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(dll_of "$2") --urls http://127.0.0.1:$3" || return 1
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
    # shellcheck disable=SC2086 # split "name project port"
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

stop_all() {
  stop_procs
  stop_services
}

# start_proc NAME PROJECT PORT [VAR=VALUE...]: starts the built dll in its own
# session (Ctrl-C in the terminal reaches run.sh, which stops it in order),
# from its output folder (where its appsettings.json is).
start_proc() {
  local name=$1 project=$2 port=$3 dll log pid
  shift 3
  dll=$(dll_of "$project")
  log=$(log_file "$name")
  [[ -f $dll ]] || die "$dll is missing (did the build run?)"
  if port_open "$port"; then
    die "port $port (for $name) is taken: $(port_holder "$port"); stop that process or choose another port (see the top of $0)"
  fi
  [[ -f $log ]] && mv -f "$log" "$log.1"   # the previous run's log stays one run
  (
    cd "$(dirname "$dll")"
    exec env "$@" setsid dotnet "$dll" --urls "http://127.0.0.1:$port"
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
  say "$name ready on 127.0.0.1:$port (pid $pid, $((SECONDS - t0)) s, log $(log_file "$name"))"
}

# Readiness: /health/ready answers 200 once the host has started (the Api after
# its migrations; the BackupAgents once their bus is connected). The VolumeAgent
# speaks HTTP/2 only (gRPC over cleartext), hence prior knowledge.
ready_h2()   { curl -sf --max-time 2 --http2-prior-knowledge "http://127.0.0.1:$1/health/ready"; }
ready_http() { curl -sf --max-time 2 "http://127.0.0.1:$1/health/ready"; }

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
  # Exports ConnectionStrings__Postgres, ConnectionStrings__RabbitMq, VB_NFS_URL, VB_POOL, ...
  eval "$("$SERVICES" env)"
  local volumes=$VB_POOL/demo repository=$VB_NFS_URL/demo i
  if [[ ${VB_BROKER:-single} == cluster ]]; then
    # The three-node cluster instead of the single node: its URI, and RabbitMq__ClusterNodes__* the programs inherit.
    "$SERVICES" start-cluster
    eval "$("$SERVICES" cluster-env)"
  fi

  mkdir -p "$volumes"
  start_proc volume-agent VolumeAgent "$VOLUME_AGENT_PORT" \
    "Volumes__PoolPath=$volumes" "Telemetry__Instance=volume-agent" \
    "Telemetry__MetricsListener=http://127.0.0.1:$VOLUME_AGENT_METRICS_PORT"
  wait_ready volume-agent VolumeAgent "$VOLUME_AGENT_PORT" ready_h2 "$VOLUME_AGENT_PORT"

  for i in 1 2; do
    start_proc "backup-agent-$i" BackupAgent "${BACKUP_AGENT_PORTS[i - 1]}" \
      "ConnectionStrings__RabbitMq=$ConnectionStrings__RabbitMq" \
      "Agent__Host=host-a" "Agent__Zone=nova" \
      "Agent__VolumeAgentAddress=http://127.0.0.1:$VOLUME_AGENT_PORT" \
      "Repository__Target=$repository" \
      "Telemetry__Instance=backup-agent-$i"
  done
  for i in 1 2; do
    wait_ready "backup-agent-$i" BackupAgent "${BACKUP_AGENT_PORTS[i - 1]}" ready_http "${BACKUP_AGENT_PORTS[i - 1]}"
  done

  start_proc api Api "$API_PORT" \
    "ConnectionStrings__Postgres=$ConnectionStrings__Postgres" \
    "ConnectionStrings__RabbitMq=$ConnectionStrings__RabbitMq" \
    "Auth__Mode=$AUTH_MODE" \
    "Auth__Keystone__Url=$VB_KEYSTONE_URL" "Auth__Keystone__Username=vb-api" \
    "Auth__Keystone__PasswordFile=$VB_KEYSTONE_SECRETS/vb-api" \
    "Storage__Hosts__0__Name=host-a" "Storage__Hosts__0__Zone=nova" \
    "Storage__Hosts__0__Address=http://127.0.0.1:$VOLUME_AGENT_PORT" \
    "Telemetry__Instance=api"
  wait_ready api Api "$API_PORT" ready_http "$API_PORT"
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
  stop_all
}

cmd_status() {
  local entry name project port pid rc=0
  for entry in "${PROCS[@]}"; do
    read -r name project port <<<"$entry"
    if pid=$(proc_pid "$name" "$project" "$port"); then
      printf '%-15s running (pid %s, http://127.0.0.1:%s)\n' "$name" "$pid" "$port"
    else
      printf '%-15s stopped\n' "$name"; rc=1
    fi
  done
  "$SERVICES" status || rc=1
  if [[ -s $SERVICES_FILE ]]; then echo "(started by run.sh, stopped by 'deploy/run.sh stop': $(sort -u "$SERVICES_FILE" | tr '\n' ' '))"; fi
  return $rc
}

# ------------------------------------------------------------------- main ---

wait_mode=wait demo=yes
case ${1:-} in
  stop)   cmd_stop; exit ;;
  status) cmd_status; exit ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
for arg in "$@"; do
  case $arg in
    --no-wait) wait_mode=no-wait ;;
    --no-demo) demo=no ;;
    *) die "unknown argument: $arg (usage: $0 [--no-wait] [--no-demo] | stop | status)" ;;
  esac
done

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
# Processes left running by an earlier run (--no-wait) are restarted on the new build.
stop_procs

export VB_STARTED_FILE=$SERVICES_FILE
"$SERVICES" install
"$SERVICES" start
unset VB_STARTED_FILE

build
start_everything
say "all four processes up $((SECONDS - t_start)) s after start"
# Prometheus scrapes the four; a run that cannot start it goes on without it.
VB_STARTED_FILE=$SERVICES_FILE VB_PROMETHEUS_PORT=$PROMETHEUS_PORT \
  VB_PROMETHEUS_TARGETS="127.0.0.1:$API_PORT 127.0.0.1:${BACKUP_AGENT_PORTS[0]} 127.0.0.1:${BACKUP_AGENT_PORTS[1]} 127.0.0.1:$VOLUME_AGENT_METRICS_PORT" \
  "$SERVICES" start-prometheus || warn "Prometheus did not start; the programs still serve /metrics"

if [[ $demo == yes ]]; then
  echo
  VB_API="http://127.0.0.1:$API_PORT" VB_VOLUME_DIR="$VB_POOL/demo" VB_AUTH_MODE=$AUTH_MODE "$REPO/deploy/demo.sh" \
    || die "the demo failed (exit code $?); logs are in $LOGS"
  echo
fi

if [[ $AUTH_MODE == keystone ]]; then
  DASHBOARD_SIGN_IN="an admin's Keystone token: OS_USERNAME=admin OS_PROJECT_NAME=admin OS_PASSWORD=\$(cat $VB_KEYSTONE_SECRETS/admin) openstack token issue"
else
  DASHBOARD_SIGN_IN="an admin's token, e.g. admin:demo"
fi
cat <<EOF
The service is running:
  VolumeAgent       http://127.0.0.1:$VOLUME_AGENT_PORT (gRPC), volumes in $VB_POOL/demo
  BackupAgents      http://127.0.0.1:${BACKUP_AGENT_PORTS[0]} and :${BACKUP_AGENT_PORTS[1]}, repository $VB_NFS_URL/demo
  Dashboard         http://127.0.0.1:$API_PORT/dashboard (sign in with $DASHBOARD_SIGN_IN)
  Metrics           http://127.0.0.1:$API_PORT/metrics, :${BACKUP_AGENT_PORTS[0]}/metrics, :${BACKUP_AGENT_PORTS[1]}/metrics, :$VOLUME_AGENT_METRICS_PORT/metrics
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
    read -r name project port <<<"$entry"
    proc_pid "$name" "$project" "$port" >/dev/null || die_log "$name exited unexpectedly" "$(log_file "$name")"
  done
  sleep 2 &
  wait $! || true
done
