#!/usr/bin/env bash
# Starts and stops the real services the VolumeBackup tests talk to:
# PostgreSQL 15, RabbitMQ 3.10, an NFS server (nfs-ganesha + rpcbind), a
# reflink-capable XFS storage pool and Keystone 22. Everything they write lives under one state
# folder ($VB_STATE, default <repo>/.state), every server binds to 127.0.0.1,
# and every process we start is recorded in a PID file so `stop` ends only ours.
#
# Usage: deploy/services.sh install|start [keystone|rabbitmq]|stop [PART...]|status|env|master-key|start-nfs|stop-nfs|start-prometheus|stop-prometheus
#                          |start-host-pool NAME [SIZE]|stop-host-pool NAME
#   start-host-pool: a simulated storage host's own XFS reflink pool at $VB_STATE/hosts/NAME/pool (run.sh --hosts).
#   PARTs: pool postgres rabbitmq rpcbind ganesha keystone prometheus (stop without PARTs: all).
#   `start keystone` starts Keystone alone (on 127.0.0.1:5000); plain `start` starts it last.
#   `start rabbitmq` starts RabbitMQ alone. VB_RABBIT_NODE, VB_AMQP_PORT, VB_AMQPS_PORT and VB_RABBIT_DIST_PORT
#   choose its node name and ports (a private node beside another one).
#   env exports the connection strings: ConnectionStrings__RabbitMq (the Api's user, plain AMQP), VB_RABBITMQ_AGENT
#   (the BackupAgents' user), VB_RABBITMQ_NOTIFICATIONS (a notifications subscriber's), VB_RABBITMQ_TLS and VB_RABBITMQ_TLS_AGENT (the same over TLS), VB_PKI (deploy/pki.sh's folder).
#   start-prometheus starts Prometheus (not part of start) scraping the programs
#   deploy/run.sh starts; VB_PROMETHEUS_TARGETS (host:port ...) scrapes others.
#   With VB_STARTED_FILE set, start appends the PART of each service it really
#   started (not those already running), so a caller can stop just those.
#   start-cluster starts a three-node RabbitMQ cluster beside the single node (not part of
#   start; see the cluster section below): nodes ${VB_CLUSTER_NAME:-vbc}1..3@localhost, AMQP
#   VB_CLUSTER_AMQP_PORT (5701) + 0..2, AMQPS VB_CLUSTER_AMQPS_PORT (AMQP + 10) + 0..2, distribution
#   VB_CLUSTER_DIST_PORT (25701) + 0..2, state in VB_CLUSTER_DIR (<state>/rabbitmq-cluster), the single
#   node's users. cluster-env prints the programs' settings for it (plain AMQP, as env; `cluster-env tls`: AMQPS);
#   stop-cluster-node N / kill-cluster-node N / start-cluster-node N stop (gracefully or with SIGKILL)
#   and start one node (failure tests).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# realpath: ganesha exports and NFSv3 clients need the real path, no symlinks.
STATE=$(realpath -m "${VB_STATE:-$REPO/.state}")
case $STATE in
  *[[:space:]\"\$\`\\]*) echo "services.sh: state path must not contain spaces, quotes, \$, \` or \\: $STATE" >&2; exit 2 ;;
esac

RUN=$STATE/run        # our PID files
LOG=$STATE/log        # every service's log
PGDATA=$STATE/pg
PG_PORT=5432
RABBIT_DIR=$STATE/rabbitmq
RABBIT_SECRETS=$RABBIT_DIR/secrets   # one generated password per broker user (0600, root)
# Overridable so a second, private node can run beside the shared one (EPMD's 4369 is shared by name).
RABBIT_NODE=${VB_RABBIT_NODE:-vb@localhost}
AMQP_PORT=${VB_AMQP_PORT:-5672}           # plain AMQP, loopback only (tests)
AMQPS_PORT=${VB_AMQPS_PORT:-5671}         # AMQP over TLS with the deployment CA's certificate (deploy/run.sh)
RABBIT_DIST_PORT=${VB_RABBIT_DIST_PORT:-25672}
PKI=$STATE/pki                            # deploy/pki.sh: the CA and the channels' certificates
NFS_EXPORT=$STATE/nfs-export
NFS_URL=nfs://127.0.0.1$NFS_EXPORT
GANESHA_DIR=$STATE/ganesha
POOL=$STATE/pool
POOL_IMG=$STATE/pool.img
POOL_SIZE=20G
PROM_DIR=$STATE/prometheus
KEYS_DIR=$STATE/keys
MASTER_KEY=$KEYS_DIR/master.key   # the agents' and the Api's master key: losing it is losing the backups
PROM_PORT=${VB_PROMETHEUS_PORT:-9090}
# The ports deploy/run.sh uses: Api, BackupAgents, and the VolumeAgent's HTTP/1.1 metrics listener.
PROM_TARGETS=${VB_PROMETHEUS_TARGETS:-127.0.0.1:8776 127.0.0.1:5211 127.0.0.1:5212 127.0.0.1:5202}
KEYSTONE_PORT=5000
KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT/v3
KEYSTONE_DIR=$STATE/keystone
KEYSTONE_SECRETS=$KEYSTONE_DIR/secrets
# The Api's catalog entry (deploy/run.sh's port); %(project_id)s is Keystone's substitution.
KEYSTONE_API_ENDPOINT=${VB_KEYSTONE_API_ENDPOINT:-http://127.0.0.1:8776/v3/%(project_id)s}

# Packages a fresh Debian 12 machine needs (PostgreSQL is usually preinstalled;
# cmd_install adds postgresql-15 only when no initdb can be found).
PACKAGES=(rabbitmq-server nfs-ganesha nfs-ganesha-vfs rpcbind libnfs13 libnfs-utils liblz4-1
          xfsprogs python3-cinderclient jq curl openssl iproute2
          python3-oslo.messaging prometheus chromium chromium-driver
          python3-keystone uwsgi-core uwsgi-plugin-python3 python3-openstackclient python3-openstacksdk
          tempest cinder-tempest-plugin)

say()  { echo "services: $*"; }
warn() { echo "services: WARNING: $*" >&2; }
die()  { echo "services: ERROR: $*" >&2; exit 1; }

# Fails with the tail of a log, so a broken start explains itself.
die_log() {
  local msg=$1 log=$2
  echo "services: ERROR: $msg" >&2
  # (ganesha logs a line per component at start; those say nothing.)
  if [[ -f $log ]]; then echo "---- last lines of $log ----" >&2; grep -v SetComponentLogLevel "$log" | tail -n 25 >&2; fi
  exit 1
}

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# Records a part this run started (see VB_STARTED_FILE above).
started() { if [[ -n ${VB_STARTED_FILE:-} ]]; then echo "$1" >>"$VB_STARTED_FILE"; fi; }

# wait_until TRIES CMD...: retries CMD every 0.5 s, at most TRIES times.
wait_until() {
  local tries=$1; shift
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# wait_up PID TRIES CMD...: like wait_until, but gives up at once when process
# PID has died (no point waiting 30 s for a crashed server).
wait_up() {
  local pid=$1 tries=$2; shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$pid" || return 1
    sleep 0.5
  done
  return 1
}

port_open() { timeout 1 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Names the process that listens on a port, for "port taken" errors.
port_holder() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n1; }

# pid_alive FILE NAME: the PID in FILE runs and its command line mentions NAME
# (so a reused PID of some other program is never taken for ours).
pid_alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(head -n1 "$1")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# stop_pid FILE NAME: SIGTERM the recorded process and wait (bounded) until it is gone.
stop_pid() {
  local file=$1 name=$2 pid
  if pid_alive "$file" "$name"; then
    pid=$(head -n1 "$file")
    kill "$pid"
    if ! wait_until 60 eval "! alive $pid"; then
      warn "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

# Debian's PostgreSQL binaries are under /usr/lib/postgresql/15/bin when not on PATH.
pg_bin() {
  if command -v "$1" >/dev/null; then command -v "$1"
  elif [[ -x /usr/lib/postgresql/15/bin/$1 ]]; then echo "/usr/lib/postgresql/15/bin/$1"
  else return 1; fi
}

# ---------------------------------------------------------------- install ---

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

cmd_install() {
  local want=("${PACKAGES[@]}") missing=()
  pg_bin initdb >/dev/null || want+=(postgresql-15)
  for p in "${want[@]}"; do installed "$p" || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then say "install: all packages present"; return; fi

  say "install: installing ${missing[*]}"
  # Package scripts would start system rabbitmq/epmd/postgres/ganesha on our
  # ports. A policy-rc.d that exits 101 tells invoke-rc.d "do not start
  # anything"; an existing one is put back afterwards.
  POLICY=/usr/sbin/policy-rc.d POLICY_SAVED=""
  if [[ -e $POLICY ]]; then POLICY_SAVED=$(mktemp); cp -p "$POLICY" "$POLICY_SAVED"; fi
  trap restore_policy EXIT
  printf '#!/bin/sh\n# temporary, from deploy/services.sh install\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"

  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

  restore_policy
  trap - EXIT
}

restore_policy() {
  if [[ -n $POLICY_SAVED ]]; then mv -f "$POLICY_SAVED" "$POLICY"; else rm -f "$POLICY"; fi
}

# --------------------------------------------------------------- postgres ---

# initdb and postgres refuse to run as root, so they run as the Debian
# `postgres` user, or a system user of our own where that doesn't exist.
pg_user() {
  if id postgres >/dev/null 2>&1; then echo postgres
  else
    id vbpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin vbpg
    echo vbpg
  fi
}
# The same without creating a user (for stop/status).
pg_user_if_any() { if id postgres >/dev/null 2>&1; then echo postgres; else echo vbpg; fi; }

as_pg() { runuser -u "$PGUSER" -- "$@"; }

pg_running() { [[ -d $PGDATA ]] && as_pg "$PG_CTL" status -D "$PGDATA" >/dev/null 2>&1; }

start_postgres() {
  PGUSER=$(pg_user)
  PG_CTL=$(pg_bin pg_ctl) || die "pg_ctl not found; run: deploy/services.sh install"
  if pg_running; then say "postgres: already running"; return; fi
  port_open $PG_PORT && die "port $PG_PORT is taken by a server that is not ours ($PGDATA): $(port_holder $PG_PORT); stop it first"

  # The postgres user must be able to walk down to its data folder; a repo
  # under /root (mode 700) would block it, so add only the search bit.
  # Walk from / downwards: a folder can only be tested once its parents pass.
  local d="" part parts
  IFS=/ read -ra parts <<<"${STATE#/}"
  for part in "${parts[@]}"; do
    d+=/$part
    if ! runuser -u "$PGUSER" -- test -x "$d"; then
      warn "granting o+x on $d so user $PGUSER can reach $PGDATA"
      chmod o+x "$d"
    fi
  done

  if [[ ! -s $PGDATA/PG_VERSION ]]; then
    say "postgres: initdb $PGDATA (user $PGUSER)"
    rm -rf "$PGDATA"
    install -d -m 700 -o "$PGUSER" "$PGDATA"
    # trust for local and host (127.0.0.1/::1) connections: a test database only.
    as_pg "$(pg_bin initdb)" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$LOG/initdb.log" 2>&1 \
      || die_log "initdb failed" "$LOG/initdb.log"
    cat >>"$PGDATA/postgresql.conf" <<EOF

# deploy/services.sh: loopback only, socket inside the state folder.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN/pg'
EOF
  fi
  install -d -m 755 -o "$PGUSER" "$RUN/pg"
  touch "$LOG/postgres.log" && chown "$PGUSER" "$LOG/postgres.log"

  as_pg "$PG_CTL" start -D "$PGDATA" -l "$LOG/postgres.log" -w -t 30 >/dev/null \
    || die_log "postgres did not start" "$LOG/postgres.log"
  wait_until 60 pg_isready -q -h 127.0.0.1 -p $PG_PORT || die_log "postgres does not answer on 127.0.0.1:$PG_PORT" "$LOG/postgres.log"

  if [[ -z $(psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'volumebackup'") ]]; then
    psql -q -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -c 'create database volumebackup'
  fi
  started postgres
  say "postgres: started on 127.0.0.1:$PG_PORT"
}

stop_postgres() {
  PGUSER=$(pg_user_if_any)
  PG_CTL=$(pg_bin pg_ctl) || return 0
  if pg_running; then as_pg "$PG_CTL" stop -D "$PGDATA" -m fast -w -t 60 >/dev/null; say "postgres: stopped"; fi
}

# --------------------------------------------------------------- rabbitmq ---

# The same environment for the server and for rabbitmqctl: our node name, our
# folders, our config, and a HOME inside the state so the Erlang cookie lives
# there (rabbitmqctl must read the same cookie to talk to the node).
rabbit_env() {
  export HOME=$RABBIT_DIR/home
  export RABBITMQ_NODENAME=$RABBIT_NODE
  export RABBITMQ_CONF_ENV_FILE=$RABBIT_DIR/rabbitmq-env.conf   # not /etc/rabbitmq's
  export RABBITMQ_CONFIG_FILE=$RABBIT_DIR/rabbitmq.conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$RABBIT_DIR/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_DIR/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$RABBIT_DIR/mnesia
  export RABBITMQ_LOG_BASE=$LOG/rabbitmq
  export RABBITMQ_PID_FILE=$RUN/rabbitmq.pid
  export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  # epmd and Erlang distribution (server and CLI nodes) on loopback only.
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# The Debian wrappers in /usr/sbin re-run everything as user rabbitmq through
# su, which resets HOME; the real scripts run fine as root with our env.
RABBIT_SBIN=/usr/lib/rabbitmq/bin
rabbitmqctl() { "$RABBIT_SBIN/rabbitmqctl" -n "$RABBIT_NODE" "$@"; }

# The AMQPS listener's settings, the single node's and the cluster's: the broker certificate of deploy/pki.sh; clients
# authenticate with their user's password (no client certificates).
rabbit_tls_options() {
  cat <<CONF
ssl_options.cacertfile = $PKI/ca.crt
ssl_options.certfile = $PKI/rabbitmq.crt
ssl_options.keyfile = $PKI/rabbitmq.key
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
}

rabbit_running() { pid_alive "$RUN/rabbitmq.pid" beam; }

start_rabbitmq() {
  rabbit_env
  if rabbit_running; then
    provision_rabbitmq
    port_open $AMQPS_PORT || warn "rabbitmq runs without its TLS listener on $AMQPS_PORT (its config is older): restart it with 'deploy/services.sh stop rabbitmq' and 'start'"
    say "rabbitmq: already running"; return
  fi
  port_open $AMQP_PORT && die "port $AMQP_PORT is taken by a server that is not ours: $(port_holder $AMQP_PORT); stop it first"
  port_open $AMQPS_PORT && die "port $AMQPS_PORT is taken by a server that is not ours: $(port_holder $AMQPS_PORT); stop it first"
  [[ -x $RABBIT_SBIN/rabbitmq-server ]] || die "rabbitmq-server not found; run: deploy/services.sh install"

  mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
  if [[ ! -s $HOME/.erlang.cookie ]]; then
    # Written before the first start so server and CLI never race to create it.
    (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$HOME/.erlang.cookie")
    chmod 400 "$HOME/.erlang.cookie"
  fi
  : >"$RABBITMQ_CONF_ENV_FILE"
  echo '[].' >"$RABBITMQ_ENABLED_PLUGINS_FILE"   # no plugins: no extra ports
  "$REPO/deploy/pki.sh" >/dev/null   # the broker's certificate, signed by the deployment CA
  (umask 077; cat >"$RABBITMQ_CONFIG_FILE" <<EOF
# deploy/services.sh: AMQP on loopback, plain (tests) and over TLS (deploy/run.sh). No guest: provision_rabbitmq
# makes one user per role, with a generated password and the least permissions the role needs.
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
listeners.ssl.default = 127.0.0.1:$AMQPS_PORT
$(rabbit_tls_options)
loopback_users.guest = true
# A job holds its command unacknowledged until it ends; past consumer_timeout the
# broker closes the channel and redelivers the command while the job still runs.
# 24 h is the longest backup or restore this deployment supports (default 30 min).
consumer_timeout = 86400000
EOF
  )

  # epmd: use one that already answers, else start ours on loopback and
  # remember its PID so `stop` can end it (erl would leave its own running).
  if ! epmd -names >/dev/null 2>&1; then
    setsid epmd -address 127.0.0.1 >"$LOG/epmd.log" 2>&1 </dev/null &
    echo $! >"$RUN/epmd.pid"
    wait_up $! 60 epmd -names || die_log "epmd did not start" "$LOG/epmd.log"
  fi

  rm -f "$RABBITMQ_PID_FILE"
  "$RABBIT_SBIN/rabbitmq-server" -detached >"$LOG/rabbitmq-start.log" 2>&1 \
    || die_log "rabbitmq-server -detached failed" "$LOG/rabbitmq-start.log"
  # The node writes its PID file early in boot; then wait for the broker app.
  wait_until 60 test -s "$RABBITMQ_PID_FILE" || die_log "rabbitmq wrote no PID file" "$RABBITMQ_LOG_BASE/$RABBIT_NODE.log"
  rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 \
    || die_log "rabbitmq node $RABBIT_NODE did not finish booting" "$RABBITMQ_LOG_BASE/$RABBIT_NODE.log"
  wait_until 60 port_open $AMQP_PORT || die_log "rabbitmq does not answer on 127.0.0.1:$AMQP_PORT" "$RABBITMQ_LOG_BASE/$RABBIT_NODE.log"
  wait_until 60 port_open $AMQPS_PORT || die_log "rabbitmq does not answer on 127.0.0.1:$AMQPS_PORT (TLS)" "$RABBITMQ_LOG_BASE/$RABBIT_NODE.log"
  provision_rabbitmq
  started rabbitmq
  say "rabbitmq: started node $RABBIT_NODE on 127.0.0.1:$AMQP_PORT and :$AMQPS_PORT (TLS); passwords in $RABBIT_SECRETS"
}

# The broker's users, one per role, each with the permissions (configure, write, read: regexes on exchange and queue
# names, per virtual host) its role needs and no more. MassTransit names exchanges after message types
# (VolumeBackup.Contracts:BackupCompleted, MassTransit:Fault--...--) and each receive endpoint's queue and exchange
# after the endpoint (create-backup-nova, its _error and _skipped, cancel-backup-<host>-<pid>, <host>_<process>_bus_<id>).
# RabbitMQ's permissions name resources without their kind, and binding a queue needs write on the queue's name, which
# is also its endpoint exchange's: so an agent never binds its command queues (the Api declares and binds them) and
# has no write on any command's name, so a command it publishes is refused (ACCESS_REFUSED).
#   vb-api:          everything in its virtual host: it owns the topology, publishes commands and notifications.
#   vb-backup-agent: reads its command queues; publishes its events and faults; its own temporary queues.
#   vb-notifications: a subscriber of the oslo.messaging notifications (billing, audit): declares, binds and reads
#                     its notifications.<priority> queues on the openstack exchange; publishes nothing the service hears.
AGENT_EVENTS='VolumeBackup\.Contracts:(BackupTaken|BackupStarted|BackupProgressed|BackupCompleted|RestoreStarted|RestoreProgressed|BackupRestored|BackupDeleted|BackupVerified|BackupVerifyFailed|AgentHeartbeat)'
AGENT_OWN='MassTransit:Fault.*|(create|restore|delete|verify)-backup-.+_(error|skipped)|cancel-backup-.+|[^:]+_bus_[a-z0-9]+'
AGENT_COMMAND_QUEUES='(create|restore|delete|verify)-backup-.+'
AGENT_CONFIGURE="^($AGENT_EVENTS|$AGENT_OWN|$AGENT_COMMAND_QUEUES|VolumeBackup\\.Contracts:CancelBackup)\$"
AGENT_WRITE="^($AGENT_EVENTS|$AGENT_OWN)\$"
AGENT_READ="^($AGENT_OWN|$AGENT_COMMAND_QUEUES|VolumeBackup\\.Contracts:CancelBackup)\$"
NOTIFY_CONFIGURE='^(openstack|notifications\..+)$'
NOTIFY_WRITE='^notifications\..+$'
NOTIFY_READ='^(openstack|notifications\..+)$'
RABBIT_USERS=(vb-api vb-backup-agent vb-notifications)

# rabbit_secret USER: the user's password, generated into $RABBIT_SECRETS/USER (0600) the first time.
rabbit_secret() {
  install -d -m 700 "$RABBIT_SECRETS"
  local file=$RABBIT_SECRETS/$1
  if [[ ! -s $file ]]; then (umask 077; openssl rand -hex 24 >"$file"); fi
  chmod 600 "$file"
  cat "$file"
}

# rabbit_permit VHOST [CTL...]: every role's permissions on one virtual host; CTL runs rabbitmqctl against the broker
# (the single node's when not given; `cluster_ctl 1` for the cluster).
rabbit_permit() {
  local vhost=$1 ctl=(rabbitmqctl); shift
  (($#)) && ctl=("$@")
  "${ctl[@]}" set_permissions -p "$vhost" vb-api '.*' '.*' '.*' >/dev/null
  "${ctl[@]}" set_permissions -p "$vhost" vb-backup-agent "$AGENT_CONFIGURE" "$AGENT_WRITE" "$AGENT_READ" >/dev/null
  "${ctl[@]}" set_permissions -p "$vhost" vb-notifications "$NOTIFY_CONFIGURE" "$NOTIFY_WRITE" "$NOTIFY_READ" >/dev/null
}

# provision_rabbitmq [CTL...]: idempotent, on every start: guest (and any user that is not a role's, such as an
# earlier cluster's `volumebackup`) removed, each role's password set from its file (delete the file and start again to
# rotate it), the permissions on the default virtual host.
provision_rabbitmq() {
  local users user ctl=(rabbitmqctl)
  (($#)) && ctl=("$@")
  users=$("${ctl[@]}" list_users --quiet --no-table-headers 2>/dev/null | awk '{print $1}')
  for user in guest volumebackup; do
    if grep -qx "$user" <<<"$users"; then "${ctl[@]}" delete_user "$user" >/dev/null; fi
  done
  for user in "${RABBIT_USERS[@]}"; do
    # The password goes through stdin, never a command line others could read.
    if grep -qx "$user" <<<"$users"; then rabbit_secret "$user" | "${ctl[@]}" change_password "$user" >/dev/null
    else rabbit_secret "$user" | "${ctl[@]}" add_user "$user" >/dev/null; fi
  done
  rabbit_permit / "${ctl[@]}"
}

stop_rabbitmq() {
  rabbit_env
  if rabbit_running; then
    # `stop PIDFILE` returns once the Erlang VM has exited.
    rabbitmqctl stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || stop_pid "$RABBITMQ_PID_FILE" beam
    say "rabbitmq: stopped"
  fi
  rm -f "$RABBITMQ_PID_FILE"
  # Our epmd goes too, unless some other Erlang node still uses it.
  if pid_alive "$RUN/epmd.pid" epmd; then
    if epmd -names 2>/dev/null | grep -q '^name '; then
      warn "epmd still has nodes registered; leaving it running"
    else
      stop_pid "$RUN/epmd.pid" epmd
    fi
  fi
  rm -f "$RUN/epmd.pid"
}

# ------------------------------------------------------- rabbitmq cluster ---

# A three-node RabbitMQ cluster on this machine, beside (never instead of) the single node above:
# nodes ${VB_CLUSTER_NAME}1..3@localhost, AMQP on 127.0.0.1:VB_CLUSTER_AMQP_PORT+0..2, Erlang
# AMQPS on 127.0.0.1:VB_CLUSTER_AMQPS_PORT+0..2 (the broker certificate of deploy/pki.sh, as the single node),
# distribution on VB_CLUSTER_DIST_PORT+0..2, everything under VB_CLUSTER_DIR. The nodes share a generated Erlang
# cookie. Its users are the single node's roles (vb-api, vb-backup-agent, vb-notifications) with the same generated
# passwords and permissions (provision_rabbitmq); there is no guest. Nodes 2 and 3 join node 1 with join_cluster; a
# node restarted later rejoins by itself.
CLUSTER_NAME=${VB_CLUSTER_NAME:-vbc}
CLUSTER_SIZE=3
CLUSTER_AMQP_PORT=${VB_CLUSTER_AMQP_PORT:-5701}
CLUSTER_AMQPS_PORT=${VB_CLUSTER_AMQPS_PORT:-$((CLUSTER_AMQP_PORT + 10))}
CLUSTER_DIST_PORT=${VB_CLUSTER_DIST_PORT:-25701}
CLUSTER_DIR=$(realpath -m "${VB_CLUSTER_DIR:-$STATE/rabbitmq-cluster}")

cluster_node() { echo "$CLUSTER_NAME$1@localhost"; }
cluster_amqp_port() { echo $((CLUSTER_AMQP_PORT + $1 - 1)); }
cluster_amqps_port() { echo $((CLUSTER_AMQPS_PORT + $1 - 1)); }

# cluster_env I: the environment of node I, for its server and for rabbitmqctl (as rabbit_env does for the single node).
cluster_env() {
  local n=$1 dir=$CLUSTER_DIR/node$1
  export HOME=$CLUSTER_DIR/home                                  # the cluster's one Erlang cookie
  export RABBITMQ_NODENAME; RABBITMQ_NODENAME=$(cluster_node "$n")
  export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
  export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$dir/mnesia
  export RABBITMQ_LOG_BASE=$dir/log
  export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
  export RABBITMQ_DIST_PORT=$((CLUSTER_DIST_PORT + n - 1))
  # CLI nodes get ports of their own too (the default 35672-35682 is the single node's).
  export RABBITMQ_CTL_DIST_PORT_MIN=$((RABBITMQ_DIST_PORT + 10000)) RABBITMQ_CTL_DIST_PORT_MAX=$((RABBITMQ_DIST_PORT + 10010))
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# cluster_ctl I ARGS...: rabbitmqctl against node I, in a subshell so node environments never mix.
cluster_ctl() { (cluster_env "$1"; "$RABBIT_SBIN/rabbitmqctl" -n "$(cluster_node "$1")" "${@:2}"); }

cluster_node_running() { pid_alive "$CLUSTER_DIR/node$1/rabbitmq.pid" beam; }

write_cluster_node_conf() {
  local n=$1 dir=$CLUSTER_DIR/node$1
  install -d -m 700 "$dir" "$dir/mnesia" "$dir/log"
  : >"$dir/rabbitmq-env.conf"
  echo '[].' >"$dir/enabled_plugins"                              # no plugins: no extra ports
  # Holds the password: 0600.
  (umask 077; cat >"$dir/rabbitmq.conf" <<CONF
# Written by deploy/services.sh start-cluster; edits are overwritten on start.
# Plain AMQP for the tests, AMQPS for deploy/run.sh, as on the single node.
listeners.tcp.default = 127.0.0.1:$(cluster_amqp_port "$n")
listeners.ssl.default = 127.0.0.1:$(cluster_amqps_port "$n")
$(rabbit_tls_options)
cluster_name = $CLUSTER_NAME
# The Api's user replaces guest at the first boot (guest is never created); provision_rabbitmq adds the other roles.
default_user = vb-api
default_pass = $(rabbit_secret vb-api)
# A node cut off from the other two pauses instead of serving a split cluster (quorum queues need a majority anyway).
cluster_partition_handling = pause_minority
# As on the single node: a job holds its command unacknowledged for up to 24 h.
consumer_timeout = 86400000
CONF
  )
}

# start_cluster_node I: boots node I in the background (rabbitmq-server -detached); await_cluster_node waits for it.
start_cluster_node() {
  local n=$1 port
  if cluster_node_running "$n"; then return; fi
  for port in "$(cluster_amqp_port "$n")" "$(cluster_amqps_port "$n")"; do
    port_open "$port" && die "port $port is taken by a server that is not ours: $(port_holder "$port"); stop it first"
  done
  write_cluster_node_conf "$n"
  rm -f "$CLUSTER_DIR/node$n/rabbitmq.pid"
  (cluster_env "$n"; "$RABBIT_SBIN/rabbitmq-server" -detached >"$CLUSTER_DIR/node$n/log/start.log" 2>&1) \
    || die_log "rabbitmq-server -detached failed for $(cluster_node "$n")" "$CLUSTER_DIR/node$n/log/start.log"
}

await_cluster_node() {
  local n=$1 node log; node=$(cluster_node "$1"); log=$CLUSTER_DIR/node$1/log/$node.log
  wait_until 60 test -s "$CLUSTER_DIR/node$n/rabbitmq.pid" || die_log "$node wrote no PID file" "$log"
  # await_startup fails at once while the node is not reachable yet (early in its boot): ask again.
  wait_up "$(head -n1 "$CLUSTER_DIR/node$n/rabbitmq.pid")" 60 cluster_ctl "$n" await_startup --timeout 120 || die_log "$node did not finish booting" "$log"
  wait_until 60 port_open "$(cluster_amqp_port "$n")" || die_log "$node does not answer on 127.0.0.1:$(cluster_amqp_port "$n")" "$log"
  wait_until 60 port_open "$(cluster_amqps_port "$n")" || die_log "$node does not answer on 127.0.0.1:$(cluster_amqps_port "$n") (TLS)" "$log"
}

# join_cluster_node I: makes node I a member of node 1's cluster, unless it is one already.
join_cluster_node() {
  local n=$1 first; first=$(cluster_node 1)
  if cluster_ctl "$n" cluster_status --formatter json 2>/dev/null | jq -e --arg n "$first" '.disk_nodes | index($n)' >/dev/null; then return; fi
  say "rabbitmq cluster: $(cluster_node "$n") joins $first"
  { cluster_ctl "$n" stop_app && cluster_ctl "$n" join_cluster "$first" && cluster_ctl "$n" start_app; } >"$CLUSTER_DIR/node$n/log/join.log" 2>&1 \
    || die_log "$(cluster_node "$n") could not join $first" "$CLUSTER_DIR/node$n/log/join.log"
}

start_cluster() {
  [[ -x $RABBIT_SBIN/rabbitmq-server ]] || die "rabbitmq-server not found; run: deploy/services.sh install"
  local k t0=$SECONDS
  install -d -m 700 "$CLUSTER_DIR" "$CLUSTER_DIR/home"
  if [[ ! -s $CLUSTER_DIR/home/.erlang.cookie ]]; then
    (umask 077; openssl rand -hex 32 >"$CLUSTER_DIR/home/.erlang.cookie")
  fi
  chmod 600 "$CLUSTER_DIR/home/.erlang.cookie"
  "$REPO/deploy/pki.sh" >/dev/null   # the broker's certificate, signed by the deployment CA (the AMQPS listeners)
  # epmd: the one already answering (the single node's, say), else ours, ended by stop-cluster.
  if ! epmd -names >/dev/null 2>&1; then
    (export ERL_EPMD_ADDRESS=127.0.0.1; setsid epmd -address 127.0.0.1 >"$CLUSTER_DIR/epmd.log" 2>&1 </dev/null & echo $! >"$CLUSTER_DIR/epmd.pid")
    wait_until 60 epmd -names || die_log "epmd did not start" "$CLUSTER_DIR/epmd.log"
  fi
  # All three boot at once: a node that was a member waits at boot for the others it last saw.
  for ((k = 1; k <= CLUSTER_SIZE; k++)); do start_cluster_node "$k"; done
  for ((k = 1; k <= CLUSTER_SIZE; k++)); do await_cluster_node "$k"; done
  for ((k = 2; k <= CLUSTER_SIZE; k++)); do join_cluster_node "$k"; done
  provision_rabbitmq cluster_ctl 1
  say "rabbitmq cluster: $(cluster_nodes_text) up in $((SECONDS - t0)) s (AMQPS on $(cluster_amqps_port 1)-$(cluster_amqps_port "$CLUSTER_SIZE"); the single node's users, passwords in $RABBIT_SECRETS)"
}

cluster_nodes_text() {
  local k out=""
  for ((k = 1; k <= CLUSTER_SIZE; k++)); do out+="${out:+, }$(cluster_node "$k") on 127.0.0.1:$(cluster_amqp_port "$k")"; done
  echo "$out"
}

stop_cluster_node() {
  local n=$1 pid
  if cluster_node_running "$n"; then
    pid=$(head -n1 "$CLUSTER_DIR/node$n/rabbitmq.pid")
    # `stop PIDFILE` returns once the Erlang VM has exited.
    cluster_ctl "$n" stop "$CLUSTER_DIR/node$n/rabbitmq.pid" >/dev/null 2>&1 || stop_pid "$CLUSTER_DIR/node$n/rabbitmq.pid" beam
    wait_until 60 eval "! alive $pid" || warn "$(cluster_node "$n") (pid $pid) still running"
    say "rabbitmq cluster: $(cluster_node "$n") stopped"
  fi
  rm -f "$CLUSTER_DIR/node$n/rabbitmq.pid"
}

# kill_cluster_node I: SIGKILL, as a crash or a lost machine would end it (failure tests); start-cluster-node brings it back.
kill_cluster_node() {
  local n=$1 pid
  if cluster_node_running "$n"; then
    pid=$(head -n1 "$CLUSTER_DIR/node$n/rabbitmq.pid")
    kill -9 "$pid"
    wait_until 60 eval "! alive $pid" || die "$(cluster_node "$n") (pid $pid) survived SIGKILL"
    say "rabbitmq cluster: $(cluster_node "$n") killed"
  fi
  rm -f "$CLUSTER_DIR/node$n/rabbitmq.pid"
}

stop_cluster() {
  local k
  # All at once: start-cluster boots them all at once too, so no node waits at boot for one that stopped after it.
  for ((k = 1; k <= CLUSTER_SIZE; k++)); do stop_cluster_node "$k" & done
  wait
  if pid_alive "$CLUSTER_DIR/epmd.pid" epmd; then
    if epmd -names 2>/dev/null | grep -q '^name '; then warn "epmd still has nodes registered; leaving it running"
    else stop_pid "$CLUSTER_DIR/epmd.pid" epmd; fi
  fi
  rm -f "$CLUSTER_DIR/epmd.pid"
}

# Nodes up or down, the members as node 1 (or the first running node) sees them, and each quorum queue's leader and members.
cluster_status() {
  local k rc=0 seen=""
  for ((k = 1; k <= CLUSTER_SIZE; k++)); do
    if cluster_node_running "$k"; then
      printf '%-22s running (pid %s, 127.0.0.1:%s)\n' "$(cluster_node "$k")" "$(cat "$CLUSTER_DIR/node$k/rabbitmq.pid")" "$(cluster_amqp_port "$k")"
      seen=${seen:-$k}
    else
      printf '%-22s stopped\n' "$(cluster_node "$k")"; rc=1
    fi
  done
  if [[ -n $seen ]]; then
    echo "members (as $(cluster_node "$seen") sees them):"
    cluster_ctl "$seen" cluster_status --formatter json | jq -r '"  running: \(.running_nodes | join(" "))\n  disk:    \(.disk_nodes | join(" "))"' || true
    echo "queues (vhost /): name type leader members"
    cluster_ctl "$seen" list_queues -q name type leader members --formatter json 2>/dev/null \
      | jq -r '.[] | "  \(.name) \(.type) \(if (.leader | type) == "string" and .leader != "" then .leader else "-" end) \(if (.members | type) == "array" then .members | join(",") else "-" end)"' || true
  fi
  return $rc
}

# cluster-env [tls]: as env does for the single node, the Api's URI (ConnectionStrings__RabbitMq) and the agents'
# (VB_RABBITMQ_AGENT), plain AMQP (the tests); with tls, the same over AMQPS (VB_RABBITMQ_TLS, VB_RABBITMQ_TLS_AGENT:
# deploy/run.sh). RabbitMq__ClusterNodes__* lists the nodes of the same listener.
cmd_cluster_env() {
  local k scheme=amqp port=cluster_amqp_port
  if [[ ${1:-} == tls ]]; then scheme=amqps port=cluster_amqps_port; fi
  echo "export ConnectionStrings__RabbitMq=\"$scheme://vb-api:$(rabbit_secret vb-api)@127.0.0.1:$($port 1)/\""
  echo "export VB_RABBITMQ_AGENT=\"$scheme://vb-backup-agent:$(rabbit_secret vb-backup-agent)@127.0.0.1:$($port 1)/\""
  if [[ $scheme == amqps ]]; then
    echo "export VB_RABBITMQ_TLS=\"amqps://vb-api:$(rabbit_secret vb-api)@127.0.0.1:$($port 1)/\""
    echo "export VB_RABBITMQ_TLS_AGENT=\"amqps://vb-backup-agent:$(rabbit_secret vb-backup-agent)@127.0.0.1:$($port 1)/\""
  fi
  for ((k = 1; k <= CLUSTER_SIZE; k++)); do echo "export RabbitMq__ClusterNodes__$((k - 1))=\"127.0.0.1:$($port "$k")\""; done
  echo "export VB_CLUSTER_DIR=\"$CLUSTER_DIR\""
}

# -------------------------------------------------------------------- nfs ---

rpcbind_up() { rpcinfo -p 127.0.0.1 >/dev/null 2>&1; }

start_rpcbind() {
  if rpcbind_up; then return; fi
  # -f: stay in the foreground so $! is its PID; -w: warm start. rpcbind
  # listens on the wildcard address for port 111: its -h (bind UDP to
  # 127.0.0.1) aborts with "double free" in Debian 12's rpcbind 1.2.6.
  setsid rpcbind -f -w >"$LOG/rpcbind.log" 2>&1 </dev/null &
  echo $! >"$RUN/rpcbind.pid"
  wait_up $! 60 rpcbind_up || die_log "rpcbind did not start" "$LOG/rpcbind.log"
  started rpcbind
  say "rpcbind: started"
}

stop_rpcbind() {
  # Only an rpcbind we started; a system one stays.
  if pid_alive "$RUN/rpcbind.pid" rpcbind; then stop_pid "$RUN/rpcbind.pid" rpcbind; say "rpcbind: stopped"; fi
  rm -f "$RUN/rpcbind.pid"
}

ganesha_running() { pid_alive "$RUN/ganesha.pid" ganesha; }

nfs_answers() { nfs-ls "$NFS_URL" >/dev/null 2>&1; }

write_ganesha_conf() {
  mkdir -p "$NFS_EXPORT" "$GANESHA_DIR/recovery"
  # From shared/samples/ganesha.conf; the NFSv4 recovery (client state)
  # folder moves from /var/lib/nfs/ganesha into the state folder.
  cat >"$GANESHA_DIR/ganesha.conf" <<EOF
# Generated by deploy/services.sh; edits are overwritten on start.
NFS_CORE_PARAM {
  Protocols = 3, 4;
  NFS_Port = 2049;
  Bind_addr = 127.0.0.1;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}
NFSV4 {
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = "$GANESHA_DIR/recovery";
}
EXPORT {
  Export_Id = 1;
  Path = "$NFS_EXPORT";
  Pseudo = /nfs-export;
  Access_Type = RW;
  Squash = No_Root_Squash;
  Protocols = 3, 4;
  Transports = TCP;
  SecType = sys;
  FSAL { Name = VFS; }
  CLIENT { Clients = 127.0.0.1; Access_Type = RW; }
}
# No Kerberos here: skip its keytab lookups (and their log errors).
NFS_KRB5 { Active_krb5 = false; }
LOG { Default_Log_Level = WARN; }
EOF
}

start_ganesha() {
  start_rpcbind
  if ganesha_running; then say "ganesha: already running"; return; fi
  port_open 2049 && die "port 2049 is taken by an NFS server that is not ours: $(port_holder 2049); stop it first"
  command -v ganesha.nfsd >/dev/null || die "ganesha.nfsd not found; run: deploy/services.sh install"
  write_ganesha_conf
  rm -f "$RUN/ganesha.pid"
  # ganesha.nfsd daemonizes itself and writes the PID file (-p).
  ganesha.nfsd -f "$GANESHA_DIR/ganesha.conf" -L "$LOG/ganesha.log" -p "$RUN/ganesha.pid" -N NIV_WARN \
    || die_log "ganesha.nfsd failed to start" "$LOG/ganesha.log"
  wait_until 60 ganesha_running || die_log "ganesha wrote no PID file or exited" "$LOG/ganesha.log"
  local pid; pid=$(cat "$RUN/ganesha.pid")
  wait_up "$pid" 60 bash -c 'rpcinfo -p 127.0.0.1 | grep -q " nfs$" && rpcinfo -p 127.0.0.1 | grep -q " mountd$"' \
    || die_log "nfs/mountd not registered with rpcbind" "$LOG/ganesha.log"
  # rpcbind may still list a previous ganesha; a real listing proves this one answers.
  wait_up "$pid" 60 nfs_answers || die_log "$NFS_URL does not answer (nfs-ls)" "$LOG/ganesha.log"
  started ganesha
  say "ganesha: exporting $NFS_EXPORT at $NFS_URL"
}

stop_ganesha() {
  if ganesha_running; then stop_pid "$RUN/ganesha.pid" ganesha; say "ganesha: stopped"; fi
  rm -f "$RUN/ganesha.pid"
}

# ------------------------------------------------------------- prometheus ---

prometheus_running() { pid_alive "$RUN/prometheus.pid" prometheus; }

start_prometheus() {
  if prometheus_running; then say "prometheus: already running"; return; fi
  command -v prometheus >/dev/null || die "prometheus not found; run: deploy/services.sh install"
  if port_open "$PROM_PORT"; then die "port $PROM_PORT is taken: $(port_holder "$PROM_PORT")"; fi
  mkdir -p "$PROM_DIR/data"
  local targets="" t
  for t in $PROM_TARGETS; do targets+="${targets:+, }'$t'"; done
  cat >"$PROM_DIR/prometheus.yml" <<YAML
# Written by deploy/services.sh start-prometheus.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: volumebackup
    static_configs:
      - targets: [$targets]
YAML
  setsid prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" </dev/null >>"$LOG/prometheus.log" 2>&1 &
  echo $! >"$RUN/prometheus.pid"
  wait_up "$!" 60 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" || die_log "prometheus did not become ready" "$LOG/prometheus.log"
  started prometheus
  say "prometheus: http://127.0.0.1:$PROM_PORT (scraping $PROM_TARGETS)"
}

stop_prometheus() {
  if prometheus_running; then stop_pid "$RUN/prometheus.pid" prometheus; say "prometheus: stopped"; fi
  rm -f "$RUN/prometheus.pid"
}

# ------------------------------------------------------------------- pool ---

pool_mounted() { mountpoint -q "$POOL"; }

start_pool() {
  mkdir -p "$POOL"
  if pool_mounted; then say "pool: already mounted"; return; fi
  if [[ ! -f $POOL_IMG ]]; then
    truncate -s "$POOL_SIZE" "$POOL_IMG"   # sparse: takes disk only as it fills
  fi
  if [[ $(blkid -o value -s TYPE "$POOL_IMG" 2>/dev/null) != xfs ]]; then
    mkfs.xfs -q -m reflink=1 "$POOL_IMG" >"$LOG/mkfs.log" 2>&1 || die_log "mkfs.xfs failed" "$LOG/mkfs.log"
  fi
  if mount -o loop "$POOL_IMG" "$POOL" 2>"$LOG/mount.log"; then
    started pool
    say "pool: XFS (reflink) mounted at $POOL"
  else
    warn "could not loop-mount $POOL_IMG ($(tr '\n' ' ' <"$LOG/mount.log")); $POOL is a plain folder:" \
         "snapshots will be copies, not crash-consistent reflinks"
  fi
}

stop_pool() {
  if pool_mounted; then
    umount "$POOL" || { warn "could not unmount $POOL (still in use? see: fuser -vm $POOL)"; return 1; }
    say "pool: unmounted"
  fi
}

# A simulated storage host's own pool (deploy/run.sh --hosts N): an XFS reflink image of its own, loop-mounted at
# $STATE/hosts/NAME/pool, so each host has its own filesystem, its own free space and its own reflinks.
host_pool_dir() { echo "$STATE/hosts/$1/pool"; }

start_host_pool() {
  local name=${1:?usage: services.sh start-host-pool NAME [SIZE]} size=${2:-10G} dir img
  [[ $name =~ ^[a-z0-9-]+$ ]] || die "host name must be lower-case letters, digits and dashes: $name"
  dir=$(host_pool_dir "$name"); img=$STATE/hosts/$name/pool.img
  mkdir -p "$dir"
  if mountpoint -q "$dir"; then say "pool of $name: already mounted at $dir"; return; fi
  [[ -f $img ]] || truncate -s "$size" "$img"
  if [[ $(blkid -o value -s TYPE "$img" 2>/dev/null) != xfs ]]; then
    mkfs.xfs -q -m reflink=1 "$img" >"$LOG/mkfs-$name.log" 2>&1 || die_log "mkfs.xfs of $name's pool failed" "$LOG/mkfs-$name.log"
  fi
  mount -o loop "$img" "$dir" 2>"$LOG/mount-$name.log" || die_log "could not loop-mount $img" "$LOG/mount-$name.log"
  say "pool of $name: XFS (reflink) mounted at $dir"
}

stop_host_pool() {
  local dir
  dir=$(host_pool_dir "${1:?usage: services.sh stop-host-pool NAME}")
  if mountpoint -q "$dir"; then
    umount "$dir" || { warn "could not unmount $dir (still in use? see: fuser -vm $dir)"; return 1; }
    say "pool of $1: unmounted"
  fi
}

# --------------------------------------------------------------- keystone ---

# Keystone 22 (Zed) from Debian, served by uwsgi on 127.0.0.1:5000, SQLite and
# Fernet keys under $KEYSTONE_DIR. Passwords are generated once into
# $KEYSTONE_SECRETS (0700, files 0600), never committed and never defaults.
# Provisioned (idempotent, through Keystone's REST API with the admin token):
#   roles admin > member > reader (bootstrap's implied roles) and service;
#   projects service, demo, alt; users vb-api (service role on project service:
#   validates tokens), demo-member, demo-reader (demo), alt-member (alt);
#   a volumev3 and a block-storage service whose endpoints point at the Api.

keystone_answers() { curl -sf --max-time 2 "$KEYSTONE_URL/" >/dev/null; }

keystone_running() { pid_alive "$RUN/keystone.pid" uwsgi; }

# secret NAME: prints the password in $KEYSTONE_SECRETS/NAME, generating it first.
secret() {
  local file=$KEYSTONE_SECRETS/$1
  if [[ ! -s $file ]]; then (umask 077; openssl rand -hex 24 >"$file"); fi
  chmod 600 "$file"
  cat "$file"
}

write_keystone_conf() {
  install -d -m 700 "$KEYSTONE_DIR" "$KEYSTONE_SECRETS" "$KEYSTONE_DIR/fernet-keys" "$KEYSTONE_DIR/credential-keys"
  cat >"$KEYSTONE_DIR/keystone.conf" <<EOF
# Generated by deploy/services.sh; edits are overwritten on start.
[DEFAULT]
log_file = $LOG/keystone.log
use_stderr = false
[database]
connection = sqlite:///$KEYSTONE_DIR/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = $KEYSTONE_DIR/fernet-keys
[credential]
key_repository = $KEYSTONE_DIR/credential-keys
[cache]
enabled = false
EOF
}

# ks METHOD PATH [JSON]: Keystone's REST API with the admin token; prints the body.
ks() {
  curl -sf --max-time 30 -X "$1" -H "X-Auth-Token: $KS_ADMIN_TOKEN" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$KEYSTONE_URL$2"
}

# ks_id KIND NAME CREATE_JSON: the id of the named entity, created when missing.
ks_id() {
  local kind=$1 name=$2 body=$3 id
  id=$(ks GET "/${kind}s?name=$name" | jq -r ".${kind}s[0].id // empty")
  [[ -n $id ]] || id=$(ks POST "/${kind}s" "$body" | jq -r ".${kind}.id")
  [[ -n $id && $id != null ]] || die "keystone: could not create $kind $name"
  echo "$id"
}

ks_user() {   # NAME PROJECT_ID ROLE_ID: user with its password, role on the project
  local id
  id=$(ks_id user "$1" "$(jq -nc --arg n "$1" --arg p "$(secret "$1")" --arg d default '{user: {name: $n, password: $p, domain_id: $d, enabled: true}}')")
  ks PUT "/projects/$2/users/$id/roles/$3" >/dev/null || die "keystone: could not grant role to $1"
}

ks_service() {   # TYPE: the service and its three endpoints (URL with the project id, Cinder's catalog form)
  local id iface existing
  id=$(ks GET "/services?type=$1" | jq -r '.services[0].id // empty')
  [[ -n $id ]] || id=$(ks POST /services "$(jq -nc --arg t "$1" '{service: {type: $t, name: ("vb-" + $t), enabled: true}}')" | jq -r .service.id)
  existing=$(ks GET "/endpoints?service_id=$id")
  for iface in public internal admin; do
    if [[ -z $(jq -r --arg i "$iface" '.endpoints[] | select(.interface == $i) | .id' <<<"$existing") ]]; then
      ks POST /endpoints "$(jq -nc --arg s "$id" --arg i "$iface" --arg u "$KEYSTONE_API_ENDPOINT" \
        '{endpoint: {service_id: $s, interface: $i, url: $u, region_id: "RegionOne", enabled: true}}')" >/dev/null
    fi
  done
}

provision_keystone() {
  KS_ADMIN_TOKEN=$(curl -sf --max-time 30 -D - -o /dev/null -H 'Content-Type: application/json' --data "$(jq -nc --arg p "$(secret admin)" \
    '{auth: {identity: {methods: ["password"], password: {user: {name: "admin", domain: {id: "default"}, password: $p}}},
             scope: {project: {name: "admin", domain: {id: "default"}}}}}')" "$KEYSTONE_URL/auth/tokens" \
    | awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }' | tr -d '\r')
  [[ -n $KS_ADMIN_TOKEN ]] || die_log "keystone: the admin cannot log in" "$LOG/keystone.log"
  local member reader service_role service demo alt
  member=$(ks_id role member '{"role": {"name": "member"}}')
  reader=$(ks_id role reader '{"role": {"name": "reader"}}')
  service_role=$(ks_id role service '{"role": {"name": "service"}}')
  service=$(ks_id project service '{"project": {"name": "service", "domain_id": "default"}}')
  demo=$(ks_id project demo '{"project": {"name": "demo", "domain_id": "default"}}')
  alt=$(ks_id project alt '{"project": {"name": "alt", "domain_id": "default"}}')
  ks_user vb-api "$service" "$service_role"
  ks_user demo-member "$demo" "$member"
  ks_user demo-reader "$demo" "$reader"
  ks_user alt-member "$alt" "$member"
  ks_service volumev3
  ks_service block-storage
}

start_keystone() {
  install -d -m 755 "$STATE" "$RUN" "$LOG"
  if keystone_running; then say "keystone: already running"; return; fi
  port_open $KEYSTONE_PORT && die "port $KEYSTONE_PORT is taken by a server that is not ours: $(port_holder $KEYSTONE_PORT); stop it first"
  command -v keystone-manage >/dev/null && command -v uwsgi >/dev/null || die "keystone-manage or uwsgi not found; run: deploy/services.sh install"
  write_keystone_conf
  export OS_KEYSTONE_CONFIG_FILES=$KEYSTONE_DIR/keystone.conf
  if [[ ! -e $KEYSTONE_DIR/bootstrapped ]]; then
    say "keystone: creating its database, keys and admin (log $LOG/keystone-setup.log)"
    local kmanage=(keystone-manage --config-file "$KEYSTONE_DIR/keystone.conf")
    # (each command prints a harmless eventlet traceback at exit)
    # WAL: a reader's open transaction no longer makes a writer fail with "database is locked".
    { "${kmanage[@]}" db_sync \
      && python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$KEYSTONE_DIR/keystone.db" \
      && "${kmanage[@]}" fernet_setup --keystone-user root --keystone-group root \
      && "${kmanage[@]}" credential_setup --keystone-user root --keystone-group root \
      && "${kmanage[@]}" bootstrap --bootstrap-password "$(secret admin)" --bootstrap-admin-url "$KEYSTONE_URL/" \
           --bootstrap-public-url "$KEYSTONE_URL/" --bootstrap-internal-url "$KEYSTONE_URL/" --bootstrap-region-id RegionOne
    } >"$LOG/keystone-setup.log" 2>&1 || die_log "keystone-manage failed" "$LOG/keystone-setup.log"
    touch "$KEYSTONE_DIR/bootstrapped"
  fi
  # Single-threaded workers (SQLite writers lock each other); "Connection: close" because
  # uwsgi's http-socket closes the connection anyway and a client reusing it gets a reset.
  setsid uwsgi --plugin python3 --http-socket "127.0.0.1:$KEYSTONE_PORT" --wsgi-file /usr/bin/keystone-wsgi-public \
    --master --processes 2 --threads 1 --add-header 'Connection: close' --die-on-term >"$LOG/keystone-uwsgi.log" 2>&1 </dev/null &
  echo $! >"$RUN/keystone.pid"
  wait_up $! 120 keystone_answers || die_log "keystone does not answer on $KEYSTONE_URL" "$LOG/keystone-uwsgi.log"
  provision_keystone
  started keystone
  say "keystone: started on $KEYSTONE_URL (passwords in $KEYSTONE_SECRETS)"
}

stop_keystone() {
  if keystone_running; then stop_pid "$RUN/keystone.pid" uwsgi; say "keystone: stopped"; fi
  rm -f "$RUN/keystone.pid"
}

# ------------------------------------------------------------- commands ---

# The master key: made once (32 random bytes, 0600 in a 0700 folder), never overwritten. The programs refuse to
# start without it; `deploy/run.sh rotate-key` replaces it.
ensure_master_key() {
  install -d -m 700 "$KEYS_DIR"
  if [[ ! -s $MASTER_KEY ]]; then
    (umask 077; head -c 32 /dev/urandom >"$MASTER_KEY.tmp" && mv -f "$MASTER_KEY.tmp" "$MASTER_KEY")
    say "made the master key $MASTER_KEY: keep a copy apart from the share, without it the backups cannot be read"
  fi
  chmod 600 "$MASTER_KEY"
}

cmd_start() {
  # 755 even under a strict umask: the postgres user must reach run/ and log/.
  install -d -m 755 "$STATE" "$RUN" "$LOG"
  ensure_master_key
  local t0=$SECONDS
  "$REPO/deploy/pki.sh"   # the CA and the channels' certificates (idempotent; re-issues what is due)
  start_pool
  start_postgres
  start_rabbitmq
  start_ganesha
  start_keystone
  say "all started in $((SECONDS - t0)) s (state: $STATE)"
}

# stop [PART...]: in reverse start order; each part is stopped even if an
# earlier one complains.
cmd_stop() {
  local rc=0 part
  local chosen=" ${*:-prometheus keystone ganesha rpcbind rabbitmq postgres pool} "
  for part in "$@"; do
    [[ " prometheus keystone ganesha rpcbind rabbitmq postgres pool " == *" $part "* ]] || die "unknown part: $part"
  done
  for part in prometheus keystone ganesha rpcbind rabbitmq postgres pool; do
    if [[ $chosen == *" $part "* ]]; then "stop_$part" || rc=1; fi
  done
  return $rc
}

# One line per service; exit 0 only if all of ours are up.
cmd_status() {
  local rc=0
  line() { printf '%-9s %s\n' "$1" "$2"; }
  PGUSER=$(pg_user_if_any); PG_CTL=$(pg_bin pg_ctl || echo false)
  if pg_running; then line postgres "running (pid $(head -n1 "$PGDATA/postmaster.pid"), 127.0.0.1:$PG_PORT)"
  else line postgres stopped; rc=1; fi

  if rabbit_running; then line rabbitmq "running (pid $(cat "$RUN/rabbitmq.pid"), node $RABBIT_NODE, 127.0.0.1:$AMQP_PORT, TLS :$AMQPS_PORT)"
  else line rabbitmq stopped; rc=1; fi

  if pid_alive "$RUN/rpcbind.pid" rpcbind; then line rpcbind "running (pid $(cat "$RUN/rpcbind.pid"), ours)"
  elif rpcbind_up; then line rpcbind "running (not started by us)"
  else line rpcbind stopped; rc=1; fi

  if ganesha_running; then line ganesha "running (pid $(cat "$RUN/ganesha.pid"), $NFS_URL)"
  else line ganesha stopped; rc=1; fi

  if pool_mounted; then line pool "mounted XFS at $POOL"
  elif [[ -d $POOL ]]; then line pool "plain folder $POOL (no reflink)"
  else line pool absent; rc=1; fi

  if keystone_running; then line keystone "running (pid $(cat "$RUN/keystone.pid"), $KEYSTONE_URL)"
  else line keystone stopped; rc=1; fi
  # Optional (start-prometheus): reported, never a failure.
  if prometheus_running; then line prometheus "running (pid $(cat "$RUN/prometheus.pid"), http://127.0.0.1:$PROM_PORT)"
  else line prometheus "stopped (optional: deploy/services.sh start-prometheus)"; fi
  return $rc
}

cmd_env() {
  cat <<EOF
export ConnectionStrings__Postgres="Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=volumebackup"
export ConnectionStrings__RabbitMq="amqp://vb-api:$(rabbit_secret vb-api)@127.0.0.1:$AMQP_PORT/"
export VB_RABBITMQ_AGENT="amqp://vb-backup-agent:$(rabbit_secret vb-backup-agent)@127.0.0.1:$AMQP_PORT/"
export VB_RABBITMQ_NOTIFICATIONS="amqp://vb-notifications:$(rabbit_secret vb-notifications)@127.0.0.1:$AMQP_PORT/"
export VB_RABBITMQ_TLS="amqps://vb-api:$(rabbit_secret vb-api)@127.0.0.1:$AMQPS_PORT/"
export VB_RABBITMQ_TLS_AGENT="amqps://vb-backup-agent:$(rabbit_secret vb-backup-agent)@127.0.0.1:$AMQPS_PORT/"
export VB_PKI="$PKI"
export VB_NFS_URL="$NFS_URL"
export VB_NFS_EXPORT="$NFS_EXPORT"
export VB_POOL="$POOL"
export VB_STATE="$STATE"
export VB_SERVICES="$REPO/deploy/services.sh"
export VB_KEYSTONE_URL="$KEYSTONE_URL"
export VB_KEYSTONE_SECRETS="$KEYSTONE_SECRETS"
export VB_MASTER_KEY_FILE="$MASTER_KEY"
EOF
}

# A virtual host of its own for one test fixture, so fixtures running side by side never share queues.
cmd_vhost() {
  local name=${1:?usage: services.sh vhost NAME}
  rabbit_env
  rabbitmqctl add_vhost "$name" >/dev/null
  rabbit_permit "$name"
}

# A test's virtual host, removed when its fixture ends: a broker holding hundreds of them boots too slowly.
cmd_delete_vhost() {
  local name=${1:?usage: services.sh delete-vhost NAME}
  rabbit_env
  rabbitmqctl delete_vhost "$name" >/dev/null
}

case ${1:-} in
  install)   cmd_install ;;
  start)     case ${2:-} in
               keystone) start_keystone ;;
               rabbitmq) install -d -m 755 "$STATE" "$RUN" "$LOG"; start_rabbitmq ;;
               *) cmd_start ;;
             esac ;;
  stop)      shift; cmd_stop "$@" ;;
  status)    cmd_status ;;
  env)       cmd_env ;;
  vhost)     shift; cmd_vhost "$@" ;;
  delete-vhost) shift; cmd_delete_vhost "$@" ;;
  master-key) install -d -m 755 "$STATE"; ensure_master_key; echo "$MASTER_KEY" ;;
  start-nfs) install -d -m 755 "$STATE" "$RUN" "$LOG"; start_ganesha ;;
  stop-nfs)  stop_ganesha ;;
  start-prometheus) install -d -m 755 "$STATE" "$RUN" "$LOG"; start_prometheus ;;
  start-host-pool) shift; install -d -m 755 "$STATE" "$RUN" "$LOG"; start_host_pool "$@" ;;
  stop-host-pool)  shift; stop_host_pool "$@" ;;
  stop-prometheus)  stop_prometheus ;;
  start-cluster)    start_cluster ;;
  stop-cluster)     stop_cluster ;;
  cluster-status)   cluster_status ;;
  cluster-env)      cmd_cluster_env "${2:-}" ;;
  start-cluster-node) [[ ${2:-} =~ ^[1-3]$ ]] || die "usage: $0 start-cluster-node 1|2|3"; start_cluster_node "$2"; await_cluster_node "$2"; say "rabbitmq cluster: $(cluster_node "$2") started" ;;
  stop-cluster-node)  [[ ${2:-} =~ ^[1-3]$ ]] || die "usage: $0 stop-cluster-node 1|2|3"; stop_cluster_node "$2" ;;
  kill-cluster-node)  [[ ${2:-} =~ ^[1-3]$ ]] || die "usage: $0 kill-cluster-node 1|2|3"; kill_cluster_node "$2" ;;
  *) echo "usage: $0 install|start [keystone]|stop [PART...]|status|env|master-key|start-nfs|stop-nfs|start-prometheus|stop-prometheus|start-host-pool NAME [SIZE]|stop-host-pool NAME|start-cluster|stop-cluster|cluster-status|cluster-env|start-cluster-node N|stop-cluster-node N|kill-cluster-node N" >&2; exit 2 ;;
esac
