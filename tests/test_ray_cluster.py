"""`emoreel batch --engine ray` on a real two-node Ray cluster (a head and a worker, each its own `ray start`
process on 127.0.0.1, one CPU each, token authentication on): tasks sized to the nodes, both nodes used,
results equal to plain analyze, a worker node killed mid-batch, a batch that cannot start, and a driver
without the cluster's token."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emoreel.analysis.run import analyze_to_dir
from emoreel.config import AnalyzeOptions
from emoreel.media.sample import make_example_video

pytest.importorskip("ray")

from ray_cluster import LocalCluster  # noqa: E402  (tests/ is on the path)

VIDEOS = [(120, 230), (140, 200), (160, 160), (130, 230), (150, 200), (120, 160)]  # (frames, face px): all differ


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster()
    try:
        c.start_head(cpus=1)
        c.worker = c.add_worker(cpus=1)
        yield c
    finally:
        c.stop()
    assert not c.pids(), "Ray processes outlived the cluster"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vids")
    for i, (frames, face) in enumerate(VIDEOS):
        make_example_video(d / f"v{i}.mp4", frames=frames, face_px=face)
    return d


@pytest.fixture(scope="module")
def plain(videos, tmp_path_factory) -> dict[str, bytes]:
    """results.csv of plain `analyze` of each video (one thread, as the 1-CPU nodes run them)."""
    out = tmp_path_factory.mktemp("plain")
    res = {}
    for v in sorted(videos.glob("*.mp4")):
        analyze_to_dir(v, out / v.stem, AnalyzeOptions(threads=1))
        res[v.name] = (out / v.stem / "results.csv").read_bytes()
    return res


def batch(cluster, videos, root, *extra, env=None, wait=True):
    cmd = [sys.executable, "-m", "emoreel.cli", "batch", str(videos), "-o", str(root), "--engine", "ray",
           "--address", cluster.address, *extra]  # fmt: skip
    p = subprocess.Popen(cmd, env=env or cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def rows(root: Path) -> dict[str, dict]:
    with open(root / "batch.csv", newline="") as fh:
        return {Path(r["input"]).name: r for r in csv.DictReader(fh)}


def assert_all_right(root: Path, plain: dict[str, bytes]) -> None:
    r = rows(root)
    assert sorted(r) == sorted(plain) and all(x["status"] == "complete" for x in r.values()), r
    for name, want in plain.items():
        assert (root / r[name]["folder"] / "results.csv").read_bytes() == want, name  # the same rows, byte for byte


def test_a_batch_runs_on_both_nodes_and_equals_plain_analyze(cluster, videos, plain, tmp_path):
    # each task would ask for 2 CPUs (the default --threads); no node has 2: sized to 1, not a silent hang
    code, out, err = batch(cluster, videos, tmp_path / "root")
    assert code == 0, err
    assert "6 videos: 6 complete" in out and "on 2 Ray nodes" in out, out
    assert_all_right(tmp_path / "root", plain)


def test_a_worker_node_killed_mid_batch_costs_only_a_retry(cluster, videos, plain, tmp_path):
    root = tmp_path / "root"
    p = batch(cluster, videos, root, wait=False)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and p.poll() is None:  # both nodes busy once the first video is in
            if (root / "batch.csv").exists() and any(r["status"] == "complete" for r in rows(root).values()):
                break
            time.sleep(0.2)
        assert p.poll() is None, "the batch ended before the worker could be killed"
        cluster.kill(cluster.worker)
        out, err = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "6 videos: 6 complete" in out, out
    assert_all_right(root, plain)


def test_a_batch_that_cannot_start_ends_with_a_clear_message_and_resumes(cluster, videos, plain, tmp_path):
    # another job holds every CPU of the cluster (the worker node is dead by now: only the head's)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import ray, sys, time\n"
        f"ray.init(address={cluster.address!r}, logging_level='ERROR', log_to_driver=False)\n"
        "hold = ray.remote(num_cpus=1)(lambda: time.sleep(120))\n"
        "cpus = int(ray.cluster_resources().get('CPU', 0))\n"
        "refs = [hold.remote() for _ in range(cpus)]\n"
        "while ray.available_resources().get('CPU', 0) > 0: time.sleep(0.2)\n"
        "print('holding', flush=True)\n"
        "ray.get(refs)\n")], env=cluster.env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        code, out, err = batch(cluster, videos, tmp_path / "root", "--start-timeout", "6")
        assert code == 2 and time.monotonic() - t0 < 60
        assert "tasks wait for CPUs on the Ray cluster" in err  # said while it waits, also without a terminal
        assert err.strip().splitlines()[-1].startswith("emoreel: error: no Ray task could start in 6 s"), err
        assert all(r["status"] == "incomplete" and r["reason"].startswith("not started") for r in rows(tmp_path / "root").values())
    finally:
        holder.kill()
        holder.wait(10)
    code, out, err = batch(cluster, videos, tmp_path / "root")  # the CPUs are free again: the same command finishes
    assert code == 0, err
    assert_all_right(tmp_path / "root", plain)


def test_a_driver_without_the_token_is_told_what_to_set(cluster, videos, tmp_path):
    env = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    t0 = time.monotonic()
    code, out, err = batch(cluster, videos, tmp_path / "root", env=env)
    assert code == 2 and time.monotonic() - t0 < 30
    assert err.strip() == ("emoreel: error: cannot connect to Ray (%s): the cluster uses token authentication: set "
                           "RAY_AUTH_MODE=token and give its token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
                           "RAY_AUTH_TOKEN)" % cluster.address), err  # fmt: skip
    assert not (tmp_path / "root").exists()
