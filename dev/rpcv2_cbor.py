"""Smithy RPC v2 CBOR in front of moto.

The AWS SDK for Rust speaks CloudWatch's newest protocol, Smithy RPC v2 CBOR
(https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html):
`POST /service/<service>/operation/<operation>`, header `smithy-protocol:
rpc-v2-cbor`, a CBOR body. moto 5.2 serves CloudWatch only in the JSON and
query protocols. This middleware translates a CBOR request into the same
operation in AWS JSON 1.0 (`X-Amz-Target: <service>.<operation>`), lets moto
answer it, and translates the answer back: the output decoded against the
operation's shape in botocore's CloudWatch model (so timestamps become CBOR
epoch timestamps, tag 1, as the protocol requires), errors as a CBOR map with
`__type`, both with `smithy-protocol: rpc-v2-cbor` (a client must refuse an
answer without it). Every other request passes through untouched.

Where moto is kinder than CloudWatch, the translation is as strict as the API
reference (dev/README.md cites it):

- DescribeAlarms returns metric alarms only unless `AlarmTypes` asks for
  others: "If you omit this parameter, only metric alarms are returned, even
  if composite alarms exist in the account." moto ignores `AlarmTypes` and
  returns both kinds; here each kind not asked for is dropped.
- PutCompositeAlarm, which moto 5.2 does not route, is stored in moto as a
  bare alarm of that name (so SetAlarmState and DescribeAlarms reach it) and
  remembered here with its rule; DescribeAlarms answers it among the
  composite alarms, never the metric ones.
"""

import datetime
import io
import json
import re

import botocore.parsers
import botocore.session
import cbor2

PATH = re.compile(r"^/service/(?P<service>[A-Za-z0-9_.]+)/operation/(?P<operation>[A-Za-z0-9_]+)$")
# The services this translates, by their Smithy service name, and the botocore model each follows.
SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}
# What a composite alarm's description carries of an alarm's (botocore's CompositeAlarm shape).
COMPOSITE_FIELDS = ("ActionsEnabled", "AlarmActions", "AlarmArn", "AlarmConfigurationUpdatedTimestamp",
                    "AlarmDescription", "AlarmName", "InsufficientDataActions", "OKActions", "StateReason",
                    "StateReasonData", "StateUpdatedTimestamp", "StateValue")


def _json_default(value):
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    raise TypeError(f"cannot carry {type(value).__name__} into JSON")


class RpcV2Cbor:
    def __init__(self, app):
        self.app = app
        self.models = {}
        # Composite alarms by name: their rule (moto keeps no composite alarms of its own).
        self.composites = {}

    def _model(self, name):
        if name not in self.models:
            self.models[name] = botocore.session.get_session().get_service_model(name)
        return self.models[name]

    def __call__(self, environ, start_response):
        match = PATH.match(environ.get("PATH_INFO", ""))
        if environ.get("HTTP_SMITHY_PROTOCOL") != "rpc-v2-cbor" or match is None:
            return self.app(environ, start_response)
        service, operation = match["service"], match["operation"]
        if service not in SERVICES:
            return self._error(start_response, "400 Bad Request", "UnknownOperationException",
                               f"the local AWS translates RPC v2 CBOR for {sorted(SERVICES)} only, not {service}")
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b""
        try:
            params = cbor2.loads(raw) if raw else {}
        except Exception as e:  # noqa: BLE001 - any undecodable body is the client's
            return self._error(start_response, "400 Bad Request", "SerializationException", f"the body is not CBOR: {e}")
        asked = params
        if operation == "PutCompositeAlarm":
            if not params.get("AlarmName") or not params.get("AlarmRule"):
                return self._error(start_response, "400 Bad Request", "ValidationError",
                                   "PutCompositeAlarm needs AlarmName and AlarmRule")
            self.composites[params["AlarmName"]] = params["AlarmRule"]
            operation, params = "PutMetricAlarm", {
                k: v for k, v in params.items()
                if k in ("AlarmName", "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions",
                         "InsufficientDataActions", "Tags")
            }
        body = json.dumps(params, default=_json_default).encode()
        inner = dict(environ)
        inner.update({
            "PATH_INFO": "/",
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_X_AMZ_TARGET": f"{service}.{operation}",
            "HTTP_X_AMZN_QUERY_MODE": "true",
            "wsgi.input": io.BytesIO(body),
        })
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        captured = {}

        def start(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        answer = b"".join(self.app(inner, start))
        status = captured["status"]
        if not status.startswith("2"):
            try:
                error = json.loads(answer or b"{}")
            except ValueError:
                error = {"__type": "InternalFailure", "message": answer.decode(errors="replace")[:500]}
            kind = str(error.get("__type") or error.get("code") or "InternalFailure").split("#")[-1]
            return self._send(start_response, status, {"__type": kind, "message": error.get("message", "")})
        model = self._model(SERVICES[service])
        shape = model.operation_model(operation).output_shape
        output = {}
        if shape is not None and answer:
            parsed = botocore.parsers.create_parser("json").parse(
                {"body": answer, "headers": dict(captured["headers"]), "status_code": 200}, shape)
            output = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        if operation == "DescribeAlarms":
            composite = [a for a in output.get("MetricAlarms", []) if a.get("AlarmName") in self.composites]
            output["MetricAlarms"] = [a for a in output.get("MetricAlarms", []) if a not in composite]
            output["CompositeAlarms"] = output.get("CompositeAlarms", []) + [
                {k: v for k, v in a.items() if k in COMPOSITE_FIELDS} | {"AlarmRule": self.composites[a["AlarmName"]]}
                for a in composite
            ]
            # Only the kinds AlarmTypes names; metric alarms alone when it is absent.
            types = asked.get("AlarmTypes") or ["MetricAlarm"]
            for kind in ("MetricAlarm", "CompositeAlarm", "LogAlarm"):
                if kind not in types:
                    output.pop(kind + "s", None)
        return self._send(start_response, status, output)

    def _error(self, start_response, status, kind, message):
        return self._send(start_response, status, {"__type": kind, "message": message})

    @staticmethod
    def _send(start_response, status, value):
        out = cbor2.dumps(value, datetime_as_timestamp=True, timezone=datetime.timezone.utc)
        start_response(status, [
            ("Content-Type", "application/cbor"),
            ("Content-Length", str(len(out))),
            ("smithy-protocol", "rpc-v2-cbor"),
        ])
        return [out]
