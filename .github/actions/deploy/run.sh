#!/usr/bin/env bash
# The action's one step: asks flakefleet for a deploy or a rollback, waits for
# its outcome, and writes the outputs, a job summary and annotations. Run by
# action.yml with the inputs in FLAKEFLEET_* variables; a test runs it with
# bash the same way. Exit codes are the operator CLI's: 0 succeeded (or not
# waited for), 1 failed / rolled back / halted, 2 bad inputs, 3 refused (4xx),
# 4 unreachable or 5xx, 5 timed out (the release goes on).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=request.sh
. "$here/request.sh"

started=$SECONDS
summary=${GITHUB_STEP_SUMMARY:-/dev/null}
outputs=${GITHUB_OUTPUT:-/dev/null}
command=${FLAKEFLEET_COMMAND:-deploy}
wait_for=${FLAKEFLEET_WAIT:-true}
interval=${FLAKEFLEET_INTERVAL:-10}
export FUNCTION_URL=${FLAKEFLEET_FUNCTION_URL:-${FUNCTION_URL:-}}
export FLAKEFLEET_AUTH=${FLAKEFLEET_AUTH:-iam}

# A workflow command's data, escaped as GitHub's toolkit does.
annotation() {
  local text=${2//'%'/'%25'}
  text=${text//$'\r'/'%0D'}
  printf '::%s::%s\n' "$1" "${text//$'\n'/'%0A'}"
}

# The summary shows a message (which may hold a foreign answer's text) in a
# fenced block longer than any run of backticks in it: nothing in it is
# markup, a link or HTML.
fenced() {
  local fence='```' longest
  longest=$(grep -o '`*' <<<"$1" | awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }')
  while [ "${#fence}" -le "$longest" ]; do fence+='`'; done
  printf '%s text\n%s\n%s\n' "$fence" "$1" "$fence"
}

fail() {
  local code=$1 message=$2
  annotation error "flakefleet: $message"
  # $command is deploy or rollback by then, or the refusal says it is not.
  case "$command" in deploy | rollback) printf '### flakefleet %s: not done\n\n' "$command" ;; *) printf '### flakefleet: not done\n\n' ;; esac >>"$summary"
  fenced "$message" >>"$summary"
  exit "$code"
}

seconds_of() {
  case "$1" in
    *[!0-9smh]* | '' | [smh]*) return 1 ;;
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

# -- the inputs -------------------------------------------------------------
case "$command" in deploy | rollback) ;; *) fail 2 "command is ${command@Q}; expected deploy or rollback" ;; esac
case "$FLAKEFLEET_AUTH" in iam | github-oidc) ;; *) fail 2 "auth is ${FLAKEFLEET_AUTH@Q}; expected iam or github-oidc" ;; esac
case "$wait_for" in true | false) ;; *) fail 2 "wait is ${wait_for@Q}; expected true or false" ;; esac
timeout=$(seconds_of "${FLAKEFLEET_TIMEOUT:-1h}") || fail 2 "timeout is ${FLAKEFLEET_TIMEOUT@Q}; expected seconds, or a number with s, m or h"
[[ $interval =~ ^[0-9]+$ ]] || fail 2 "interval is ${interval@Q}; expected seconds"
case "$FUNCTION_URL" in
  https://?* | http://127.0.0.1:* | http://localhost:*) ;;
  *) fail 2 "function-url is ${FUNCTION_URL@Q}; expected the stack's FunctionUrl output (https://…)" ;;
