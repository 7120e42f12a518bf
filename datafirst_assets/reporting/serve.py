"""Serve the data folder's reports, charts, catalogues and releases on a local port (`make ui`).

Only the folders in `SERVED_FOLDERS` are served (never the landing zone, the warehouse or the
truth), on loopback, so the links on asset pages open in the browser next to the UI.
"""

from __future__ import annotations

import argparse
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from datafirst_assets.reporting.links import SERVED_FOLDERS


class ReportHandler(SimpleHTTPRequestHandler):
    def send_head(self):
        top = self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        if top not in SERVED_FOLDERS:
            self.send_error(404, f"only {', '.join(SERVED_FOLDERS)} are served")
            return None
        return super().send_head()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # quiet: `make ui` shows Dagster's log


def make_server(data_dir: Path, host: str = "127.0.0.1", port: int = 3001) -> ThreadingHTTPServer:
    handler = functools.partial(ReportHandler, directory=str(data_dir))
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args(argv)
    with make_server(args.data_dir, args.host, args.port) as server:
        print(f"Reports and charts: http://{args.host}:{args.port}/reports/ (serving {args.data_dir.resolve()})")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
