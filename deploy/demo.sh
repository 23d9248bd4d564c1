#!/usr/bin/env bash
# A short demo of the running service through its Cinder v3 REST API (curl + jq):
# create a volume, write data into it as a VM would, take a full backup, attach
# the volume, change a little and take an incremental backup while it is in use,
# restore that into a new volume and check the restored volume is identical.
#
# Needs a running Api and agents (deploy/run.sh starts them, then runs this).
#   VB_API           the Api                       (default http://127.0.0.1:8776)
#   VB_PROJECT       project and user              (default demo: X-Auth-Token demo:demo)
#   VB_AUTH_MODE     noauth (default) or keystone: log in as demo-member with its password
#                    (from VB_KEYSTONE_SECRETS) and use the token and project id Keystone gives
#   VB_VOLUME_DIR    the VolumeAgent's pool folder (default $VB_POOL/demo, from deploy/services.sh env)
#   VB_HOST_POOLS    with several storage hosts: "host-a=/pool/folder host-b=..." (deploy/run.sh --hosts sets it)
#   VB_DEMO_TIMEOUT  seconds any one wait may take (default 300)
#
# deploy/demo.sh --cross-host (run by deploy/run.sh --hosts N, N > 1): stops the BackupAgents of the host a new
# volume lands on (VB_AGENTS_CTL, "deploy/run.sh agents"), backs the volume up and restores it into another volume
# of that host: an agent of another host of the zone does both through that host's VolumeAgent (its log, in
# VB_LOGS, says so); then starts the stopped agents again and compares the volumes (MATCH).
set -euo pipefail
CROSS_HOST=no
[[ ${1:-} == --cross-host ]] && CROSS_HOST=yes

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
API=${VB_API:-http://127.0.0.1:8776}
TIMEOUT=${VB_DEMO_TIMEOUT:-300}
if [[ -z ${VB_VOLUME_DIR:-} || ${VB_AUTH_MODE:-noauth} == keystone && -z ${VB_KEYSTONE_URL:-} ]]; then
  [[ -n ${VB_POOL:-} && -n ${VB_KEYSTONE_URL:-} ]] || eval "$("$REPO/deploy/services.sh" env)"
  VB_VOLUME_DIR=${VB_VOLUME_DIR:-$VB_POOL/demo}
fi

# keystone_login USER PROJECT: logs in with USER's password (as a cloud user does) and
# prints "TOKEN PROJECT_ID".
keystone_login() {
  local headers body
  headers=$(mktemp)
  body=$(curl -sS --max-time 30 -D "$headers" -H 'Content-Type: application/json' --data "$(jq -nc \
    --arg u "$1" --arg p "$(cat "$VB_KEYSTONE_SECRETS/$1")" --arg project "$2" \
    '{auth: {identity: {methods: ["password"], password: {user: {name: $u, domain: {id: "default"}, password: $p}}},
             scope: {project: {name: $project, domain: {id: "default"}}}}}')" "$VB_KEYSTONE_URL/auth/tokens?nocatalog") \
    || { rm -f "$headers"; echo "FAILED: Keystone login of $1" >&2; exit 1; }
  echo "$(awk -F': ' 'tolower($1) == "x-subject-token" { print $2 }' "$headers" | tr -d '\r') $(jq -r .token.project.id <<<"$body")"
  rm -f "$headers"
}

if [[ ${VB_AUTH_MODE:-noauth} == keystone ]]; then
  read -r TOKEN PROJECT < <(keystone_login demo-member demo)
  read -r ADMIN_TOKEN _ < <(keystone_login admin admin)
  [[ -n $TOKEN && -n $ADMIN_TOKEN ]] || { echo "FAILED: no token from Keystone at $VB_KEYSTONE_URL" >&2; exit 1; }
  echo "Logged in to Keystone as demo-member (project demo, $PROJECT) with a password"
else
  PROJECT=${VB_PROJECT:-demo}
  TOKEN="$PROJECT:$PROJECT"
  ADMIN_TOKEN="admin:$PROJECT"
fi

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing (deploy/services.sh install adds it)" >&2; exit 1; }
done

fail() { echo "FAILED: $*" >&2; exit 1; }
trap 'echo "FAILED: line $LINENO: $BASH_COMMAND (exit code $?)" >&2' ERR

