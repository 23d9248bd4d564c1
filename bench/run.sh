#!/usr/bin/env bash
# The repository benchmark: one command, see bench/README.md.
#
#   bench/run.sh
#
# Builds bench/ (Release), starts or reuses the local NFS server (deploy/services.sh start-nfs), makes the test
# images once (cached under .state/bench/images with their SHA-256), then runs BENCH_ROUNDS rounds (3) of:
#   raw copy of the 2 GiB image to the share with nfs-cp, and back (+ fsync; checksum checked)
#   full backup, incremental after a 1 % change, restore of the incremental (checksum checked)
#   a full backup of a 16 GiB sparse image holding the same data (peak memory)
# and prints the medians, the ratios and the targets (PASS/MISS). Each operation is its own process, so the peak
# RSS (VmHWM) it prints is that operation's. Services this script started are stopped again at the end.
#
# Environment (all optional):
#   BENCH_ROUNDS=3  BENCH_SEED=42  BENCH_CHANGE_RUN_KIB=256 (size of each changed run)
#   BENCH_CHUNK_KIB, BENCH_WORKERS, BENCH_CONNECTIONS, BENCH_LEVEL   RepositoryOptions (default: the agent's defaults)
#   BENCH_16G=0 skips the 16 GiB image;  BENCH_NO_BUILD=1 skips the build;  BENCH_PROFILE=1 prints per-call store timings
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
services=deploy/services.sh

ROUNDS=${BENCH_ROUNDS:-3}
SEED=${BENCH_SEED:-42}
RUN_KIB=${BENCH_CHANGE_RUN_KIB:-256}
OPTS=()
[[ -n ${BENCH_CHUNK_KIB:-} ]] && OPTS+=("--chunk-kib=$BENCH_CHUNK_KIB")
[[ -n ${BENCH_WORKERS:-} ]] && OPTS+=("--workers=$BENCH_WORKERS")
[[ -n ${BENCH_CONNECTIONS:-} ]] && OPTS+=("--connections=$BENCH_CONNECTIONS")
[[ -n ${BENCH_LEVEL:-} ]] && OPTS+=("--level=$BENCH_LEVEL")
[[ ${BENCH_PROFILE:-0} == 1 ]] && OPTS+=(--profile)

say() { echo "bench: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

eval "$($services env)"
BENCH=$VB_STATE/bench
mkdir -p "$BENCH"/{images,work,results,build}
# Images and restores are GiBs: never on a RAM-backed file system.
case $(stat -f -c %T "$BENCH") in tmpfs|ramfs) die "$BENCH is on $(stat -f -c %T "$BENCH"); benchmark data must go to disk" ;; esac
for tool in nfs-cp nfs-ls sync awk; do command -v $tool >/dev/null || die "$tool not found (nfs-cp/nfs-ls: apt-get install libnfs-utils)"; done

STAMP=$(date +%Y%m%d-%H%M%S)
LOG=$BENCH/results/$STAMP.log
TABLE=$BENCH/results/$STAMP.txt
RUN_ID=b$$-$(date +%s)   # names of this run's folders on the share
: >"$LOG"

# ------------------------------------------------------------------ services and clean-up ---

