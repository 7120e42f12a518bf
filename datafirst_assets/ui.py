"""`datafirst ui` (what `make ui` runs): the Dagster UI, and the reports and charts its links open.

Starts `dagster dev -w workspace.yaml` and a loopback file server for the data folder's reports,
models, catalogues and releases (the `MetadataValue.url` links on asset pages point there).
SIGTERM and SIGINT stop both at once: `dagster dev` maps SIGTERM to SIGINT's handler, and a
process started in the background by a shell inherits SIGINT as *ignored*, so it ignored both;
here SIGINT is restored in the child and every stop signal is passed on as SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from datafirst_assets.reporting.links import FILES_URL_ENV
from datafirst_assets.reporting.serve import make_server

STOP_GRACE_SECONDS = 10  # for dagster dev's own orderly shutdown


def _restore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python then installs its KeyboardInterrupt handler


def run_ui(data_dir: Path, host: str = "127.0.0.1", port: int = 3000, files_port: int = 3001,
           workspace: str = "workspace.yaml") -> int:
    server = make_server(data_dir, host, files_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    files_url = f"http://{host}:{files_port}"
    print(f"Reports and charts served at {files_url}/reports/ ; Dagster UI at http://{host}:{port}", flush=True)
    dev = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", workspace, "-h", host, "-p", str(port)],
        env={**os.environ, FILES_URL_ENV: files_url, "DATAFIRST_DATA_DIR": str(data_dir)},
        preexec_fn=_restore_interrupt, start_new_session=True,  # its own group: stopped as one
    )

    stop_by: list[float] = []

    def stop(signum, _frame) -> None:
        if dev.poll() is None and not stop_by:
            dev.send_signal(signal.SIGINT)
            stop_by.append(time.monotonic() + STOP_GRACE_SECONDS)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while dev.poll() is None:
            if stop_by and time.monotonic() > stop_by[0]:
                # dagster dev waits for its webserver and daemon one after the other; don't wait that long
                os.killpg(dev.pid, signal.SIGKILL)
            time.sleep(0.2)
        return dev.returncode
    finally:
        server.shutdown()
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
