#!/usr/bin/env bash
# The repository benchmark: one command, see bench/README.md.
#
#   bench/run.sh
#
# Builds bench/ (Release), starts or reuses the local NFS server (deploy/services.sh start-nfs), makes the test
# images once (cached under .state/bench/images with their SHA-256), then runs BENCH_ROUNDS rounds (3) of:
#   raw copy of the 2 GiB image to the share with nfs-cp, and back (+ fsync; checksum checked; the faster of two copies back)
#   full backup, incremental after a 1 % change, restore of the incremental (checksum checked)
#   a full backup of a 16 GiB sparse image holding the same data (peak memory)
# and prints the medians, the ratios and the targets (PASS/MISS). Each operation is its own process, so the peak
# RSS (VmHWM) it prints is that operation's. Services this script started are stopped again at the end.
#
# Environment (all optional):
#   BENCH_ROUNDS=3  BENCH_SEED=42  BENCH_CHANGE_RUN_KIB=256 (size of each changed run)
#   BENCH_CHUNK_KIB, BENCH_WORKERS, BENCH_CONNECTIONS, BENCH_COMPRESSION (lz4|zstd|none), BENCH_LEVEL   RepositoryOptions (default: the agent's defaults)
#   BENCH_SWEEP=1 also measures other RepositoryOptions (chunk size, workers, connections, level), each in every
#     round right after the same baseline, and prints a comparison;  BENCH_CONFIGS='label|--opt=v ...;label|...'
#     sets that list yourself (the first entry gets the full table and the 16 GiB image)
#   BENCH_16G=0 skips the 16 GiB image;  BENCH_NO_BUILD=1 skips the build;  BENCH_PROFILE=1 logs per-call store timings
#   BENCH_ENCRYPTION=both (default: the agent's encrypted format, and the unencrypted one as an extra config in the same
#     rounds, compared at the end) | on (encrypted only) | off (unencrypted only)
#   BENCH_NFS_FROM=/other/checkout/deploy/services.sh  use the NFS server that checkout started (its export), start none
#   BENCH_DROP_CACHES=1 (default, as root) drops the clean page cache at the start of each round (then reads the images
#     back in), so that the raw copies' buffered writes never start by reclaiming a full cache (a suspect in their slow
#     runs, not measured apart from best_copy_back's cause). 0 leaves the cache as it is.
#   Restores are timed as an agent runs them: the second restore of the process (the first, which also compiles the
#   code, is printed as "first in a fresh process").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
services=deploy/services.sh

ROUNDS=${BENCH_ROUNDS:-3}
SEED=${BENCH_SEED:-42}
RUN_KIB=${BENCH_CHANGE_RUN_KIB:-256}
OPTS=()
[[ -n ${BENCH_CHUNK_KIB:-} ]] && OPTS+=("--chunk-kib=$BENCH_CHUNK_KIB")
[[ -n ${BENCH_WORKERS:-} ]] && OPTS+=("--workers=$BENCH_WORKERS")
[[ -n ${BENCH_CONNECTIONS:-} ]] && OPTS+=("--connections=$BENCH_CONNECTIONS")
[[ -n ${BENCH_COMPRESSION:-} ]] && OPTS+=("--compression=$BENCH_COMPRESSION")
[[ -n ${BENCH_LEVEL:-} ]] && OPTS+=("--level=$BENCH_LEVEL")
[[ ${BENCH_PROFILE:-0} == 1 ]] && OPTS+=(--profile)
CONFIGS=("${OPTS[*]:-defaults}|${OPTS[*]}")
if [[ ${BENCH_SWEEP:-0} == 1 ]]; then
  CONFIGS+=("workers 4|--workers=4" "workers 8|--workers=8" "workers 8, connections 4|--workers=8 --connections=4"
            "chunk 1 MiB|--chunk-kib=1024" "chunk 1 MiB, workers 8|--chunk-kib=1024 --workers=8"
            "chunk 2 MiB, workers 8|--chunk-kib=2048 --workers=8" "zstd|--compression=zstd" "zstd level 3|--compression=zstd --level=3")
