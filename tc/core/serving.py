"""What every task's ``tc serve`` shares: the listening socket bound before the server starts (a busy
port is a one-line error, not a half-up server), a clean exit on SIGTERM, and the extras check."""

from __future__ import annotations

import signal
import socket
from typing import Any

from tc.core.errors import TcError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one), or a one-line error naming the flag."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise TcError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise TcError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class quiet_stop:  # lower case: used as a context manager, reads like one
    """uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut down, so that default handlers
    run: with SIGTERM's default that kills the process (exit -15) after a clean shutdown. Install no-op
    handlers around ``server.run`` so the process exits 0 instead; uvicorn's own handlers sit inside."""

    def __enter__(self) -> None:
        self.saved: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved[sig] = signal.signal(sig, lambda *_: None)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def require_extras() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise TcError(f"tc serve needs {' and '.join(missing)}: pip install 'tc[serve]'")


def run_server(load: Any, make_app: Any, host: str, port: int, what: str) -> None:
    """Bind ``host:port``, then ``load()`` the predictor, then serve ``make_app(predictor)`` with uvicorn until
    SIGTERM/SIGINT; the port and the model are checked before the server starts, the predictor closed after."""
    require_extras()
    import sys

    import uvicorn

    listener = bind(host, port)
    try:
        predictor = load()
    except BaseException:
        listener.close()
        raise
    try:
        server = uvicorn.Server(uvicorn.Config(make_app(predictor), log_level="warning", lifespan="on"))
        bound = listener.getsockname()
        print(f"serving {what} at http://{url_host(bound[0])}:{bound[1]}", file=sys.stderr, flush=True)
        with quiet_stop():
            server.run(sockets=[listener])
        if not server.started:
            raise TcError(f"--port {port}: the server failed to start on {host} (see the log above)")
        print("stopped", file=sys.stderr, flush=True)
    finally:
        listener.close()
        predictor.close()
