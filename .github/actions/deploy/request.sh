#!/usr/bin/env bash
# Calls a flakefleet function URL: sourced by run.sh, or run alone.
#   request.sh METHOD PATH [JSON BODY]   prints the answer; exits 0 on a 2xx,
#                                        3 on a 4xx, 4 on a 5xx or no answer
# FLAKEFLEET_AUTH=iam (default): SigV4-signed with curl --aws-sigv4; needs
#   AWS_REGION and the AWS_* credentials of the job's assumed role.
# FLAKEFLEET_AUTH=github-oidc: a fresh GitHub OIDC token for every request
#   (flakefleet accepts each token once), requested with FLAKEFLEET_AUDIENCE;
#   needs `permissions: id-token: write`.
# Both need FUNCTION_URL. Tokens and keys are never printed, and never put on
# curl's command line (which other processes on the runner can read): they
# reach curl as a config on its standard input, written by bash's printf.

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
      token=$(oidc_token) || return 1
      [ -n "$token" ] && [ "$token" != null ] || return 1
      config_line header "authorization: Bearer $token"
      ;;
  esac
}

# request METHOD PATH [BODY]: sets REPLY_STATUS (000 when nothing answered)
# and REPLY_BODY. Answers 0 on a 2xx, 3 on a 4xx, 4 on a 5xx or no answer.
request() {
  local method=$1 path=$2 body=${3:-} config out
  REPLY_STATUS=000 REPLY_BODY=""
  case "${FLAKEFLEET_AUTH:-iam}" in
    iam | github-oidc) ;;
    *) REPLY_BODY="FLAKEFLEET_AUTH is ${FLAKEFLEET_AUTH}; expected iam or github-oidc"; return 2 ;;
  esac
  if ! config=$(credentials); then
    REPLY_BODY="no GitHub OIDC token: the job needs permissions: id-token: write"
    return 4
  fi
  out=$(mktemp)
  local args=(--config - -sS -o "$out" -w '%{http_code}' -X "$method" -H 'content-type: application/json')
  if [ -n "$body" ]; then args+=(--data "$body"); fi
  REPLY_STATUS=$(printf '%s\n' "$config" | curl "${args[@]}" "${FUNCTION_URL%/}$path" 2>"$out.err") || REPLY_STATUS=000
  REPLY_BODY=$(cat "$out")
  if [ "$REPLY_STATUS" = 000 ]; then REPLY_BODY="$(cat "$out.err")"; fi
  rm -f "$out" "$out.err"
  case "$REPLY_STATUS" in
    2??) return 0 ;;
    4??) return 3 ;;
    *) return 4 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  if [ $# -lt 2 ]; then
    echo "usage: $0 METHOD PATH [BODY]" >&2
    exit 2
  fi
  request "$@"
  code=$?
  printf '%s\n' "$REPLY_BODY"
  exit "$code"
fi
