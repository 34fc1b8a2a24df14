#!/usr/bin/env python3
"""moto server, one request at a time.

moto's own `moto_server` serves requests on threads without a lock, so two
concurrent conditional writes to one DynamoDB item can both succeed: a race
real DynamoDB never has (its conditional writes and transactions are
serialisable). flakefleet's lease depends on exactly that guarantee, so the
local AWS serialises requests.

moto also finds one EC2 resource's tags by scanning every tag in the region,
which makes a DescribeInstances tag filter quadratic in the fleet's size
(2.6 s for a 5-instance page of 2,000 instances). The patch below looks the
resource up by id and answers the same list, so benchmarks at 10,000
instances measure flakefleet rather than that scan.

Usage: moto_server.py HOST PORT
"""

import sys
import threading

from werkzeug.serving import run_simple

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def _tags_of(resource):
    """TaggedEC2Resource.get_tags, by id instead of by scanning every tag."""
    rid = getattr(resource, "id", None)
    if not rid:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")
    tags = resource.ec2_backend.tags.get(rid, {})
    return [{"resource_id": rid, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()]


TaggedEC2Resource.get_tags = _tags_of


class Serialised:
    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Read the whole response inside the lock: moto may produce it lazily.
            return list(self.app(environ, start_response))


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialised(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
