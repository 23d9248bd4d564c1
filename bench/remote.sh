#!/usr/bin/env bash
# Remote device I/O against local, side by side: see bench/README.md ("Remote device I/O").
#
#   bench/remote.sh
#
# Starts a VolumeAgent on 127.0.0.12 (a simulated second host) on a folder of the XFS pool, makes a volume there
# (BENCH_GIB GiB holding BENCH_DATA_GIB GiB of data: 25 % holes, 25 % random, 50 % text), and backs it up and restores
# it BENCH_ROUNDS times each way: reading the device file in place (an agent on the volume's host) and through the
# VolumeAgent's ReadDevice/WriteDevice streams (an agent on another host), alternating, each into a fresh container on
# the NFS share. Prints every run, the machine's load average, the mean times and the remote/local ratios. Uses the
# NFS server, pool and deployment CA already running (ENV_FROM: a deploy/services.sh to take `env` from; it starts none
# of them) and removes what it wrote. The VolumeAgent speaks mutual TLS only: it gets a server certificate for
# 127.0.0.12 from deploy/pki.sh, and the bench calls it with the Api's client certificate. Backups are encrypted with
# the bench's own master key (.state/bench/master.key, as bench/run.sh makes it), as the agent encrypts.
#
# Environment: BENCH_GIB=2  BENCH_DATA_GIB=1  BENCH_ROUNDS=2  BENCH_SEED=42  BENCH_NO_BUILD=1  ENV_FROM=deploy/services.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENV_FROM=${ENV_FROM:-deploy/services.sh}
eval "$($ENV_FROM env)"
GIB=${BENCH_GIB:-2} DATA_GIB=${BENCH_DATA_GIB:-1} ROUNDS=${BENCH_ROUNDS:-2} SEED=${BENCH_SEED:-42}
OUT=$PWD/.state/bench
mkdir -p "$OUT/build" "$OUT/results"
say() { echo "remote: $*" >&2; }

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  say "building bench/Bench.csproj and src/VolumeAgent (Release)"
  for project in bench/Bench.csproj src/VolumeAgent/VolumeAgent.csproj; do
    dotnet build "$project" -c Release -nodeReuse:false --artifacts-path "$OUT/build" -v q -nologo >"$OUT/build.log" 2>&1 \
      || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
  done
fi
BIN=$OUT/build/bin/Bench/release/Bench.dll
AGENT=$OUT/build/bin/VolumeAgent/release/VolumeAgent.dll
RUN=remote-$$-$(date +%s)
POOL=$VB_POOL/$RUN
LOG=$OUT/results/$RUN.log
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.12", 0)); print(s.getsockname()[1])')
mkdir -p "$POOL"
MASTER_KEY=$OUT/master.key
[[ -s $MASTER_KEY ]] || (umask 077; head -c 32 /dev/urandom >"$MASTER_KEY")
# The VolumeAgent's certificate names its address; the bench presents the Api's (the VolumeAgent accepts the Api and its zone's agents).
VB_PKI=$VB_PKI deploy/pki.sh issue bench-remote-volume-agent volume-agent "" "IP:127.0.0.12" >&2
CLIENT_TLS=("Tls__CaFile=$VB_PKI/ca.crt" "Tls__CertificateFile=$VB_PKI/api.crt" "Tls__KeyFile=$VB_PKI/api.key")
agent_pid=
cleanup() {
  [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  rm -rf "${POOL:?}" "${VB_NFS_EXPORT:?}/$RUN"
}
trap cleanup EXIT

(cd "$(dirname "$AGENT")" && exec env Volumes__PoolPath="$POOL" "Tls__CaFile=$VB_PKI/ca.crt" \
   "Tls__CertificateFile=$VB_PKI/bench-remote-volume-agent.crt" "Tls__KeyFile=$VB_PKI/bench-remote-volume-agent.key" \
   dotnet "$AGENT" --urls "https://127.0.0.12:$PORT") >"$LOG.volume-agent" 2>&1 &
agent_pid=$!
for _ in $(seq 1 120); do
  curl -sf --max-time 2 --cacert "$VB_PKI/ca.crt" --cert "$VB_PKI/api.crt" --key "$VB_PKI/api.key" "https://127.0.0.12:$PORT/health/ready" >/dev/null && break
  kill -0 "$agent_pid" 2>/dev/null || { tail -n 20 "$LOG.volume-agent" >&2; exit 1; }
  sleep 0.5
done
say "VolumeAgent on 127.0.0.12:$PORT (pool $POOL)"

VOLUME=$(cat /proc/sys/kernel/random/uuid)
say "making a $GIB GiB volume holding $DATA_GIB GiB of data"
dotnet "$BIN" make-image "$POOL/volume-$VOLUME" "$GIB" "$SEED" "$DATA_GIB"
say "$ROUNDS rounds of local and remote backups and restores (load: $(cut -d' ' -f1-3 /proc/loadavg))"
env "${CLIENT_TLS[@]}" BENCH_VOLUME_AGENT_PID="$agent_pid" dotnet "$BIN" remote "$VB_NFS_URL" "$RUN" "https://127.0.0.12:$PORT" "$VOLUME" "$ROUNDS" --master-key="$MASTER_KEY" | tee "$LOG"
say "nproc $(nproc); results in $LOG"
