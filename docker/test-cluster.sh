#!/usr/bin/env bash
# The containerised cluster test (scripts/test.sh runs it where a Docker engine is up; it skips,
# saying so, where not). Builds both images from this checkout, then runs the demo cluster of
# docker/compose.yaml twice in one compose project (the second run keeps the first's dataset
# volume, and starts with new checkpoint and log volumes):
#
#   1. fault-free: three serve workers, two torchrun trainer ranks; the reference losses;
#   2. with faults, each at a training step read from rank 0's log:
#      - one trainer rank's process is killed (SIGKILL) after the first checkpoint: torchrun
#        restarts both ranks, which resume from the checkpoint;
#      - one worker container is killed (`docker kill`) mid-epoch;
#      - another worker is cut off the network (`docker network disconnect`) for 15 s, longer
#        than the trainers' --remote-deadline (10 s), then connected again.
#
# It checks that every step's loss of run 2 (the steps replayed after the restart included)
# equals run 1's for that step, bit for bit, that both runs reach the same validation accuracy,
# that the containers ran as uid 10001 with the dataset mounted read-only, and that no
# container, network or volume of the project is left. The fault log (what was done at which
# step, and the reassignments each trainer rank counted) goes to $OUT/fault-log.txt.
#
# Usage: docker/test-cluster.sh
#   SHARDFEED_EPOCHS (default 3) epochs per run; OUT (default target/cluster-test) for the logs.
#   SHARDFEED_IMAGE_BINARY / SHARDFEED_TRAINER_BINARY: binaries for the images (build-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "docker cluster test: SKIPPED (no Docker engine reachable: docker info failed)"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
else
  echo "docker cluster test: SKIPPED (no Docker Compose: neither 'docker compose' nor docker-compose)"
  exit 0
fi

export SHARDFEED_IMAGE_TAG=test
export SHARDFEED_EPOCHS=${SHARDFEED_EPOCHS:-3}
OUT=${OUT:-target/cluster-test}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }
say() { echo "docker cluster test [$(elapsed) s]: $*"; }
fail() { echo "docker cluster test: FAILED: $*" >&2; exit 1; }
# Every wait is bounded: a run of the demo takes a few minutes on 2 cores.
RUN_LIMIT=${RUN_LIMIT:-900}

docker/build-images.sh --tag "$SHARDFEED_IMAGE_TAG" --trainer
say "images built"

project=sf-cluster-$$
compose() { "${compose_cmd[@]}" -f docker/compose.yaml -p "$project" "$@"; }
teardown() { compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true; }
trap teardown EXIT
fault_log=$OUT/fault-log.txt
: >"$fault_log"
note() { echo "$*" | tee -a "$fault_log"; }

