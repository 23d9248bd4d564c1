#!/usr/bin/env bash
# Changed-block tracking, side by side with a full-read incremental: see bench/README.md ("Changed-block tracking").
#
#   bench/cbt.sh
#
# For a 2 GiB volume (its data pattern: 25 % holes, 25 % random, 50 % text) and a 16 GiB volume holding 8 GiB of data,
# made on the XFS reflink pool as real volumes of a VolumePool: a full backup, 1 % of the data changed (runs of 256 KiB
# spread over the volume), the CBT incremental and then a full-read incremental of the same state (into the
# same container), a CBT incremental with no change at all, and at 2 GiB the restores of both incrementals (checksums
# checked). Prints the times, the bytes read and the targets. Uses the NFS server and pool already running (the `env` of ENV_FROM,
# default this checkout's deploy/services.sh; another checkout's when its services are the ones running, for example
# ENV_FROM=../other-checkout/deploy/services.sh); it starts and stops nothing, and removes what it wrote.
#
# Environment: BENCH_SEED=42  BENCH_CHANGE_RUN_KIB=256  BENCH_SIZES="2:2 16:8" (GiB:dataGiB)  BENCH_NO_BUILD=1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENV_FROM=${ENV_FROM:-deploy/services.sh}   # relative to the checkout (the line above cds there)
eval "$($ENV_FROM env)"
SEED=${BENCH_SEED:-42}
RUN_KIB=${BENCH_CHANGE_RUN_KIB:-256}
SIZES=${BENCH_SIZES:-"2:2 16:8"}
OUT=.state/bench
mkdir -p "$OUT/build" "$OUT/results"
say() { echo "cbt: $*" >&2; }

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  say "building bench/Bench.csproj (Release)"
  dotnet build bench/Bench.csproj -c Release -nodeReuse:false --artifacts-path "$OUT/build" -v q -nologo >"$OUT/build.log" 2>&1 \
    || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
fi
BIN=$OUT/build/bin/Bench/release/Bench.dll
RUN=cbt-$$-$(date +%s)
POOL=$VB_POOL/$RUN
LOG=$OUT/results/$RUN.log
mkdir -p "$POOL"
trap 'rm -rf "${POOL:?}" "${VB_NFS_EXPORT:?}/$RUN"' EXIT   # the share's folder of this run: a container per size

for pair in $SIZES; do
  size=${pair%:*} data=${pair#*:}
  say "$size GiB volume, $data GiB of data"
  dotnet "$BIN" cbt "$VB_NFS_URL" "$RUN/v$size" "$POOL" "$size" "$data" "$SEED" "$RUN_KIB" >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; say "the $size GiB run failed; log: $LOG"; exit 1; }
  grep "^RESULT op=[a-z_]* size_gib=$size " "$LOG" >&2
done

awk '
  /^RESULT/ {
    delete f; for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    s = f["size_gib"]; if (!(s in seen)) { seen[s] = 1; order[++n] = s }
    if (f["op"] == "changed") changed[s] = f["changed_mib"]
    else if (f["op"] == "same_chunks") same[s] = f["same"]
    else if (f["op"] ~ /^restore_(cbt|fullread)$/) { rsum[s, f["op"]] += f["seconds"]; rn[s, f["op"]]++; t[s, f["op"]] = rsum[s, f["op"]] / rn[s, f["op"]] }
    else { t[s, f["op"]] = f["seconds"]; rd[s, f["op"]] = f["read_mib"]; cbt[s, f["op"]] = f["cbt"]; dev[s, f["op"]] = f["device_seconds"] }
  }
  function verdict(ok) { return ok ? "PASS" : "MISS" }
  END {
    printf "%-8s %9s %9s %9s %9s %11s %11s %11s %9s %9s\n", "volume", "full s", "fullread", "cbt s", "nochange", "read cbt", "changed", "read full", "cbt/full", "cbt/fr"
    for (k = 1; k <= n; k++) {
      s = order[k]
      printf "%-8s %9.3f %9.3f %9.3f %9.3f %8.1f MiB %7.1f MiB %7.1f MiB %9.3f %9.3f\n", s " GiB", t[s, "full"], t[s, "fullread"], t[s, "cbt"], t[s, "nochange"],
        rd[s, "cbt"], changed[s], rd[s, "fullread"], t[s, "cbt"] / t[s, "full"], t[s, "cbt"] / t[s, "fullread"]
      printf "  (of which taking the device and comparing extents: cbt %.3f s, no change %.3f s)\n", dev[s, "cbt"], dev[s, "nochange"]
      if ((s, "restore_cbt") in t) printf "  restore of the CBT incremental %.3f s, of the full-read incremental %.3f s (means of %d each, after a warm-up; both manifests name the same chunks: %s)\n", t[s, "restore_cbt"], t[s, "restore_fullread"], rn[s, "restore_cbt"], same[s]
      if (cbt[s, "cbt"] != "True" || cbt[s, "nochange"] != "True") printf "  %s GiB: CBT NOT USED (cbt=%s nochange=%s)\n", s, cbt[s, "cbt"], cbt[s, "nochange"]
      last = s
    }
    s = last
    printf "\n%s GiB: cbt / full backup          %6.3f  target <= 0.05  %s\n", s, t[s, "cbt"] / t[s, "full"], verdict(t[s, "cbt"] / t[s, "full"] <= 0.05)
    printf "%s GiB: cbt / full-read incremental %6.3f  target <= 0.2   %s\n", s, t[s, "cbt"] / t[s, "fullread"], verdict(t[s, "cbt"] / t[s, "fullread"] <= 0.2)
    printf "%s GiB: read / changed chunks       %6.3f  target <= 1.2   %s\n", s, rd[s, "cbt"] / changed[s], verdict(rd[s, "cbt"] / changed[s] <= 1.2)
    printf "%s GiB: no-change incremental       %6.3f s target < 1 s   %s\n", s, t[s, "nochange"], verdict(t[s, "nochange"] < 1)
    s = order[1]
    if ((s, "restore_cbt") in t) printf "%s GiB: restore cbt / restore full-read %5.3f  target <= 1 (the same chunks: equal work, so within noise)\n", s, t[s, "restore_cbt"] / t[s, "restore_fullread"]
  }' "$LOG" | tee "$OUT/results/$RUN.txt"
