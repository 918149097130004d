"""cpu_policy: the bot's other threads yield the CPU to intake's, and leave any other choice alone."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from mailbot import cpu_policy


def in_a_thread(work: Callable[[], object]) -> object:
    """``work()`` in a thread of its own, so this process's main thread keeps its policy whatever happens."""
    result: list[object] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001  (raised again in the test's thread)
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def policy() -> int:
    return os.sched_getscheduler(0)


def test_a_batch_thread_and_the_threads_it_starts_yield_and_it_is_ordinary_again_after() -> None:
    def work() -> tuple[int, int, int, int]:
        before = policy()
        with cpu_policy.batch():
            inside = policy()
            started = in_a_thread(policy)
        return before, inside, started, policy()  # type: ignore[return-value]

    assert in_a_thread(work) == (os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_BATCH, os.SCHED_OTHER)


def test_intake_started_from_a_batch_thread_runs_as_an_ordinary_thread_and_yields_again_after() -> None:
    def work() -> tuple[int, int, int]:
        with cpu_policy.batch():
            def intake() -> tuple[int, int]:
                with cpu_policy.intake():
                    inside = policy()
                return inside, policy()

            inside, after = in_a_thread(intake)  # type: ignore[misc]
            return policy(), inside, after

    assert in_a_thread(work) == (os.SCHED_BATCH, os.SCHED_OTHER, os.SCHED_BATCH)


def test_intake_in_an_ordinary_thread_changes_nothing() -> None:
    def work() -> tuple[int, int]:
        with cpu_policy.intake():
            inside = policy()
        return inside, policy()

    assert in_a_thread(work) == (os.SCHED_OTHER, os.SCHED_OTHER)


def test_a_policy_an_operator_chose_is_left_as_it_is() -> None:
    def work() -> tuple[int, int, int]:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # as `chrt --idle` would leave it
        with cpu_policy.batch():
            in_batch = policy()
        with cpu_policy.intake():
            in_intake = policy()
        return in_batch, in_intake, policy()

    assert in_a_thread(work) == (os.SCHED_IDLE, os.SCHED_IDLE, os.SCHED_IDLE)


def test_a_bot_an_operator_started_as_a_batch_process_keeps_intake_a_batch_thread() -> None:
    def work() -> tuple[int, int, int]:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # as `chrt --batch 0 mailbot run` would
        with cpu_policy.batch():
            def intake() -> int:
                with cpu_policy.intake():
                    return policy()

            return policy(), in_a_thread(intake), policy()  # type: ignore[return-value]

    assert in_a_thread(work) == (os.SCHED_BATCH, os.SCHED_BATCH, os.SCHED_BATCH)


def test_a_batch_block_ended_by_an_error_puts_the_thread_back() -> None:
    def work() -> int:
        try:
            with cpu_policy.batch():
                raise RuntimeError("a pass that failed")
        except RuntimeError:
            pass
        return policy()

    assert in_a_thread(work) == os.SCHED_OTHER