container() { compose ps -q "$1"; }
# Rank 0's JSON-lines log, read from the logs volume on the host (root reads it as is).
log_path() { echo "$(docker volume inspect -f '{{.Mountpoint}}' "${project}_logs")/train.jsonl"; }
last_step() {
  local log
  log=$(log_path 2>/dev/null) || { echo 0; return; }
  [ -f "$log" ] || { echo 0; return; }
  python3 - "$log" <<'PY'
import json, sys
step = 0
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue  # a line being written
    if e.get("event") == "step":
        step = e["step"]
print(step)
PY
}
trainers_done() {
  local c
  for c in $(container trainer-0) $(container trainer-1); do
    [ "$(docker inspect -f '{{.State.Running}}' "$c")" = false ] || return 1
  done
}
wait_step() { # STEP: until rank 0 has logged it (the latest step, which a restart takes back)
  local deadline=$(( $(date +%s) + RUN_LIMIT ))
  while [ "$(last_step)" -lt "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "step $1 not reached in $RUN_LIMIT s"
    trainers_done && fail "the trainers ended before step $1"
    sleep 0.5
  done
}
wait_trainers() {
  local deadline=$(( $(date +%s) + RUN_LIMIT )) c code
  until trainers_done; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "training not done in $RUN_LIMIT s"
    sleep 1
  done
  for c in trainer-0 trainer-1; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$(container $c)")
    [ "$code" = 0 ] || { compose logs --no-color "$c" | tail -40 >&2; fail "$c exited $code"; }
  done
}
# The host PID of shardfeed-train in a trainer container (torchrun's child).
train_pid() {
  docker top "$(container "$1")" -eo pid,args | awk '/shardfeed-train/ && !/torchrun/ {print $1; exit}'
}
check_hardening() {
  local s c
  for s in worker-1 worker-2 worker-3 trainer-0 trainer-1; do
    c=$(container "$s")
    [ "$(docker inspect -f '{{.Config.User}}' "$c")" = 10001:10001 ] || fail "$s does not run as uid 10001"
    docker inspect -f '{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}' "$c" | grep -q '/data=false' \
      || fail "$s: the dataset is not mounted read-only"
  done
}
run_cluster() { # NAME [FAULTS...]: up, then the faults (a function), then wait for the trainers
  local name=$1
  shift
  say "$name: up"
  compose up -d --no-build >"$OUT/$name-up.log" 2>&1 || { cat "$OUT/$name-up.log" >&2; fail "$name: up failed"; }
  "$@"
  wait_trainers
  compose logs --no-color >"$OUT/$name.log" 2>&1
  cp "$(log_path)" "$OUT/$name.jsonl"
  check_hardening
  say "$name: trained"
}

# ---- 1. fault-free ----
run_cluster reference true
# The second run starts from nothing but the dataset (made once: the dataset service finds it).
compose down --timeout 5 >/dev/null 2>&1
docker volume rm "${project}_checkpoints" "${project}_logs" >/dev/null

# ---- 2. with faults ----
steps_per_epoch=20   # 1,000 training images, global batch 50
faults() {
  local net
  net=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
  wait_step $((steps_per_epoch + 5))
  local pid
  pid=$(train_pid trainer-1)
  [ -n "$pid" ] || fail "no shardfeed-train process in trainer-1"
  kill -9 "$pid"
  note "step $(last_step): killed shardfeed-train (SIGKILL) in trainer-1; torchrun restarts the ranks, which resume from the epoch-1 checkpoint"
  wait_step $((steps_per_epoch + 12))
  docker kill "$(container worker-1)" >/dev/null
  note "step $(last_step): docker kill worker-1"
  wait_step $((steps_per_epoch + 18))
  docker network disconnect "$net" "$(container worker-2)"
  note "step $(last_step): docker network disconnect worker-2"
  sleep 15
  docker network connect --alias worker-2 "$net" "$(container worker-2)"
  note "step $(last_step): docker network connect worker-2 (after 15 s; --remote-deadline is 10 s)"
}
run_cluster faults faults
# What each trainer rank's remote source counted (its report at the end of training): per
# worker, and its own log of losses, cut-offs and reassignments.
grep -E "remote \(rank|worker-[0-9]:7000" "$OUT/faults.log" | sed -E 's/^[^|]*\| ?//' >>"$fault_log" || true

compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1
for kind in container network volume; do
  left=$(docker "$kind" ls -q $([ "$kind" = container ] && echo -a) \
    --filter "label=com.docker.compose.project=$project")
  [ -z "$left" ] || fail "${kind}s left behind: $left"
done
say "torn down: no container, network or volume of $project is left"

# ---- the checks ----
python3 - "$OUT/reference.jsonl" "$OUT/faults.jsonl" "$fault_log" <<'PY'
import json, sys

def events(path):
    return [json.loads(l) for l in open(path) if l.strip()]

ref, run = events(sys.argv[1]), events(sys.argv[2])
ref_loss = {e["step"]: e["loss"] for e in ref if e["event"] == "step"}
steps = [e for e in run if e["event"] == "step"]
starts = [e for e in run if e["event"] == "start"]
bad = [(e["step"], e["loss"], ref_loss.get(e["step"])) for e in steps if ref_loss.get(e["step"]) != e["loss"]]
if bad:
    sys.exit(f"losses differ from the fault-free run's (step, with faults, without): {bad[:5]}")
if {e["step"] for e in steps} != set(ref_loss):
    sys.exit("the run with faults did not take the same steps")
replayed = len(steps) - len(ref_loss)
if len(starts) < 2 or replayed <= 0:
    sys.exit(f"no restart from a checkpoint is in the log ({len(starts)} starts)")
acc = lambda evs: [round(e["top1"], 4) for e in evs if e["event"] == "eval"]
if acc(ref) != acc(run):
    sys.exit(f"validation accuracy differs: {acc(ref)} vs {acc(run)}")
with open(sys.argv[3], "a") as log:
    print(
        f"losses: {len(ref_loss)} steps, equal bit for bit to the fault-free run's, "
        f"{replayed} of them replayed after the restart (resumed at step {starts[-1]['step']}); "
        f"top-1 after each epoch {acc(run)} in both runs",
        file=log,
    )
PY
say "passed in $(elapsed) s"
cat "$fault_log"
