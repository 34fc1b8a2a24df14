#!/usr/bin/env bash
# Starts or stops the local AWS: moto server (DynamoDB, EC2, IAM) and the
# project's SSM Run Command simulator, on 127.0.0.1.
#   dev/local-aws.sh start|stop|status
# Ports come from MOTO_PORT (default 5055) and SSM_SIM_PORT (default 5056);
# SSM_SIM_PIPES_INTERVAL sets how often the local pipes poll (dev/event_pipes.py);
# logs and pid files go to .dev/run-<moto port>/.
set -euo pipefail
cd "$(dirname "$0")/.."

moto_port=${MOTO_PORT:-5055}
sim_port=${SSM_SIM_PORT:-5056}
run=.dev/run-$moto_port
venv=.dev/venv
mkdir -p "$run"

wait_for() { # url name log
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not come up; its log ($3) ends with:" >&2
  tail -n 20 "$3" >&2
  return 1
}

stop_one() {
  if [ -f "$run/$1.pid" ]; then
    kill "$(cat "$run/$1.pid")" 2>/dev/null || true
    rm -f "$run/$1.pid"
  fi
}

case "${1:-}" in
  start)
    "$0" stop >/dev/null
    MOTO_AMIS_PATH="$PWD/dev/amis.json" MOTO_PORT="$moto_port" \
      nohup "$venv/bin/python" dev/moto_server.py 127.0.0.1 "$moto_port" >"$run/moto.log" 2>&1 &
    echo $! >"$run/moto.pid"
    wait_for "http://127.0.0.1:$moto_port/moto-api/" "moto" "$run/moto.log"
    nohup "$venv/bin/python" dev/ssm_sim.py --port "$sim_port" --moto-url "http://127.0.0.1:$moto_port" \
      --template template.yaml --pipes-interval "${SSM_SIM_PIPES_INTERVAL:-0.25}" >"$run/ssm-sim.log" 2>&1 &
    echo $! >"$run/ssm-sim.pid"
    wait_for "http://127.0.0.1:$sim_port/_sim/health" "the SSM simulator" "$run/ssm-sim.log"
    echo "local AWS up: moto on 127.0.0.1:$moto_port, SSM simulator on 127.0.0.1:$sim_port"
    ;;
  stop)
    stop_one ssm-sim
    stop_one moto
    ;;
  status)
    curl -fs -o /dev/null "http://127.0.0.1:$moto_port/moto-api/" && echo "moto up on $moto_port"
    curl -fs -o /dev/null "http://127.0.0.1:$sim_port/_sim/health" && echo "SSM simulator up on $sim_port"
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
