#!/usr/bin/env bash
# A short demo of the running service through its Cinder v3 REST API (curl + jq):
# create a volume, write data into it as a VM would, take a full backup, change
# a little and take an incremental one, restore the incremental into a new
# volume and check that the restored volume is identical, byte for byte.
#
# Needs a running Api and agents (deploy/run.sh starts them and runs this).
#   VB_API         the Api                  (default http://127.0.0.1:8776)
#   VB_PROJECT     project and user         (default demo; noauth token demo:demo)
#   VB_VOLUME_DIR  the VolumeAgent's pool   (default $VB_POOL/demo, from deploy/services.sh env)
#   VB_DEMO_TIMEOUT  seconds to wait for any one step (default 300)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
API=${VB_API:-http://127.0.0.1:8776}
PROJECT=${VB_PROJECT:-demo}
TOKEN="$PROJECT:$PROJECT"
TIMEOUT=${VB_DEMO_TIMEOUT:-300}
if [[ -z ${VB_VOLUME_DIR:-} ]]; then
  [[ -n ${VB_POOL:-} ]] || eval "$("$REPO/deploy/services.sh" env)"
  VB_VOLUME_DIR=$VB_POOL/demo
fi

for tool in curl jq sha256sum; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing (deploy/services.sh install adds it)" >&2; exit 1; }
done

fail() { echo "FAILED: $*" >&2; exit 1; }
trap 'echo "FAILED: line $LINENO: $BASH_COMMAND (exit code $?)" >&2' ERR

now() { date +%s.%N; }
# secs T0: seconds since T0, to two decimals.
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# api METHOD PATH [JSON]: the response body; fails on an unexpected HTTP status.
api() {
  local method=$1 path=$2 body=${3:-} out code
  out=$(mktemp)
  code=$(curl -sS --max-time 60 -o "$out" -w '%{http_code}' -X "$method" \
    -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json' \
    ${body:+--data "$body"} "$API/v3/$PROJECT$path") || { rm -f "$out"; fail "$method $path: no answer from $API"; }
  if [[ $code != 2?? ]]; then
    echo "FAILED: $method $path -> HTTP $code" >&2
    cat "$out" >&2; echo >&2; rm -f "$out"; exit 1
  fi
  cat "$out"; rm -f "$out"
}

# wait_status KIND ID GOOD BAD: polls /KINDs/ID, prints each status as it
# changes, returns once it is GOOD; fails on BAD (with fail_reason) or timeout.
wait_status() {
  local kind=$1 id=$2 good=$3 bad=$4 t0 json status last=""
  t0=$(now)
  while true; do
    json=$(api GET "/${kind}s/$id")
    status=$(jq -r ".$kind.status" <<<"$json")
    if [[ $status != "$last" ]]; then
      printf '      %-8s %-18s at %6ss\n' "$kind" "$status" "$(secs "$t0")"
      last=$status
    fi
    [[ $status == "$good" ]] && { LAST_JSON=$json; return 0; }
    if [[ $status == "$bad" ]]; then
      fail "$kind $id is $status: $(jq -r ".$kind.fail_reason // \"(no fail_reason)\"" <<<"$json")"
    fi
    awk -v t="$(secs "$t0")" -v m="$TIMEOUT" 'BEGIN { exit !(t > m) }' && fail "$kind $id still $status after $TIMEOUT s"
    sleep 0.2
  done
}

# sizes FILE: apparent size and blocks really allocated, in MiB.
sizes() {
  local apparent allocated
  apparent=$(du -m --apparent-size "$1" | cut -f1)
  allocated=$(du -m "$1" | cut -f1)
  echo "${apparent} MiB apparent, ${allocated} MiB allocated"
}

step=0
STEPS=6
header() { step=$((step + 1)); echo; echo "[$step/$STEPS] $*"; T_STEP=$(now); }
done_in() { echo "      done in $(secs "$T_STEP") s"; }

T_ALL=$(now)
echo "VolumeBackup demo: Api $API, project $PROJECT"

# ---------------------------------------------------------------------------
header "Create a 1 GiB volume"
json=$(api POST /volumes '{"volume":{"size":1,"name":"demo-src"}}')
SRC=$(jq -r .volume.id <<<"$json")
echo "      volume   $SRC (demo-src)"
wait_status volume "$SRC" available error
SRC_FILE=$VB_VOLUME_DIR/volume-$SRC
[[ -f $SRC_FILE ]] || fail "the volume's file $SRC_FILE is not there"
echo "      file     $SRC_FILE ($(sizes "$SRC_FILE"))"
done_in

# ---------------------------------------------------------------------------
header "Write guest data into the volume, as a VM would"
# 32 MiB random at 0, 1 MiB of text at 300 MiB, 16 MiB random at 700 MiB; the rest stays a hole.
dd if=/dev/urandom of="$SRC_FILE" bs=1M count=32 seek=0 conv=notrunc status=none
head -c 1M < <(yes "volumebackup demo: text written by the guest at 300 MiB") | dd of="$SRC_FILE" bs=1M seek=300 conv=notrunc status=none
dd if=/dev/urandom of="$SRC_FILE" bs=1M count=16 seek=700 conv=notrunc,fsync status=none
echo "      wrote    32 MiB random @ 0, 1 MiB text @ 300 MiB, 16 MiB random @ 700 MiB"
echo "      file     $(sizes "$SRC_FILE")"
SUM_FULL=$(sha256sum "$SRC_FILE" | cut -d' ' -f1)
echo "      sha256   $SUM_FULL"
done_in

# ---------------------------------------------------------------------------
header "Full backup"
json=$(api POST /backups "{\"backup\":{\"volume_id\":\"$SRC\",\"name\":\"demo-full\"}}")
FULL=$(jq -r .backup.id <<<"$json")
echo "      backup   $FULL (demo-full)"
wait_status backup "$FULL" available error
jq -r '.backup | "      result   size \(.size) GiB, objects \(.object_count), incremental \(.is_incremental)"' <<<"$LAST_JSON"
done_in

# ---------------------------------------------------------------------------
header "Change 2 MiB in the volume, then an incremental backup"
dd if=/dev/urandom of="$SRC_FILE" bs=1M count=2 seek=512 conv=notrunc,fsync status=none
echo "      wrote    2 MiB random @ 512 MiB"
SUM_INCR=$(sha256sum "$SRC_FILE" | cut -d' ' -f1)
echo "      sha256   $SUM_INCR"
json=$(api POST /backups "{\"backup\":{\"volume_id\":\"$SRC\",\"name\":\"demo-incremental\",\"incremental\":true}}")
INCR=$(jq -r .backup.id <<<"$json")
echo "      backup   $INCR (demo-incremental)"
wait_status backup "$INCR" available error
jq -r '.backup | "      result   size \(.size) GiB, objects \(.object_count), incremental \(.is_incremental)"' <<<"$LAST_JSON"
done_in

# ---------------------------------------------------------------------------
header "Restore the incremental backup into a new volume"
json=$(api POST "/backups/$INCR/restore" '{"restore":{"name":"demo-restored"}}')
DST=$(jq -r .restore.volume_id <<<"$json")
echo "      volume   $DST ($(jq -r .restore.volume_name <<<"$json"))"
wait_status volume "$DST" available error_restoring
wait_status backup "$INCR" available error
done_in

# ---------------------------------------------------------------------------
header "Compare the restored volume with the source"
DST_FILE=$VB_VOLUME_DIR/volume-$DST
[[ -f $DST_FILE ]] || fail "the restored volume's file $DST_FILE is not there"
SUM_DST=$(sha256sum "$DST_FILE" | cut -d' ' -f1)
echo "      source   $SUM_INCR  (at the incremental backup)"
echo "      restored $SUM_DST  $DST_FILE"
echo "      source   $(sizes "$SRC_FILE")"
echo "      restored $(sizes "$DST_FILE")"
[[ $SUM_DST == "$SUM_INCR" ]] || fail "checksums differ: the restored volume is not the backed-up data"
echo "      MATCH"
done_in

echo
echo "Demo passed in $(secs "$T_ALL") s. Volumes $SRC (source), $DST (restored); backups $FULL (full), $INCR (incremental)."