fi
if [[ -n ${BENCH_CONFIGS:-} ]]; then IFS=';' read -ra CONFIGS <<<"$BENCH_CONFIGS"; fi
ENCRYPTION=${BENCH_ENCRYPTION:-both}
PLAIN=-1   # the config index of the unencrypted twin of config 0, when there is one
case $ENCRYPTION in
  on) ;;
  off) CONFIGS[0]="unencrypted ${CONFIGS[0]%%|*}|${CONFIGS[0]#*|} --plain" ;;
  both) PLAIN=${#CONFIGS[@]}; CONFIGS+=("unencrypted|${CONFIGS[0]#*|} --plain") ;;
  *) echo "bench: BENCH_ENCRYPTION must be both, on or off" >&2; exit 2 ;;
esac

say() { echo "bench: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

eval "$($services env)"
NFS_STATE=$VB_STATE
if [[ -n ${BENCH_NFS_FROM:-} ]]; then
  other=$(env -u VB_STATE "$BENCH_NFS_FROM" env)   # its own state folder, not ours
  eval "$(grep -E '^export (VB_NFS_URL|VB_NFS_EXPORT)=' <<<"$other")"
  NFS_STATE=$(sed -n 's/^export VB_STATE="\(.*\)"$/\1/p' <<<"$other")
fi
BENCH=$VB_STATE/bench
mkdir -p "$BENCH"/{images,work,results,build}
# Images and restores are GiBs: never on a RAM-backed file system.
case $(stat -f -c %T "$BENCH") in tmpfs|ramfs) die "$BENCH is on $(stat -f -c %T "$BENCH"); benchmark data must go to disk" ;; esac
for tool in nfs-cp nfs-ls sync awk; do command -v $tool >/dev/null || die "$tool not found (nfs-cp/nfs-ls: apt-get install libnfs-utils)"; done

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
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

[[ -n ${BENCH_NFS_FROM:-} ]] || $services start-nfs >&2

# The share's server can be restarted under us (the test suite's failure tests do that): wait until it answers.
wait_nfs() {
  for _ in $(seq 120); do timeout 10 nfs-ls "$VB_NFS_URL" >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "$VB_NFS_URL does not answer"
}
ganesha_pid() { cat "$NFS_STATE/run/ganesha.pid" 2>/dev/null || echo none; }
# cpu_of PID: the process's user + system CPU seconds so far (0 when it is gone).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ------------------------------------------------------------------------------------ build ---

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  say "building bench/Bench.csproj (Release)"
  timeout 900 dotnet build bench/Bench.csproj -c Release -nodeReuse:false --artifacts-path "$BENCH/build" -v q -nologo >"$BENCH/build.log" 2>&1 \
    || { tail -n 30 "$BENCH/build.log" >&2; die "build failed (log: $BENCH/build.log)"; }
fi
BIN=$BENCH/build/bin/Bench/release/Bench.dll
# The master key encrypted backups are made with, as deploy/ makes the agents' one (a --plain config ignores it).
MASTER_KEY=$BENCH/master.key
[[ -s $MASTER_KEY ]] || (umask 077; head -c 32 /dev/urandom >"$MASTER_KEY")
[[ -f $BIN ]] || die "$BIN missing: build first"
bench() { timeout 1200 dotnet "$BIN" "$@"; }

# ----------------------------------------------------------------------------------- images ---

# An image is reused when its stamp (generator source + arguments) matches and its checksum still holds.
GEN=$(sha256sum <bench/Images.cs | cut -c1-16)
IMAGES=$BENCH/images
BASE=$IMAGES/base-2g-s$SEED.img
CHANGED=$IMAGES/changed-2g-s$SEED-1pct-${RUN_KIB}k.img
BIG=$IMAGES/sparse-16g-s$SEED.img
TEXT=$IMAGES/text-2g-s$SEED.img   # the second mix for restores: mostly text, few holes

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
if ! cached "$TEXT" "$GEN make-image 2 $SEED 2 text" verify; then
  say "making $TEXT"
  bench make-image "$TEXT" 2 "$SEED" 2 text >&2
  bench sha256 "$TEXT" | cut -d' ' -f1 >"$TEXT.sha256"
  made "$TEXT" "$GEN make-image 2 $SEED 2 text"
