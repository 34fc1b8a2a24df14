#!/usr/bin/env bash
# Calls flakefleet's function URL and waits for a release's outcome.
#   flakefleet.sh request METHOD PATH [JSON BODY]   prints the answer, fails on an HTTP error
#   flakefleet.sh wait RELEASE_ID                   polls until the release is final;
#                                                   fails unless it succeeded
# FLAKEFLEET_AUTH=iam (default): SigV4-signed with curl --aws-sigv4; needs
#   AWS_REGION and the AWS_* credentials of the job's assumed role.
# FLAKEFLEET_AUTH=github-oidc: a fresh GitHub OIDC token for every request
#   (flakefleet accepts each token once), requested with FLAKEFLEET_AUDIENCE;
#   needs `permissions: id-token: write`.
# Both need FUNCTION_URL. Tokens and keys are never printed, and never put on
# curl's command line (which other processes on the runner can read): they
# reach curl as a config on its standard input, written by bash's printf.
set -euo pipefail

# One curl config line, `name = "value"`, quoted as curl's config format wants.
config_line() {
  local value=${2//\\/\\\\}
  printf '%s = "%s"\n' "$1" "${value//\"/\\\"}"
}

oidc_token() {
  config_line header "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" |
    curl --config - --fail -sS -G --data-urlencode "audience=$FLAKEFLEET_AUDIENCE" "$ACTIONS_ID_TOKEN_REQUEST_URL" |
    jq -r .value
}

# The secret half of a request's curl config.
credentials() {
  case "${FLAKEFLEET_AUTH:-iam}" in
    iam)
      config_line aws-sigv4 "aws:amz:$AWS_REGION:lambda"
      config_line user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
      if [ -n "${AWS_SESSION_TOKEN:-}" ]; then config_line header "x-amz-security-token: $AWS_SESSION_TOKEN"; fi
      ;;
    github-oidc)
      local token
      token=$(oidc_token)
      config_line header "authorization: Bearer $token"
      ;;
  esac
}

request() {
  local method=$1 path=$2 body=${3:-} config
  case "${FLAKEFLEET_AUTH:-iam}" in
    iam | github-oidc) ;;
    *) echo "::error::FLAKEFLEET_AUTH is ${FLAKEFLEET_AUTH}; expected iam or github-oidc" >&2; return 2 ;;
  esac
  config=$(credentials)
  local args=(--config - --fail-with-body -sS -X "$method" -H 'content-type: application/json')
  if [ -n "$body" ]; then args+=(--data "$body"); fi
  printf '%s\n' "$config" | curl "${args[@]}" "${FUNCTION_URL%/}$path"
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