now() { date +%s.%N; }
# secs T0: seconds since T0, two decimals.
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# sha256 FILE: the file's SHA-256, the same digest sha256sum prints. OpenSSL
# uses the CPU's SHA instructions (several times faster on a 1 GiB volume).
sha256() {
  if command -v openssl >/dev/null; then openssl dgst -sha256 -r "$1" | cut -d' ' -f1
  else sha256sum "$1" | cut -d' ' -f1; fi
}

# api METHOD PATH [JSON]: prints the response body. Fails unless the HTTP status
# matches $EXPECT (a glob, default 2??); STATUS holds the status afterwards.
api() {
  local method=$1 path=$2 body=${3:-} out code
  out=$(mktemp)
  code=$(curl -sS --max-time 60 -o "$out" -w '%{http_code}' -X "$method" \
    -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' -H 'Accept: application/json' \
    ${body:+--data "$body"} "$API/v3/$PROJECT$path") || { rm -f "$out"; fail "$method $path: no answer from $API"; }
  # shellcheck disable=SC2053 # EXPECT is a glob on purpose
  if [[ $code != ${EXPECT:-2??} ]]; then
    echo "FAILED: $method $path -> HTTP $code" >&2
    cat "$out" >&2; echo >&2; rm -f "$out"; exit 1
  fi
  cat "$out"; rm -f "$out"
}

# wait_status KIND ID GOOD BAD: polls /KINDs/ID and prints each status as it
# changes, until GOOD; fails on BAD (with the fail_reason) or after TIMEOUT.
# Leaves the last JSON in LAST_JSON.
wait_status() {
  local kind=$1 id=$2 good=$3 bad=$4 t0 json status last=""
  t0=$(now)
  while true; do
    json=$(api GET "/${kind}s/$id")
    status=$(jq -r ".$kind.status" <<<"$json")
    if [[ $status != "$last" ]]; then
      printf '      %-8s %-18s after %ss\n' "$kind" "$status" "$(secs "$t0")"
      last=$status
    fi
    if [[ $status == "$good" ]]; then LAST_JSON=$json; return 0; fi
    if [[ $status == "$bad" ]]; then
      fail "$kind $id is $status: $(jq -r ".$kind.fail_reason // \"(no fail_reason given)\"" <<<"$json")"
    fi
    if awk -v t="$(secs "$t0")" -v m="$TIMEOUT" 'BEGIN { exit !(t > m) }'; then
      fail "$kind $id is still $status after $TIMEOUT s"
    fi
    sleep 0.2
  done
}

# volume_file ID: the volume's file, in its host's pool (from the volume's os-vol-host-attr:host, "host#zone").
# volume_host ID: the storage host of a volume (os-vol-host-attr:host, host@backend#pool, is shown to admins only).
volume_host() {
  curl -sS --max-time 60 -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Accept: application/json' "$API/v3/$PROJECT/volumes/$1" \
    | jq -r '.volume["os-vol-host-attr:host"] // "" | split("@")[0] | split("#")[0]'
}

volume_file() {
  local host pool
  [[ -n ${VB_HOST_POOLS:-} ]] || { echo "$VB_VOLUME_DIR/volume-$1"; return; }
  host=$(volume_host "$1")
  for pool in $VB_HOST_POOLS; do [[ ${pool%%=*} == "$host" ]] && { echo "${pool#*=}/volume-$1"; return; }; done
  fail "volume $1 is on host '$host', whose pool is not in VB_HOST_POOLS"
}

# sizes FILE: apparent size and what is really allocated, in MiB.
sizes() { echo "$(du -m --apparent-size "$1" | cut -f1) MiB apparent, $(du -m "$1" | cut -f1) MiB allocated"; }

backup_result() {
  jq -r '.backup | "      result   \(.status), size \(.size) GiB, object_count \(.object_count), is_incremental \(.is_incremental)"' <<<"$LAST_JSON"
}

step=0 STEPS=6 SUMMARY=()
header() { step=$((step + 1)); echo; echo "[$step/$STEPS] $*"; T_STEP=$(now); STEP_NAME=$*; }
step_done() {
  local took; took=$(secs "$T_STEP")
  echo "      step took $took s"
  SUMMARY+=("$(printf '  %-66s %6s s' "$STEP_NAME" "$took")")
}

# Like Cinder without a running cinder-backup, the Api refuses backups until an
# agent's heartbeat has reached it; wait for one (os-services is admin-only).
wait_backup_service() {
  local t0 out code up
  t0=$(now)
  out=$(mktemp)
  while true; do
    code=$(curl -sS --max-time 10 -o "$out" -w '%{http_code}' -H "X-Auth-Token: $ADMIN_TOKEN" \
      "$API/v3/$PROJECT/os-services?binary=cinder-backup") || code=000
    case $code in
      200)
        up=$(jq -r '[.services[] | select(.state == "up") | "\(.binary) on \(.host) (zone \(.zone))"] | join(", ")' "$out")
        if [[ -n $up ]]; then echo "Backup service: $up is up ($(secs "$t0") s)"; break; fi ;;
      404) break ;;   # an Api without os-services takes backups at once
      *) rm -f "$out"; fail "GET /os-services -> HTTP $code" ;;
    esac
    if awk -v t="$(secs "$t0")" -v m="$TIMEOUT" 'BEGIN { exit !(t > m) }'; then
      rm -f "$out"; fail "no backup service is up after $TIMEOUT s (are the BackupAgents running?)"
    fi
    sleep 0.5
  done
  rm -f "$out"
}