fi
TEXT_SHA=$(cat "$TEXT.sha256")
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
  local name=$1 pid0 t0 srv0 rc=0; shift
  wait_nfs
  sync -f "$BENCH"   # untimed: start with no dirty pages left by the previous step, whose writeback would count here
  pid0=$(ganesha_pid)
  srv0=$(cpu_of "$pid0")
  t0=$(now)
  # `times` in the subshell: the CPU time of the command's processes (user + system), however busy the machine is.
  # (The builtin's second line: the children. Not inside a $(...) of its own, whose children would be none.)
  OUT=$("$@" 2>&1; rc=$?; echo TIMES; times; exit $rc) || rc=$?
  SECS=$(since "$t0")
  CPU=$(awk '/^TIMES$/ { f = 1; next } f && ++n == 2 { s = 0; for (i = 1; i <= NF; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.2f", s }' <<<"$OUT")
  SRV=$(awk -v a="$srv0" -v b="$(cpu_of "$pid0")" 'BEGIN { printf "%.2f", b - a }')
  { echo "== $name (${SECS}s, cpu ${CPU}s, NFS server cpu ${SRV}s, exit $rc): $*"; echo "$OUT"; } >>"$LOG"
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

# best_copy_back NAME URL: the copy back twice, the faster one kept (SECS, CPU, SRV). A copy that follows large deletes
# on a file system mounted with online discard, or that has to reclaim a full page cache, took up to three times as
# long here (6.5 s against 2.2 s, mostly system CPU); the baseline is measured at its fastest.
best_copy_back() {
  local name=$1 url=$2 best=() i
  for i in 1 2; do
    rm -f "$BENCH/work/back.img"
    measure "$name ($i)" copy_back "$url" "$BENCH/work/back.img"; ((RESTARTED)) && return
    if ((i == 1)) || awk -v a="$SECS" -v b="${best[0]}" 'BEGIN { exit !(a < b) }'; then best=("$SECS" "$CPU" "$SRV"); fi
  done
  SECS=${best[0]} CPU=${best[1]} SRV=${best[2]}
}

# backups C R TAG: config C's full backup, incremental and restore (checksum checked) in round R, in container TAG.
backups() {
  local c=$1 r=$2 tag=$3 line full_id inc_id got opts
  read -ra opts <<<"${CONFIGS[$c]#*|}"
  opts+=("--master-key=$MASTER_KEY")
  SHARE_DIRS+=("$tag" "$tag-16g")
  measure "r$r c$c full backup" bench backup "$VB_NFS_URL" "$tag" "$BASE" "${opts[@]}"; ((RESTARTED)) && return
  line=$(result); full_id=$(field id "$line")
  R[full_cpu,$c,$r]=$CPU; R[full_srv,$c,$r]=$SRV
  R[full,$c,$r]=$(field seconds "$line"); R[full_mem,$c,$r]=$(field hwm_mib "$line"); R[full_written,$c,$r]=$(field written_mib "$line")
  SETTINGS[$c]=$(grep -o 'chunk_kib=.*' <<<"$line")

  measure "r$r c$c incremental" bench backup "$VB_NFS_URL" "$tag" "$CHANGED" "$full_id" "${opts[@]}"; ((RESTARTED)) && return
  line=$(result); inc_id=$(field id "$line")
  R[inc_cpu,$c,$r]=$CPU; R[inc_srv,$c,$r]=$SRV
  R[inc,$c,$r]=$(field seconds "$line"); R[inc_mem,$c,$r]=$(field hwm_mib "$line"); R[inc_written,$c,$r]=$(field written_mib "$line")

  measure "r$r c$c restore" bench restore "$VB_NFS_URL" "$tag" "$inc_id" "$BENCH/work/restored.img" --warm "${opts[@]}"; ((RESTARTED)) && return
  line=$(result)
  R[restore_cpu,$c,$r]=$CPU; R[restore_srv,$c,$r]=$SRV   # of both restores
  R[restore,$c,$r]=$(field seconds "$line"); R[restore_cold,$c,$r]=$(field cold_seconds "$line"); R[restore_mem,$c,$r]=$(field hwm_mib "$line")
  R[restore_own_cpu,$c,$r]=$(field cpu_seconds "$line"); R[restore_cold_cpu,$c,$r]=$(field cold_cpu_seconds "$line")
  got=$(bench sha256 "$BENCH/work/restored.img" | cut -d' ' -f1)
  [[ $got == "$CHANGED_SHA" ]] || die "r$r c$c: RESTORE MISMATCH: sha256 $got, expected $CHANGED_SHA (the changed image); log: $LOG"
  rm -f "$BENCH/work/restored.img"

  if ((c == 0)); then
    # The second image (mostly text): a full backup and its restore, against the raw copy back of the same image.
    SHARE_DIRS+=("$tag-text")
    measure "r$r c$c text full backup" bench backup "$VB_NFS_URL" "$tag-text" "$TEXT" "${opts[@]}"; ((RESTARTED)) && return
    line=$(result); full_id=$(field id "$line")
    measure "r$r c$c text restore" bench restore "$VB_NFS_URL" "$tag-text" "$full_id" "$BENCH/work/restored.img" --warm "${opts[@]}"; ((RESTARTED)) && return
    line=$(result); R[restore_text,$r]=$(field seconds "$line"); R[restore_text_cold,$r]=$(field cold_seconds "$line"); R[restore_text_cpu,$r]=$CPU
    R[restore_text_own_cpu,$r]=$(field cpu_seconds "$line"); R[restore_text_cold_cpu,$r]=$(field cold_cpu_seconds "$line")
    got=$(bench sha256 "$BENCH/work/restored.img" | cut -d' ' -f1)
    [[ $got == "$TEXT_SHA" ]] || die "r$r: TEXT RESTORE MISMATCH: sha256 $got, expected $TEXT_SHA; log: $LOG"
    rm -rf "$BENCH/work/restored.img" "${VB_NFS_EXPORT:?}/$tag-text"
  fi

  if ((c == 0)) && [[ ${BENCH_16G:-1} == 1 ]]; then
    measure "r$r c$c 16 GiB backup" bench backup "$VB_NFS_URL" "$tag-16g" "$BIG" "${opts[@]}"; ((RESTARTED)) && return
    line=$(result)
    R[big,$c,$r]=$(field seconds "$line"); R[big_mem,$c,$r]=$(field hwm_mib "$line")
  fi
  rm -rf "${VB_NFS_EXPORT:?}/$tag" "${VB_NFS_EXPORT:?}/$tag-16g"
  say "round $r [${CONFIGS[$c]%%|*}]: full ${R[full,$c,$r]}s incr ${R[inc,$c,$r]}s restore ${R[restore,$c,$r]}s (checksum ok)${R[big,$c,$r]:+ | 16 GiB ${R[big,$c,$r]}s} | peak ${R[full_mem,$c,$r]}/${R[inc_mem,$c,$r]}/${R[restore_mem,$c,$r]}${R[big_mem,$c,$r]:+/${R[big_mem,$c,$r]}} MiB"
}

