#!/usr/bin/env python3
"""moto server, one request at a time.

moto's own `moto_server` serves requests on threads without a lock, so two
concurrent conditional writes to one DynamoDB item can both succeed: a race
real DynamoDB never has (its conditional writes and transactions are
serialisable). flakefleet's lease depends on exactly that guarantee, so the
local AWS serialises requests. Usage: moto_server.py HOST PORT
"""

import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


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