# The project's quotas (Cinder's defaults: 10 volumes, 10 backups) would run out
# after a few demos, so each run first deletes what earlier runs left (names
# demo-*) and keeps its own for you to look at.
remove_earlier_runs() {
  local t0 json ids id backups_before backups_after volumes_before volumes_after
  local mine='select(.name // "" | startswith("demo-"))' zones
  t0=$(now)
  # Only backups of the zones served now can be deleted (an earlier run may have had other hosts and zones).
  zones=$(api GET /os-availability-zone | jq -c '[.availabilityZoneInfo[].zoneName]')
  backups_before=$(api GET /backups/detail | jq "[.backups[] | $mine] | length")
  # Newest first: a backup that incrementals depend on is refused until they are gone.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    json=$(api GET /backups/detail)
    mapfile -t ids < <(jq -r --argjson zones "$zones" ".backups[] | $mine | select(.availability_zone as \$z | \$zones | index(\$z))
      | select(.status == \"available\" or .status == \"error\")
      | select(.has_dependent_backups | not) | .id" <<<"$json")
    ((${#ids[@]} > 0)) || break
    for id in "${ids[@]}"; do api DELETE "/backups/$id" >/dev/null; done
    # Deletion is asynchronous (the saga takes the request from the outbox): wait until each one asked is gone, not
    # merely until nothing is "deleting", which is also true before the saga has begun.
    local asked
    asked=$(printf '%s\n' "${ids[@]}" | jq -R . | jq -s .)
    for _ in $(seq 1 150); do
      api GET /backups/detail | jq -e --argjson asked "$asked" '[.backups[] | select(.id as $id | $asked | index($id))] | length == 0' >/dev/null && break
      sleep 0.2
    done
  done
  backups_after=$(api GET /backups/detail | jq "[.backups[] | $mine] | length")

  json=$(api GET /volumes/detail)
  volumes_before=$(jq "[.volumes[] | $mine] | length" <<<"$json")
  mapfile -t ids < <(jq -r ".volumes[] | $mine | .id" <<<"$json")
  for id in "${ids[@]}"; do
    if [[ $(jq -r --arg id "$id" '.volumes[] | select(.id == $id) | .status' <<<"$json") == in-use ]]; then
      EXPECT='*' api POST "/volumes/$id/action" '{"os-detach":{}}' >/dev/null
    fi
    EXPECT='*' api DELETE "/volumes/$id" >/dev/null
  done
  volumes_after=$(api GET /volumes/detail | jq "[.volumes[] | $mine] | length")

  if ((backups_before + volumes_before > 0)); then
    echo "Removed what earlier demo runs left: $((backups_before - backups_after)) backups," \
         "$((volumes_before - volumes_after)) volumes ($(secs "$t0") s)"
  fi
  if ((backups_after + volumes_after > 0)); then
    echo "  (could not remove $backups_after backups and $volumes_after volumes named demo-*: check their status)"
  fi
}

# The agent whose log says it took a backup (or restore) of ID, and how it reached the device.
taken_by() { grep -l -- "$1" "$VB_LOGS"/backup-agent-*.log 2>/dev/null | xargs -r -n1 basename | sed 's/\.log$//' | tr '\n' ' '; }
how_taken() { grep -ho -- "$1.*ready.*on host [a-z0-9-]*, \(read\|written\) [a-z]*" "$VB_LOGS"/backup-agent-*.log 2>/dev/null | tail -n1 | sed 's/.*ready/ready/'; }

# --cross-host: a backup of a volume of host H by an agent of another host, and a restore into H the same way.
cross_host() {
  [[ -n ${VB_AGENTS_CTL:-} && -n ${VB_LOGS:-} ]] || fail "--cross-host needs VB_AGENTS_CTL and VB_LOGS (deploy/run.sh --hosts N sets them)"
  local src dst host zone backup src_file dst_file sum_src sum_dst json
  STEPS=4
  header "Create a volume and write data into it"
  json=$(api POST /volumes '{"volume":{"size":1,"name":"demo-xhost-src"}}')
  src=$(jq -r .volume.id <<<"$json")
  wait_status volume "$src" available error
  host=$(volume_host "$src") zone=$(jq -r '.volume.availability_zone' <<<"$LAST_JSON")
  echo "      volume   $src on $host (zone $zone), placed there by capacity"
  src_file=$(volume_file "$src")
  dd if=/dev/urandom of="$src_file" bs=1M count=64 seek=32 conv=notrunc,fsync status=none
  echo "      wrote    64 MiB random at 32 MiB"
  sum_src=$(sha256 "$src_file")
  echo "      sha256   $sum_src"
  step_done

  header "Stop the BackupAgents of $host, back the volume up"
  $VB_AGENTS_CTL stop "$host" | sed 's/^/      /'
  trap '$VB_AGENTS_CTL start "$host" >/dev/null 2>&1 || true' EXIT
  json=$(api POST /backups "{\"backup\":{\"volume_id\":\"$src\",\"name\":\"demo-xhost\"}}")
  backup=$(jq -r .backup.id <<<"$json")
  echo "      backup   $backup (waits on $host's queue, then spills to zone $zone's)"
  wait_status backup "$backup" available error
  echo "      taken by $(taken_by "$backup"): $(how_taken "$backup")"
  step_done

  header "Restore into another volume of $host, its agents still stopped"
  while true; do                                     # placement decides; keep the first that lands on $host
    json=$(api POST /volumes '{"volume":{"size":1,"name":"demo-xhost-dst"}}')
    dst=$(jq -r .volume.id <<<"$json")
    wait_status volume "$dst" available error >/dev/null
    [[ $(volume_host "$dst") == "$host" ]] && break
    api DELETE "/volumes/$dst" >/dev/null
  done
  echo "      volume   $dst on $host"
  api POST "/backups/$backup/restore" "{\"restore\":{\"volume_id\":\"$dst\"}}" >/dev/null
  wait_status volume "$dst" available error_restoring
  echo "      written by $(taken_by "$dst"): $(how_taken "$dst")"
  $VB_AGENTS_CTL start "$host" | sed 's/^/      /'
  trap - EXIT
  step_done

  header "Compare"
  dst_file=$(volume_file "$dst")
  sum_dst=$(sha256 "$dst_file")
  echo "      source   sha256 $sum_src  $src_file"
  echo "      restored sha256 $sum_dst  $dst_file"
  [[ $sum_dst == "$sum_src" ]] || fail "checksums differ"
  echo "      MATCH"
  step_done
  echo
  echo "Cross-host demo passed in $(secs "$T_ALL") s."
}

T_ALL=$(now)
echo "VolumeBackup demo against $API (project $PROJECT)"
wait_backup_service
remove_earlier_runs

if [[ $CROSS_HOST == yes ]]; then cross_host; exit; fi

# ---------------------------------------------------------------------------
header "Create a 1 GiB volume"
json=$(api POST /volumes '{"volume":{"size":1,"name":"demo-src"}}')
SRC=$(jq -r .volume.id <<<"$json")
echo "      volume   $SRC (demo-src)"
wait_status volume "$SRC" available error
SRC_FILE=$(volume_file "$SRC")
[[ -f $SRC_FILE ]] || fail "the volume's file $SRC_FILE is not there"
echo "      file     $SRC_FILE"
echo "               $(sizes "$SRC_FILE")"
step_done

# ---------------------------------------------------------------------------
header "Write data into the volume, as a VM would"
# 32 MiB random at 0, 1 MiB of text at 300 MiB, 16 MiB random at 700 MiB; the rest stays a hole.
dd if=/dev/urandom of="$SRC_FILE" bs=1M count=32 seek=0 conv=notrunc status=none
head -c 1M < <(yes "volumebackup demo: text the guest wrote at 300 MiB") \
  | dd of="$SRC_FILE" bs=1M seek=300 conv=notrunc status=none iflag=fullblock
dd if=/dev/urandom of="$SRC_FILE" bs=1M count=16 seek=700 conv=notrunc,fsync status=none
echo "      wrote    32 MiB random at 0, 1 MiB text at 300 MiB, 16 MiB random at 700 MiB"
echo "      file     $(sizes "$SRC_FILE")"
step_done

# ---------------------------------------------------------------------------
header "Full backup"
SUM_FULL=$(sha256 "$SRC_FILE")
echo "      sha256   $SUM_FULL (source, now)"
json=$(api POST /backups "{\"backup\":{\"volume_id\":\"$SRC\",\"name\":\"demo-full\"}}")
FULL=$(jq -r .backup.id <<<"$json")
echo "      backup   $FULL (demo-full)"
wait_status backup "$FULL" available error
backup_result
step_done

# ---------------------------------------------------------------------------
header "Attach the volume, change 2 MiB, incremental backup while in-use"
api POST "/volumes/$SRC/action" \
  '{"os-attach":{"instance_uuid":"00000000-0000-4000-8000-0000000000d1","mountpoint":"/dev/vdb"}}' >/dev/null
echo "      volume   $(api GET "/volumes/$SRC" | jq -r .volume.status) (attached to a pretend VM as /dev/vdb)"
dd if=/dev/urandom of="$SRC_FILE" bs=1M count=2 seek=512 conv=notrunc,fsync status=none
echo "      wrote    2 MiB random at 512 MiB"
SUM_INCR=$(sha256 "$SRC_FILE")
echo "      sha256   $SUM_INCR (source, now)"
backup_body() { echo "{\"backup\":{\"volume_id\":\"$SRC\",\"name\":\"demo-incremental\",\"incremental\":true${1:-}}}"; }
refused=$(EXPECT=400 api POST /backups "$(backup_body)" | jq -r '.badRequest.message')
echo "      without force: HTTP 400 \"$refused\""
json=$(api POST /backups "$(backup_body ',"force":true')")
INCR=$(jq -r .backup.id <<<"$json")
echo "      backup   $INCR (demo-incremental, force)"
wait_status backup "$INCR" available error
backup_result
api POST "/volumes/$SRC/action" '{"os-detach":{}}' >/dev/null
echo "      volume   $(api GET "/volumes/$SRC" | jq -r .volume.status) (detached again)"
step_done

# ---------------------------------------------------------------------------
header "Restore the incremental backup into a new volume"
json=$(api POST "/backups/$INCR/restore" '{"restore":{"name":"demo-restored"}}')
DST=$(jq -r .restore.volume_id <<<"$json")
echo "      volume   $DST ($(jq -r .restore.volume_name <<<"$json"))"
wait_status volume "$DST" available error_restoring
wait_status backup "$INCR" available error
step_done

# ---------------------------------------------------------------------------
header "Compare the restored volume with the source at backup time"
DST_FILE=$(volume_file "$DST")
[[ -f $DST_FILE ]] || fail "the restored volume's file $DST_FILE is not there"
SUM_DST=$(sha256 "$DST_FILE")
echo "      source   sha256 $SUM_INCR  (when backed up)"
echo "      restored sha256 $SUM_DST  $DST_FILE"
echo "      source   $(sizes "$SRC_FILE")"
echo "      restored $(sizes "$DST_FILE")  (holes stayed holes)"
[[ $SUM_DST == "$SUM_INCR" ]] || fail "checksums differ: the restored volume is not the data that was backed up"
echo "      MATCH"
step_done

echo
echo "Timings:"
printf '%s\n' "${SUMMARY[@]}"
echo "Demo passed in $(secs "$T_ALL") s."
echo "  volumes  $SRC (demo-src), $DST (demo-restored)"
echo "  backups  $FULL (demo-full), $INCR (demo-incremental)"
