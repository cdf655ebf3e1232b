#!/bin/sh
# The one place the CI recipes' commands live (docs/ci/README.md): every recipe in docs/ci/
# runs this script, and tests/ci_recipes.rs runs it against a bare remote with the shipped
# pre-receive hook, so what the recipes do is what is tested.
#
# Usage: hyperion-ci.sh [--remote NAME] [--target BRANCH] [--branches DIR] [--worker ID]
#                       [--report DIR] [--strict] [-- WORKER-ARGS…]
#
#   --remote NAME    the git remote the queue is shared through (default: origin)
#   --target BRANCH  the branch requests land on (default: main)
#   --branches DIR   the pushed agent branches: every branch below refs/heads/DIR/ on the
#                    remote (default: agent, i.e. agent/<agent>/<task>; under another name
#                    a branch needs Hyperion-Agent and Hyperion-Task trailers)
#   --worker ID      the worker's id (default: hyperion's: host, process id, random part)
#   --report DIR     write fetch.json (what the queue's fetch took in, and the chains it
#                    refused), ingest.json (one row per branch: queued, already_queued,
#                    skipped, refused with its problems) and worker.jsonl there, for the
#                    job's artifacts
#   --strict         exit 1 when a branch was refused (after the worker ran); default: the
#                    refusal is reported and the job succeeds, so a scheduled job is not red
#                    until the agent pushes a fixed branch
#   -- WORKER-ARGS   passed to `git hyperion worker` (e.g. --batch-size 8)
#
# Runs in a clone of the remote that is the job's own (a CI checkout, a self-hosted runner's
# dedicated clone): it detaches HEAD and sets the local target branch to the remote's.
# Needs `git-hyperion` on PATH. Safe to run again: a second run changes nothing.
set -eu

remote=origin
target=main
branches=agent
worker_id=
report=
strict=0
while [ $# -gt 0 ]; do
  case "$1" in
    --remote) remote="${2:?--remote needs a name}"; shift 2 ;;
    --target) target="${2:?--target needs a branch}"; shift 2 ;;
    --branches) branches="${2:?--branches needs a directory}"; shift 2 ;;
    --worker) worker_id="${2:?--worker needs an id}"; shift 2 ;;
    --report) report="${2:?--report needs a directory}"; shift 2 ;;
    --strict) strict=1; shift ;;
    --) shift; break ;;
    *) echo "error: unknown argument '$1'" >&2
       echo "hint: hyperion-ci.sh [--remote NAME] [--target BRANCH] [--branches DIR] [--worker ID] [--report DIR] [--strict] [-- WORKER-ARGS]" >&2
       exit 2 ;;
  esac
done
if [ -z "$report" ]; then
  report=$(mktemp -d)
  trap 'rm -rf "$report"' EXIT
fi
mkdir -p "$report"

# Commits the worker makes need an identity; the job's own, unless one is configured.
git config user.name >/dev/null || git config user.name "git-hyperion CI"
git config user.email >/dev/null || git config user.email "git-hyperion-ci@localhost"

# 1. The agents' branches, as remote-tracking branches (pruned: a deleted branch is gone),
#    and the target as the remote has it. HEAD is detached first so that the target branch
#    may be set whatever was checked out.
git checkout -q --detach
git fetch -q --prune "$remote" \
  "+refs/heads/$branches/*:refs/remotes/$remote/$branches/*" \
  "+refs/heads/$target:refs/heads/$target"

# 2. Remote mode (idempotent), and the shared queue taken in: a request ingested by an
#    earlier run is then already queued, not stored twice. A chain hyperion would not have
#    written (forged on a host without a pre-receive hook) is left out and recorded
#    (remote.forged, exit 1); the rest goes on, and the job fails at the end.
git hyperion init --remote "$remote" --target "$target" >/dev/null
fetch_rc=0
git hyperion fetch --remote "$remote" --format json >"$report/fetch.json" || fetch_rc=$?
if [ "$fetch_rc" -ge 2 ]; then exit "$fetch_rc"; fi

# 3. Ingest: each branch validated as any request; refused ones are recorded, nothing stored.
ingest_rc=0
git hyperion ingest --remote "$remote" --format json \
  "refs/remotes/$remote/$branches" >"$report/ingest.json" || ingest_rc=$?
if [ "$ingest_rc" -ge 2 ]; then exit "$ingest_rc"; fi

# 4. Publish what was ingested (one atomic push; nothing when nothing is new).
git hyperion push --remote "$remote" >/dev/null

# 5. Drain the shared queue: lease by push, land by one atomic push per chain.
if [ -n "$worker_id" ]; then set -- --id "$worker_id" "$@"; fi
git hyperion worker --remote "$remote" --drain --format json "$@" >"$report/worker.jsonl"

# 6. The record, in the job's log.
echo "ingest:"
sed 's/^/  /' "$report/ingest.json" | head -c 20000
echo
echo "worker:"
sed 's/^/  /' "$report/worker.jsonl"
if [ "$fetch_rc" -ne 0 ]; then
  echo "fetch:"
  sed 's/^/  /' "$report/fetch.json" | head -c 20000
  echo
  echo "error: the remote holds request chains hyperion would not have written; they were not taken in (fetch.json, \"refused\")" >&2
  echo "hint: find who pushed them, remove them on the remote, and restrict who may push refs/hyperion/* (docs/errors.md, remote.forged)" >&2
fi
if [ "$ingest_rc" -ne 0 ]; then
  echo "note: some agent branches were refused; see the rows with \"result\": \"refused\"" >&2
  if [ "$strict" -eq 1 ]; then exit 1; fi
fi
if [ "$fetch_rc" -ne 0 ]; then exit 1; fi
