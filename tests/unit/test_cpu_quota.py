"""How many CPUs the backlog's reader child may count on: a container's CPU quota, not only its CPU set."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from mailbot.mail import parse_pool
from mailbot.mail.parse_pool import ParsePool, cgroup_v2_dirs, quota_cpus, usable_cpus


@pytest.mark.parametrize(("cpu_max", "quota_us", "period_us", "expected"), [
    # cgroup v2: "<quota> <period>", or "max <period>" for none
    ("max 100000\n", None, None, None),
    ("100000 100000\n", None, None, 1.0),
    ("150000 100000\n", None, None, 1.5),
    ("400000 100000\n", None, None, 4.0),
    ("50000 100000", None, None, 0.5),
    ("200000\n", None, None, 2.0),  # no period given: the kernel's default, 100 ms
    # cgroup v2 wins over v1 when both are there
    ("max 100000\n", "100000\n", "100000\n", None),
    # cgroup v1: quota -1 is none
    (None, "-1\n", "100000\n", None),
    (None, "100000\n", "100000\n", 1.0),
    (None, "250000\n", "100000\n", 2.5),
    (None, "100000\n", None, None),  # half of v1's pair: nothing we can read
    # no cgroup files (not Linux, or not in a cgroup with the CPU controller)
    (None, None, None, None),
    # what no kernel writes: read as no limit rather than a crash
    ("", None, None, None),
    ("lots 100000", None, None, None),
    ("0 100000", None, None, None),
    ("100000 0", None, None, None),
    (None, "abc", "100000", None),
])
def test_quota_cpus(cpu_max: str | None, quota_us: str | None, period_us: str | None,
                    expected: float | None) -> None:
    assert quota_cpus(cpu_max, quota_us, period_us) == expected


@pytest.mark.parametrize(("proc_self_cgroup", "expected"), [
    # a systemd unit (CPUQuota=): its own directory, then each parent's
    ("0::/system.slice/mailbot.service\n", ["/sys/fs/cgroup/system.slice/mailbot.service",
                                            "/sys/fs/cgroup/system.slice", "/sys/fs/cgroup"]),
    # a container with its own cgroup namespace: its cgroup is the root it sees
    ("0::/\n", ["/sys/fs/cgroup"]),
    # cgroup v1 beside v2 (a hybrid host): only the unified line names v2 directories
    ("12:cpu,cpuacct:/docker/abc\n0::/user.slice\n", ["/sys/fs/cgroup/user.slice", "/sys/fs/cgroup"]),
    # cgroup v1 alone, no file, nothing readable: the root (where a container's cpu.max is)
    ("4:cpu,cpuacct:/\n", ["/sys/fs/cgroup"]),
    (None, ["/sys/fs/cgroup"]),
    ("", ["/sys/fs/cgroup"]),
    # a cgroup outside the namespace's view: never a path that climbs out of /sys/fs/cgroup
    ("0::/../../elsewhere\n", ["/sys/fs/cgroup/elsewhere", "/sys/fs/cgroup"]),
])
def test_cgroup_v2_dirs(proc_self_cgroup: str | None, expected: list[str]) -> None:
    assert cgroup_v2_dirs(proc_self_cgroup) == expected


def test_a_parents_quota_counts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit has no quota of its own, but the slice it runs in allows one and a half CPUs."""
    files = {"/proc/self/cgroup": "0::/system.slice/mailbot.service\n",
             "/sys/fs/cgroup/system.slice/mailbot.service/cpu.max": "max 100000\n",
             "/sys/fs/cgroup/system.slice/cpu.max": "150000 100000\n"}
    monkeypatch.setattr(parse_pool, "_read", files.get)
    assert usable_cpus() == min(1.5, len(os.sched_getaffinity(0)))


def test_usable_cpus_is_never_more_than_the_cpu_set() -> None:
    assert 0 < usable_cpus() <= len(os.sched_getaffinity(0))


def test_a_quota_of_one_cpu_keeps_the_reading_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker run --cpus 1` on a many-core host: the CPU set still lists every core, but a child could only take
    turns with intake for the one core's time."""
    monkeypatch.setattr(parse_pool, "_read", lambda path: "100000 100000\n" if path.endswith("cpu.max") else None)
    assert usable_cpus() == 1.0
    pool = ParsePool()
    assert pool.cpus == 1.0
    raws = [f"From: a{i}@example.org\r\nSubject: s{i}\r\n\r\nbody {i}\r\n".encode() for i in range(20)]
    assert [m.subject for m in pool.read(raws)] == [f"s{i}" for i in range(20)]
    assert pool.read_there == 0
    assert multiprocessing.active_children() == []


def test_a_pass_over_a_message_or_two_reads_no_cgroup_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon builds a reader for every pass; its message or two is read here without asking about CPUs."""
    asked: list[str] = []
    monkeypatch.setattr(parse_pool, "_read", lambda path: asked.append(path))
    with ParsePool() as pool:
        raws = [f"From: a{i}@example.org\r\nSubject: s{i}\r\n\r\nbody {i}\r\n".encode() for i in range(2)]
        assert [m.subject for m in pool.read(raws)] == ["s0", "s1"]
    assert asked == []
