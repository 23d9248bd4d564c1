#!/usr/bin/env bash
# The project's "run every test" command: installs and starts the real
# services (deploy/services.sh), runs `dotnet test` against them, and then
# stops the services this run started (those already running stay up).
# Extra arguments go to `dotnet test`. VB_KEEP_SERVICES=1 keeps them all up.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
services=deploy/services.sh

# services.sh start writes here the parts it really started.
export VB_STARTED_FILE
VB_STARTED_FILE=$(mktemp)

# On any exit (test failure, failed start, Ctrl-C) stop what we started.
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local parts after
  mapfile -t parts <"$VB_STARTED_FILE"
  rm -f "$VB_STARTED_FILE"
  if ((${#parts[@]} == 0)); then
    after="none started by this run"
  elif [[ ${VB_KEEP_SERVICES:-0} == 1 ]]; then
    after="left running (VB_KEEP_SERVICES=1): ${parts[*]}"
  else
    $services stop "${parts[@]}" || echo "test.sh: WARNING: stopping services failed" >&2
    after="stopped: ${parts[*]}"
  fi
  echo "test.sh: dotnet test exit code ${rc:-none (tests did not run)}; services $after"
}
trap cleanup EXIT

$services install
$services start
eval "$($services env)"

rc=0
# One test project at a time (-m:1): the failure and outage tests stop and start the shared NFS server, broker and database.
dotnet test Distributed.sln -m:1 "$@" || rc=$?
exit $rc
