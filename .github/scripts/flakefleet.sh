#!/usr/bin/env bash
# Calls flakefleet's function URL with a SigV4-signed request (curl --aws-sigv4,
# credentials from the job's assumed role) and waits for a release's outcome.
#   flakefleet.sh request METHOD PATH [JSON BODY]   prints the answer, fails on an HTTP error
#   flakefleet.sh wait RELEASE_ID                   polls until the release is final;
#                                                   fails unless it succeeded
# Needs FUNCTION_URL, AWS_REGION and the AWS_* credentials in the environment.
set -euo pipefail

request() {
  local method=$1 path=$2 body=${3:-}
  local args=(--fail-with-body -sS -X "$method" --aws-sigv4 "aws:amz:$AWS_REGION:lambda"
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'content-type: application/json')
  if [ -n "${AWS_SESSION_TOKEN:-}" ]; then args+=(-H "x-amz-security-token: $AWS_SESSION_TOKEN"); fi
  if [ -n "$body" ]; then args+=(--data "$body"); fi
  curl "${args[@]}" "${FUNCTION_URL%/}$path"
}

wait_for() {
  local id=$1 deadline=$((SECONDS + ${WAIT_SECONDS:-3600})) release status
  while [ "$SECONDS" -lt "$deadline" ]; do
    release=$(request GET "/releases/$id")
    status=$(jq -r .release.status <<<"$release")
    echo "release $id: $status ($(jq -r '[.release.instances[] | .status] | group_by(.) | map("\(length) \(.[0])") | join(", ")' <<<"$release"))"
    case "$status" in
      succeeded) return 0 ;;
      pending|in_progress) sleep 20 ;;
      *)
        echo "::error::release $id ended $status: $(jq -r '.release.status_reason // ""' <<<"$release")"
        return 1
        ;;
    esac
  done
  echo "::error::release $id was still in flight after ${WAIT_SECONDS:-3600} s"
  return 1
}

case "${1:-}" in
  request) shift; request "$@" ;;
  wait) wait_for "$2" ;;
  *) echo "usage: $0 request METHOD PATH [BODY] | wait RELEASE_ID" >&2; exit 2 ;;
esac