# round R TAG: the baseline, then every config's backups; returns early with RESTARTED=1 when the server restarted.
round() {
  local r=$1 tag=$2 c
  SHARE_DIRS+=("$tag.raw.img")
  if [[ ${BENCH_DROP_CACHES:-1} == 1 && -w /proc/sys/vm/drop_caches ]]; then
    sync; echo 1 >/proc/sys/vm/drop_caches
    cat "$BASE" "$CHANGED" "$TEXT" >/dev/null   # the images are read from memory, as in every run before this option
  fi
  # Baseline: the raw image, holes and all, to the share and back (nfs-cp: one stream of 1 MiB WRITEs; libnfs commits at
  # close). nfs-cp creates its target with O_EXCL: remove it first.
  rm -f "$VB_NFS_EXPORT/$tag.raw.img" "$BENCH/work/back.img"
  measure "r$r raw copy to NFS" copy_up "$VB_NFS_URL/$tag.raw.img"; ((RESTARTED)) && return
  R[raw_up,$r]=$SECS; R[raw_up_cpu,$r]=$CPU; R[raw_up_srv,$r]=$SRV
  best_copy_back "r$r raw copy back" "$VB_NFS_URL/$tag.raw.img"; ((RESTARTED)) && return
  R[raw_back,$r]=$SECS; R[raw_back_cpu,$r]=$CPU; R[raw_back_srv,$r]=$SRV
  [[ $(bench sha256 "$BENCH/work/back.img" | cut -d' ' -f1) == "$BASE_SHA" ]] || die "r$r: the raw copy back differs from the image"
  rm -f "$BENCH/work/back.img" "$VB_NFS_EXPORT/$tag.raw.img"
  SHARE_DIRS+=("$tag.text.img")
  nfs-cp "$TEXT" "$VB_NFS_URL/$tag.text.img" >/dev/null   # untimed: only the copy back of the second image is compared
  best_copy_back "r$r raw copy back, text image" "$VB_NFS_URL/$tag.text.img"; ((RESTARTED)) && return
  R[raw_back_text,$r]=$SECS
  [[ $(bench sha256 "$BENCH/work/back.img" | cut -d' ' -f1) == "$TEXT_SHA" ]] || die "r$r: the raw copy back differs from the text image"
  rm -f "$BENCH/work/back.img" "$VB_NFS_EXPORT/$tag.text.img"
  say "round $r: raw copy to NFS ${R[raw_up,$r]}s, back ${R[raw_back,$r]}s, text image back ${R[raw_back_text,$r]}s (checksums ok)"
  # Every other round the configs run in reverse order, so that none always runs first (or second, with warmer caches).
  local order=() i
  for ((i = 0; i < ${#CONFIGS[@]}; i++)); do
    if ((r % 2 == 0)); then order=("$i" "${order[@]}"); else order+=("$i"); fi
  done
  for c in "${order[@]}"; do
    backups "$c" "$r" "$tag-c$c"; ((RESTARTED)) && return
  done
  return 0
}

declare -A SETTINGS
say "configs: $(printf '[%s] ' "${CONFIGS[@]%%|*}"); $ROUNDS rounds; log $LOG"
for ((r = 1; r <= ROUNDS; r++)); do
  for attempt in 1 2 3; do
    RESTARTED=0
    round "$r" "$RUN_ID-r$r-$attempt"
    ((RESTARTED)) || break
    for d in "${SHARE_DIRS[@]}"; do [[ $d == "$RUN_ID-r$r-$attempt"* ]] && rm -rf "${VB_NFS_EXPORT:?}/$d"; done
    say "round $r: running it again (NFS server restarted)"
  done
  ((RESTARTED == 0)) || die "the NFS server kept restarting"
done

# ------------------------------------------------------------------------------------ report ---

median() { grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }   # of stdin's lines
values() { local k=$1 r; for ((r = 1; r <= ROUNDS; r++)); do echo "${R[$k,$r]:-}"; done; }   # values KEY or values KEY,C
med() { values "$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "PASS" : "MISS" }'; }

{
  echo "Repository benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average at the start $LOAD_START, at the end $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds, seed $SEED"
  echo "Format: config 0 $([[ ${CONFIGS[0]} == *--plain* ]] && echo unencrypted || echo "encrypted (AES-256-GCM, HMAC-SHA-256 names)")"
  echo "Images: 2 GiB (25 % holes, 25 % random, 50 % text), second image 2 GiB (5 % holes, 5 % random, 90 % text); change: 1 % in ${RUN_KIB} KiB runs; share: $VB_NFS_URL"
  echo "RepositoryOptions: ${SETTINGS[0]}"
  echo
  printf '%-44s %10s   %s\n' "measure" "median" "rounds"
  row() { printf '%-44s %10s   %s\n' "$1" "$(med "$2") $3" "$(values "$2" | paste -sd' ')"; }
  row "raw copy to NFS (nfs-cp)" raw_up s
  row "raw copy back (nfs-cp + fsync, best of 2)" raw_back s
  row "full backup" full,0 s
  row "incremental after 1 % change" inc,0 s
  row "restore of the incremental" restore,0 s
  row "  the same, first in a fresh process" restore_cold,0 s
  row "raw copy back, text image (best of 2)" raw_back_text s
  row "restore of a full, text image" restore_text s
  row "  the same, first in a fresh process" restore_text_cold s
  [[ ${BENCH_16G:-1} == 1 ]] && row "full backup, 16 GiB sparse image" big,0 s
  row "written by the full backup" full_written,0 MiB
  row "written by the incremental" inc_written,0 MiB
  row "CPU, raw copy to NFS: nfs-cp" raw_up_cpu s
  row "CPU, raw copy to NFS: NFS server" raw_up_srv s
  row "CPU, raw copy back: nfs-cp + sync" raw_back_cpu s
  row "CPU, raw copy back: NFS server" raw_back_srv s
  row "CPU, full backup: agent" full_cpu,0 s
  row "CPU, full backup: NFS server" full_srv,0 s
  row "CPU, incremental: agent" inc_cpu,0 s
  row "CPU, incremental: NFS server" inc_srv,0 s
  row "CPU, restore: agent (the timed one)" restore_own_cpu,0 s
  row "  first in a fresh process" restore_cold_cpu,0 s
  row "CPU, both restores: NFS server" restore_srv,0 s
  row "CPU, text restore: agent (the timed one)" restore_text_own_cpu s
  row "  first in a fresh process" restore_text_cold_cpu s
  row "peak RSS, full backup 2 GiB" full_mem,0 MiB
  row "peak RSS, incremental 2 GiB" inc_mem,0 MiB
  row "peak RSS, restore 2 GiB" restore_mem,0 MiB
  [[ ${BENCH_16G:-1} == 1 ]] && row "peak RSS, full backup 16 GiB" big_mem,0 MiB
  echo
  target() { printf '%-44s %10s   target <= %-6s %s\n' "$1" "$2" "$3" "$(verdict "$2" "$3")"; }
  target "full backup / raw copy" "$(ratio "$(med full,0)" "$(med raw_up)")" 0.70
  target "incremental / full backup" "$(ratio "$(med inc,0)" "$(med full,0)")" 0.25
  target "restore / raw copy back" "$(ratio "$(med restore,0)" "$(med raw_back)")" 0.80
  target "restore / raw copy back, text image" "$(ratio "$(med restore_text)" "$(med raw_back_text)")" 0.80
  printf '%-44s %10s   (first restore of a fresh process; no target)\n' "  the same, first in a fresh process" "$(ratio "$(med restore_cold,0)" "$(med raw_back)") $(ratio "$(med restore_text_cold)" "$(med raw_back_text)")"
  peak=$(for k in full_mem,0 inc_mem,0 restore_mem,0 big_mem,0; do values "$k"; done | sort -g | tail -n1)
  target "peak RSS, any operation (MiB)" "$peak" 512
  if [[ ${BENCH_16G:-1} == 1 ]]; then
    # "Not growing": the 16 GiB backup's peak within 10 % of the 2 GiB backup's.
    target "peak RSS 16 GiB / 2 GiB backup" "$(ratio "$(med big_mem,0)" "$(med full_mem,0)")" 1.10
  fi
  if ((PLAIN >= 0)); then
    echo
    echo "Encryption: config 0 (encrypted) against the same options unencrypted, in the same rounds (medians; per round: encrypted/unencrypted)"
    enc_row() {   # enc_row LABEL KEY
      local per="" r
      for ((r = 1; r <= ROUNDS; r++)); do per+="$(ratio "${R[$2,0,$r]}" "${R[$2,$PLAIN,$r]}") "; done
      printf '%-44s %10s   target <= %-6s %s   (%s s vs %s s; per round %s)\n' "$1" "$(ratio "$(med "$2",0)" "$(med "$2,$PLAIN")")" 1.10 \
        "$(verdict "$(ratio "$(med "$2",0)" "$(med "$2,$PLAIN")")" 1.10)" "$(med "$2",0)" "$(med "$2,$PLAIN")" "${per% }"
    }
    enc_row "full backup, encrypted / unencrypted" full
    enc_row "restore, encrypted / unencrypted" restore
    enc_row "incremental, encrypted / unencrypted" inc
    printf '%-44s %10s\n' "CPU full backup (agent), enc / unenc" "$(ratio "$(med full_cpu,0)" "$(med full_cpu,$PLAIN)")"
    printf '%-44s %10s\n' "CPU restore (agent), enc / unenc" "$(ratio "$(med restore_cpu,0)" "$(med restore_cpu,$PLAIN)")"
  fi
  if ((${#CONFIGS[@]} > 1)); then
    echo
    echo "Other RepositoryOptions, measured in the same rounds (medians; ratios against the same baseline medians):"
    echo "(cpu: seconds of CPU, agent + NFS server, of the full backup / incremental / restore: steadier than wall time on a busy machine)"
    printf '%-26s %6s %6s %7s %8s %9s %12s %8s  %s\n' config full incr restore full/raw incr/full restore/back "peak MiB" "cpu full/incr/restore"
    for ((c = 0; c < ${#CONFIGS[@]}; c++)); do
      peak=$(for k in full_mem,$c inc_mem,$c restore_mem,$c; do values "$k"; done | sort -g | tail -n1)
      cpu=$(for k in full inc restore; do awk -v a="$(med ${k}_cpu,$c)" -v b="$(med ${k}_srv,$c)" 'BEGIN { printf "%.1f ", a + b }'; done)
      printf '%-26s %6s %6s %7s %8s %9s %12s %8s  %s\n' "${CONFIGS[$c]%%|*}" "$(med full,$c)" "$(med inc,$c)" "$(med restore,$c)" \
        "$(ratio "$(med full,$c)" "$(med raw_up)")" "$(ratio "$(med inc,$c)" "$(med full,$c)")" "$(ratio "$(med restore,$c)" "$(med raw_back)")" "$peak" "${cpu% }"
    done
  fi
} | tee "$TABLE"
say "table: $TABLE; details: $LOG"