esac
if [ "$FLAKEFLEET_AUTH" = iam ]; then
  # The URL's host names its region: <id>.lambda-url.<region>.on.aws.
  host=${FUNCTION_URL#*://}
  host=${host%%/*}
  region=${FLAKEFLEET_REGION:-}
  if [ -z "$region" ] && [[ $host =~ \.lambda-url\.([a-z0-9-]+)\.on\.aws$ ]]; then region=${BASH_REMATCH[1]}; fi
  export AWS_REGION=${region:-${AWS_REGION:-}}
  [ -n "$AWS_REGION" ] || fail 2 "no region: set the region input, or AWS_REGION (aws-actions/configure-aws-credentials does)"
  [ -n "${AWS_ACCESS_KEY_ID:-}" ] || fail 2 "no AWS credentials: run aws-actions/configure-aws-credentials first, or use auth: github-oidc"
else
  [ -n "${FLAKEFLEET_AUDIENCE:-}" ] || fail 2 "auth github-oidc needs the audience input (the stack's OidcAudience)"
  [ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] || fail 2 "no OIDC token to request: the job needs permissions: id-token: write"
fi

run_url="${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/${GITHUB_RUN_ID:-0}/attempts/${GITHUB_RUN_ATTEMPT:-1}"
# Retries within one attempt return the same release; a re-run is a new attempt, a new deploy.
key=${FLAKEFLEET_IDEMPOTENCY_KEY:-github-${GITHUB_RUN_ID:-0}-${GITHUB_RUN_ATTEMPT:-1}}
if [ "$command" = deploy ]; then
  [ -n "${FLAKEFLEET_FLAKEREF:-}" ] || fail 2 "command deploy needs the flakeref input (exact: <org>/<flake>/=<version>#<attribute path>)"
  reason=${FLAKEFLEET_REASON:-${FLAKEFLEET_COMMIT_MESSAGE:-}}
  path=/releases
else
  reason=${FLAKEFLEET_REASON:-rolled back by ${GITHUB_ACTOR:-someone} from GitHub Actions}
  path=/rollback
fi
# One line, no control or format characters, at most 200: what flakefleet accepts.
body=$(jq -n --arg c "$command" --arg f "${FLAKEFLEET_FLAKEREF:-}" --arg r "${FLAKEFLEET_REVISION:-}" \
  --arg id "${FLAKEFLEET_RELEASE_ID:-}" --arg k "$key" --arg u "$run_url" --arg m "$reason" '
  ($m | split("\n")[0] | gsub("\\p{C}"; "") | .[0:200]) as $reason
  | {idempotency_key: $k, run_url: $u}
  + (if ($reason | test("\\S")) then {reason: $reason} else {} end)
  + if $c == "deploy" then {flakeref: $f} + (if $r == "" then {} else {revision: $r} end)
    else (if $id == "" then {} else {release_id: $id} end) end')

# -- the request --------------------------------------------------------------
# The answer's error, or what answered instead of flakefleet.
why() {
  jq -r 'if type == "object" and (.error | type) == "string" then "\(.error): \(.message // "")" else empty end' \
    <<<"$REPLY_BODY" 2>/dev/null || true
}
refused() {
  local code=$1 said
  said=$(why)
  [ -n "$said" ] || said="not flakefleet's answer: $(head -c 300 <<<"$REPLY_BODY" | tr '\n' ' ')"
  if [ "$REPLY_STATUS" = 000 ]; then said="$FUNCTION_URL did not answer: $said"; else said="$REPLY_STATUS $said"; fi
  fail "$code" "$command refused: $said"
}

request POST "$path" "$body"
code=$?
[ "$code" = 0 ] || refused "$code"
release=$(jq -c .release <<<"$REPLY_BODY")
id=$(jq -r .id <<<"$release")
echo "release-id=$id" >>"$outputs"
echo "flakefleet: $command $id ($(jq -r '"\(.fleet): \(.flakeref)"' <<<"$release"))"

# -- waiting ------------------------------------------------------------------
final() { jq -e '.status | IN("pending", "in_progress") | not' <<<"$release" >/dev/null; }
progress() {
  jq -r '[.instances[]? | .status] as $s
    | "\(.id) \(.status)\(if (.rollout.waves | length? // 0) > 0 then ", wave \(.rollout.waves | length)" else "" end): \($s | map(select(. == "Success")) | length) succeeded, \($s | map(select(. == "Failed" or . == "TimedOut" or . == "Cancelled")) | length) failed"' <<<"$release"
}
timed_out=false
if [ "$wait_for" = true ]; then
  last=""
  while ! final; do
    line=$(progress)
    if [ "$line" != "$last" ]; then echo "[$((SECONDS - started))s] $line"; last=$line; fi
    if [ $((SECONDS - started)) -ge "$timeout" ]; then timed_out=true; break; fi
    sleep "$interval"
    request GET "/releases/$id"
    code=$?
    case "$code" in
      0) release=$(jq -c .release <<<"$REPLY_BODY") ;;
      4) annotation warning "flakefleet: polling $id failed ($REPLY_STATUS $(why)); trying again" ;;
      *) refused "$code" ;;
    esac
  done
  echo "[$((SECONDS - started))s] $(progress)"
fi

# -- what happened --------------------------------------------------------------
status=$(jq -r .status <<<"$release")
echo "status=$status" >>"$outputs"
jq -r --arg waited "$wait_for" --arg timed_out "$timed_out" --arg elapsed "$((SECONDS - started))" \
  --arg repo "${GITHUB_REPOSITORY:-}" -f "$here/summary.jq" <<<"$release" >>"$summary"
# Failed instances, as annotations on the run.
jq -r '.instances[]? | select(.status != "Success")
  | "\(.instance_id) \(.status): \(([.stderr_tail, .stdout_tail] | map(select(. != null and . != "")) | first // "" | split("\n") | map(select(test("\\S"))) | last) // "")"' \
  <<<"$release" | head -n 20 | while IFS= read -r line; do annotation error "flakefleet: $line"; done

if [ "$timed_out" = true ]; then
  annotation error "flakefleet: release $id is still $status after ${timeout}s; it goes on (flakefleet watch $id)"
  exit 5
fi
case "$status" in
  succeeded) exit 0 ;;
  pending | in_progress) exit 0 ;;
  *)
    annotation error "flakefleet: release $id ended $status: $(jq -r '.status_reason // ""' <<<"$release")"
    exit 1
    ;;
esac
