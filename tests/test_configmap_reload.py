"""A mounted ConfigMap changes by an atomic symlink swap, and the running daemon reloads it (issue 12).

The kubelet writes a ConfigMap's new files into a fresh timestamped directory, points ``..data_tmp`` at
it and renames that over ``..data`` in one step; the files the daemon opens are symlinks through
``..data``, so nothing about their own names changes. This test lays out the SLO files and the config
file exactly so, starts the daemon on them, swaps both, and waits for the daemon to serve the new SLO and
say that it applied the new config.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.test_daemon import EXTRA_SLO, SLO_FILE, DaemonProcess, free_port, wait_for


@pytest.fixture
def daemons(real_processes: None) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.close()


def _stamp(n: int) -> str:
    return datetime(2026, 12, 4, 12, 0, n, tzinfo=UTC).strftime("..%Y_%m_%d_%H_%M_%S.000000001")


def mount(directory: Path, files: dict[str, str], n: int = 0) -> None:
    """Write ``files`` as the kubelet does: a timestamped directory, ``..data``, one symlink per key."""
    stamp = directory / _stamp(n)
    stamp.mkdir(parents=True)
    for key, text in files.items():
        (stamp / key).write_text(text)
    (directory / "..data").symlink_to(stamp.name)
    for key in files:
        (directory / key).symlink_to(Path("..data") / key)


def swap(directory: Path, files: dict[str, str], n: int) -> None:
    """The kubelet's update: new files in a new directory, ``..data`` swapped by one rename, the old
    directory removed; keys that are new get their symlink (existing symlinks keep their names)."""
    old = (directory / "..data").readlink()
    stamp = directory / _stamp(n)
    stamp.mkdir()
    for key, text in files.items():
        (stamp / key).write_text(text)
    (directory / "..data_tmp").symlink_to(stamp.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for key in files:
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(Path("..data") / key)
    for stale in (directory / old).iterdir():
        stale.unlink()
    (directory / old).rmdir()


def test_a_configmap_swap_reloads_the_slo_files_and_the_config_file(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    slos, config = tmp_path / "slos", tmp_path / "config"
    mount(slos, {"checkout.yaml": textwrap.dedent(SLO_FILE)})
    mount(config, {"config.yaml": "log_level: INFO\nretention: 90d\n"})
    # The source is a closed loopback port: reloading needs no answers, and a fault changes no SLO list.
    daemon = DaemonProcess(
        slos, f"http://127.0.0.1:{free_port()}", tmp_path / "bg.db", config=config / "config.yaml"
    )
    daemons.append(daemon)
    daemon.wait_ready()

    def served() -> set[str]:
        return {f"{s['service']}/{s['slo']}" for s in daemon.get("/api/v1/slos").json()["slos"]}

    assert served() == {"checkout/availability"}
    # Same file names, new targets: checkout.yaml keeps its size and may keep its mtime (one clock tick).
    swap(slos, {"checkout.yaml": textwrap.dedent(SLO_FILE), "search.yaml": textwrap.dedent(EXTRA_SLO)}, 1)
    swap(config, {"config.yaml": "log_level: INFO\nretention: 60d\n"}, 1)
    wait_for(
        lambda: served() == {"checkout/availability", "search/availability"}, 15, "the swapped SLO files"
    )
    wait_for(lambda: "retention" in daemon.logs() and "applied" in daemon.logs(), 15, "the swapped config")
    assert daemon.stop() == 0