export VB_STARTED_FILE
VB_STARTED_FILE=$(mktemp)
SHARE_DIRS=()
cleanup() {
  local rc=$? parts
  for d in "${SHARE_DIRS[@]}"; do rm -rf "${VB_NFS_EXPORT:?}/$d"; done
  rm -f "$BENCH"/work/back.img "$BENCH"/work/restored.img
  mapfile -t parts <"$VB_STARTED_FILE"
  rm -f "$VB_STARTED_FILE"
  if ((${#parts[@]} > 0)); then
    $services stop "${parts[@]}" >&2 || say "WARNING: stopping ${parts[*]} failed"
    say "stopped the services this run started: ${parts[*]}"
  fi
  exit $rc
}
trap cleanup EXIT

$services start-nfs >&2

# The share's server can be restarted under us (the test suite's failure tests do that): wait until it answers.
wait_nfs() {
  for _ in $(seq 120); do timeout 10 nfs-ls "$VB_NFS_URL" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$VB_NFS_URL does not answer"
}
ganesha_pid() { cat "$VB_STATE/run/ganesha.pid" 2>/dev/null || echo none; }

# ------------------------------------------------------------------------------------ build ---

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  say "building bench/Bench.csproj (Release)"
  timeout 900 dotnet build bench/Bench.csproj -c Release -nodeReuse:false --artifacts-path "$BENCH/build" -v q -nologo >"$BENCH/build.log" 2>&1 \
    || { tail -n 30 "$BENCH/build.log" >&2; die "build failed (log: $BENCH/build.log)"; }
fi
BIN=$BENCH/build/bin/Bench/release/Bench.dll
[[ -f $BIN ]] || die "$BIN missing: build first"
bench() { timeout 1200 dotnet "$BIN" "$@"; }

# ----------------------------------------------------------------------------------- images ---

# An image is reused when its stamp (generator source + arguments) matches and its checksum still holds.
GEN=$(cat bench/Images.cs | sha256sum | cut -c1-16)
IMAGES=$BENCH/images
BASE=$IMAGES/base-2g-s$SEED.img
CHANGED=$IMAGES/changed-2g-s$SEED-1pct-${RUN_KIB}k.img
BIG=$IMAGES/sparse-16g-s$SEED.img

cached() {   # cached IMAGE STAMP [verify]
  [[ -f $1 && -f $1.stamp && $(cat "$1.stamp") == "$2" && -f $1.sha256 ]] || return 1
  [[ ${3:-} != verify ]] && return 0
  [[ $(bench sha256 "$1" | cut -d' ' -f1) == $(cat "$1.sha256") ]] || { say "$1: checksum changed, making it again"; return 1; }
}
made() { echo "$2" >"$1.stamp"; }

if ! cached "$BASE" "$GEN make-image 2 $SEED" verify; then
  say "making $BASE"
  bench make-image "$BASE" 2 "$SEED" >&2
  bench sha256 "$BASE" | cut -d' ' -f1 >"$BASE.sha256"
  made "$BASE" "$GEN make-image 2 $SEED"
  rm -f "$CHANGED.stamp"
fi
if ! cached "$CHANGED" "$GEN change 1 $SEED $RUN_KIB $(cat "$BASE.sha256")" verify; then
  say "making $CHANGED"
  rm -f "$CHANGED"
  cp --sparse=always "$BASE" "$CHANGED"
  bench change "$CHANGED" 1 "$SEED" "$RUN_KIB" >&2
  bench sha256 "$CHANGED" | cut -d' ' -f1 >"$CHANGED.sha256"
  made "$CHANGED" "$GEN change 1 $SEED $RUN_KIB $(cat "$BASE.sha256")"
fi
if [[ ${BENCH_16G:-1} == 1 ]] && ! cached "$BIG" "$GEN make-image 16 $SEED 2"; then
  say "making $BIG"
  bench make-image "$BIG" 16 "$SEED" 2 >&2
  echo "(not computed: 16 GiB of mostly zeros)" >"$BIG.sha256"
  made "$BIG" "$GEN make-image 16 $SEED 2"
fi
BASE_SHA=$(cat "$BASE.sha256")
CHANGED_SHA=$(cat "$CHANGED.sha256")

# --------------------------------------------------------------------------------- measuring ---

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -n1; }

# measure NAME CMD...: runs CMD, logs its output, sets OUT (the output) and SECS (wall time). When the NFS server
# was restarted meanwhile (the test suite's failure tests do that), the time says nothing and the share may hold
# half a backup: it sets RESTARTED=1, and the round starts again from scratch.
measure() {
  local name=$1 pid0 t0 rc=0; shift
  wait_nfs
  sync -f "$BENCH"   # untimed: start with no dirty pages left by the previous step, whose writeback would count here
  pid0=$(ganesha_pid)
  t0=$(now)
  OUT=$("$@" 2>&1) || rc=$?
  SECS=$(since "$t0")
  { echo "== $name (${SECS}s, exit $rc): $*"; echo "$OUT"; } >>"$LOG"
  if [[ $(ganesha_pid) != "$pid0" ]] || ! timeout 10 nfs-ls "$VB_NFS_URL" >/dev/null 2>&1; then
    say "$name: the NFS server restarted meanwhile"
    RESTARTED=1
    return 0
  fi
  ((rc == 0)) || { echo "$OUT" | tail -n 20 >&2; die "$name failed (exit $rc); log: $LOG"; }
}

declare -A R   # R[metric,round]
copy_up()   { nfs-cp "$BASE" "$1" >/dev/null; }
copy_back() { nfs-cp "$1" "$2" >/dev/null && sync "$2"; }   # sync FILE: fsync, as a restore does
result() { grep '^RESULT' <<<"$OUT" || die "no RESULT line; log: $LOG"; }

# round R TAG: one round; returns early with RESTARTED=1 when the server restarted under it.
round() {
  local r=$1 tag=$2 line full_id inc_id got
  SHARE_DIRS+=("$tag" "$tag-16g" "$tag.raw.img")

  # Baseline: the raw image, holes and all, to the share and back (nfs-cp: one stream of 1 MiB WRITEs, COMMIT at
  # close). nfs-cp creates its target with O_EXCL: remove it first.
  rm -f "$VB_NFS_EXPORT/$tag.raw.img" "$BENCH/work/back.img"
  measure "r$r raw copy to NFS" copy_up "$VB_NFS_URL/$tag.raw.img"; ((RESTARTED)) && return; R[raw_up,$r]=$SECS
  measure "r$r raw copy back" copy_back "$VB_NFS_URL/$tag.raw.img" "$BENCH/work/back.img"; ((RESTARTED)) && return; R[raw_back,$r]=$SECS
  [[ $(bench sha256 "$BENCH/work/back.img" | cut -d' ' -f1) == "$BASE_SHA" ]] || die "r$r: the raw copy back differs from the image"
  rm -f "$BENCH/work/back.img" "$VB_NFS_EXPORT/$tag.raw.img"

  measure "r$r full backup" bench backup "$VB_NFS_URL" "$tag" "$BASE" "${OPTS[@]}"; ((RESTARTED)) && return
  line=$(result); full_id=$(field id "$line")
  R[full,$r]=$(field seconds "$line"); R[full_mem,$r]=$(field hwm_mib "$line"); R[full_written,$r]=$(field written_mib "$line")
  CONFIG=$(grep -o 'chunk_kib=.*' <<<"$line")

  measure "r$r incremental" bench backup "$VB_NFS_URL" "$tag" "$CHANGED" "$full_id" "${OPTS[@]}"; ((RESTARTED)) && return
  line=$(result); inc_id=$(field id "$line")
  R[inc,$r]=$(field seconds "$line"); R[inc_mem,$r]=$(field hwm_mib "$line"); R[inc_written,$r]=$(field written_mib "$line")

  measure "r$r restore" bench restore "$VB_NFS_URL" "$tag" "$inc_id" "$BENCH/work/restored.img" "${OPTS[@]}"; ((RESTARTED)) && return
  line=$(result)
  R[restore,$r]=$(field seconds "$line"); R[restore_mem,$r]=$(field hwm_mib "$line")
  got=$(bench sha256 "$BENCH/work/restored.img" | cut -d' ' -f1)
  [[ $got == "$CHANGED_SHA" ]] || die "r$r: RESTORE MISMATCH: sha256 $got, expected $CHANGED_SHA (the changed image); log: $LOG"
  rm -f "$BENCH/work/restored.img"

  if [[ ${BENCH_16G:-1} == 1 ]]; then
    measure "r$r 16 GiB backup" bench backup "$VB_NFS_URL" "$tag-16g" "$BIG" "${OPTS[@]}"; ((RESTARTED)) && return
    line=$(result)
    R[big,$r]=$(field seconds "$line"); R[big_mem,$r]=$(field hwm_mib "$line")
  fi
  rm -rf "${VB_NFS_EXPORT:?}/$tag" "${VB_NFS_EXPORT:?}/$tag-16g"
  say "round $r: raw up ${R[raw_up,$r]}s back ${R[raw_back,$r]}s | full ${R[full,$r]}s incr ${R[inc,$r]}s restore ${R[restore,$r]}s (checksum ok)${R[big,$r]:+ | 16 GiB ${R[big,$r]}s} | peak ${R[full_mem,$r]}/${R[inc_mem,$r]}/${R[restore_mem,$r]}${R[big_mem,$r]:+/${R[big_mem,$r]}} MiB"
}

say "config: ${OPTS[*]:-agent defaults}; $ROUNDS rounds; log $LOG"
for ((r = 1; r <= ROUNDS; r++)); do
  for attempt in 1 2 3; do
    RESTARTED=0
    round "$r" "$RUN_ID-r$r-$attempt"
    ((RESTARTED)) || break
    rm -rf "${VB_NFS_EXPORT:?}/$RUN_ID-r$r-$attempt" "${VB_NFS_EXPORT:?}/$RUN_ID-r$r-$attempt-16g" "${VB_NFS_EXPORT:?}/$RUN_ID-r$r-$attempt.raw.img"
    say "round $r: running it again (NFS server restarted)"
  done
  ((RESTARTED == 0)) || die "the NFS server kept restarting"
done

# ------------------------------------------------------------------------------------ report ---

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
values() { local k=$1 r; for ((r = 1; r <= ROUNDS; r++)); do echo "${R[$k,$r]:-}"; done; }
med() { median $(values "$1"); }

{
  echo "Repository benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds, seed $SEED"
  echo "Image: 2 GiB (25 % holes, 25 % random, 50 % text); change: 1 % in ${RUN_KIB} KiB runs; share: $VB_NFS_URL"
  echo "RepositoryOptions: $CONFIG"
  echo
  printf '%-38s %10s   %s\n' "measure" "median" "rounds"
  row() { printf '%-38s %10s   %s\n' "$1" "$(med "$2") $3" "$(values "$2" | paste -sd' ')"; }
  row "raw copy to NFS (nfs-cp)" raw_up s
  row "raw copy back (nfs-cp + fsync)" raw_back s
  row "full backup" full s
  row "incremental after 1 % change" inc s
  row "restore of the incremental (+ sha256)" restore s
  [[ ${BENCH_16G:-1} == 1 ]] && row "full backup, 16 GiB sparse image" big s
  row "written by the full backup" full_written MiB
  row "written by the incremental" inc_written MiB
  row "peak RSS, full backup 2 GiB" full_mem MiB
  row "peak RSS, incremental 2 GiB" inc_mem MiB
  row "peak RSS, restore 2 GiB" restore_mem MiB
  [[ ${BENCH_16G:-1} == 1 ]] && row "peak RSS, full backup 16 GiB" big_mem MiB
  echo
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "PASS" : "MISS" }'; }
  target() { printf '%-38s %10s   target <= %-6s %s\n' "$1" "$2" "$3" "$(verdict "$2" "$3")"; }
  target "full backup / raw copy" "$(ratio "$(med full)" "$(med raw_up)")" 0.70
  target "incremental / full backup" "$(ratio "$(med inc)" "$(med full)")" 0.25
  target "restore / raw copy back" "$(ratio "$(med restore)" "$(med raw_back)")" 1.00
  peak=$(median $(for k in full_mem inc_mem restore_mem big_mem; do values $k; done | sort -g | tail -n1))
  target "peak RSS, any operation (MiB)" "$peak" 512
  if [[ ${BENCH_16G:-1} == 1 ]]; then
    # "Not growing": the 16 GiB backup's peak within 10 % of the 2 GiB backup's.
    target "peak RSS 16 GiB / 2 GiB backup" "$(ratio "$(med big_mem)" "$(med full_mem)")" 1.10
  fi
} | tee "$TABLE"
say "table: $TABLE; details: $LOG"
