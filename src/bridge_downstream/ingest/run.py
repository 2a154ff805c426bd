"""The ingest stage: upload archives -> validated, schema-bucketed NDJSON datasets.

Every input archive ends in exactly one place: ``processed`` (its rows are in
datasets), ``invalid`` (sent to the invalid sink with the reason) or
``skipped`` (with the reason). A bad archive never stops the batch.

``process_batch`` is the unit of parallel work: the local command runs one
per worker process, the Glue job one per Spark partition. ``run_ingest``
orchestrates a whole run on one machine.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from bridge_downstream.common.run_commits import ClaimingStorage
from bridge_downstream.common.storage import Storage
from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.archive_ingest import ingest_archive, prefetched
from bridge_downstream.ingest.context import IngestContext, TaskCopies
from bridge_downstream.ingest.invalid_sink import InvalidSink
from bridge_downstream.ingest.listing import ArchiveInput, ArchiveListing
from bridge_downstream.ingest.outcomes import (
    OutcomeSpool,
    SpoolState,
    TaskResult,
    discard_task_output,
    finish_run,
    load_ledger,
    repeated_archives,
)
from bridge_downstream.ingest.part_writer import PartWriter, StagedParts
from bridge_downstream.ingest.validation import (
    compile_validators,
)


@dataclass
class TaskState:
    """A task's unpublished part files and unfinished outcome spool, handed
    from the worker process that ran one segment of it to the next."""

    parts: StagedParts
    outcomes: SpoolState
    copies: TaskCopies


def process_batch(
    task: int,
    inputs: Iterable[ArchiveInput],
    ctx: IngestContext,
    output: Storage,
    run_id: str,
    on_archive: Callable[[int], None] | None = None,
    progress_every: int = 1,
    *,
    scratch: str | None = None,
    resume: TaskState | None = None,
    last: bool = True,
    attempt: str | None = None,
) -> TaskResult | TaskState:
    """Ingest archives one after another into this task's part files; their
    outcomes go to the task's spool, not to memory. ``inputs`` come in source
    order (the spools are merged in that order; the spool checks it).

    A task can run in several processes in turn, one segment of its
    archives each: an earlier segment (``last=False``) hands its part files
    and spool over (a :class:`TaskState`, the next one's ``resume``); the
    last publishes the part files and stores the spool (a
    :class:`TaskResult`). ``scratch``: the folder for the task's local files
    (a temporary one if not given).

    The part files are claimed for the run, so they are read only once it
    commits (``finish_run``); ``attempt``: claimed for this attempt at the
    task instead (:func:`~bridge_downstream.common.run_commits.attempt_claimant`),
    where the task may be attempted again within the run."""
    parts_output = ClaimingStorage(output, attempt or run_id)
    if resume:
        spool = OutcomeSpool(task, run_id, resume=resume.outcomes)
        writer = PartWriter.taking_over(task, parts_output, resume.parts, on_published=spool.add_part)
    else:
        spool = OutcomeSpool(task, run_id, directory=scratch and _scratch_folder(scratch, "outcomes"))
        writer = PartWriter(
            task, parts_output, on_published=spool.add_part, staging_dir=scratch and _scratch_folder(scratch, "parts")
        )
    copies = resume.copies if resume else TaskCopies(task)
    try:
        done = 0
        for inp, opening in prefetched(inputs, ctx.prefetch):
            spool.add(ingest_archive(inp, ctx, writer, opening, copies))
            done += 1
            if on_archive and done >= progress_every:
                on_archive(done)
                done = 0
        if on_archive and done:
            on_archive(done)
        if not last:
            return TaskState(writer.hand_over(), spool.hand_over(), copies)
        writer.publish()
        return spool.finish(output, attempt)
    finally:
        writer.close()
        spool.close()


def _scratch_folder(scratch: str, name: str) -> str:
    path = os.path.join(scratch, name)
    os.makedirs(path, exist_ok=True)
    return path


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


_WORKER_CONTEXT: dict[str, Any] = {}


PROGRESS_EVERY = 16  # archives per progress message from a worker


# A process keeps what its allocators once held, a few MiB more over tens of
# thousands of archives. A task therefore runs in a new process every this
# many archives, handing its part files and spool on (TaskState): a backfill
# has the memory of a short batch, and the same part files.
ARCHIVES_PER_PROCESS = 4096


def _run_worker(
    task: int, inputs, run_id: str, messages, scratch: str, resume: TaskState | None, last: bool, report_progress: bool
) -> None:
    """One worker process: one segment of a task's archives, into the task's
    part files and outcome spool; the parent hears only progress (when it
    shows it) and, at the end, the task's tally or the state the next
    segment's process goes on from."""
    try:
        ctx, output = _WORKER_CONTEXT["ctx"], _WORKER_CONTEXT["output"]
        # A message wakes the queue's feeder thread, which then competes with
        # the worker for the interpreter: none is sent when nobody listens.
        report = (lambda done: messages.put(("progress", task, done))) if report_progress else None
        outcome = process_batch(
            task,
            inputs,
            ctx,
            output,
            run_id,
            on_archive=report,
            progress_every=PROGRESS_EVERY,
            scratch=scratch,
            resume=resume,
            last=last,
        )
        messages.put(("result" if last else "handover", task, outcome))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the run
        import traceback

        messages.put(("error", task, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def split_tasks(inputs: Sequence[ArchiveInput], workers: int) -> list[list[ArchiveInput]]:
    """Deterministic slices of the inputs in source order, one per worker:
    the same archives always give the same part files, and every partition
    gets one part file per worker (many small files slow every reader)."""
    count = max(1, min(len(inputs), workers))
    ordered = inputs if isinstance(inputs, ArchiveListing) else sorted(inputs, key=lambda i: i.source)
    return [ordered[i::count] for i in range(count)]


def _run_parallel(
    tasks: Mapping[int, Sequence[ArchiveInput]],
    ctx: IngestContext,
    output: Storage,
    run_id: str,
    progress: Callable[[int], None] | None,
    archives_per_process: int,
) -> list[TaskResult]:
    import multiprocessing
    import queue

    fork = multiprocessing.get_context("fork")
    messages = fork.Queue()
    _WORKER_CONTEXT.update(ctx=ctx, output=output)
    compile_validators(ctx.registry)
    # The workers share the parent's inputs, registry and compiled validators
    # copy-on-write; frozen, the garbage collector does not touch (and so copy)
    # their pages in every worker.
    gc.freeze()
    # The run's local files live here, so they go even if a worker is killed.
    scratch = tempfile.mkdtemp(prefix="bridge-downstream-ingest-")
    segments = {
        task: deque(
            task_inputs[start : start + archives_per_process]
            for start in range(0, len(task_inputs), archives_per_process)
        )
        for task, task_inputs in tasks.items()
    }
    running: dict[int, Any] = {}

    def start_next_segment(task: int, resume: TaskState | None) -> None:
        inputs = segments[task].popleft()
        process = fork.Process(
            target=_run_worker,
            name=f"ingest-task-{task}",
            daemon=True,
            args=(
                task,
                inputs,
                run_id,
                messages,
                os.path.join(scratch, f"task-{task:05d}"),
                resume,
                not segments[task],
                progress is not None,
            ),
        )
        process.start()
        running[task] = process

    results: list[TaskResult] = []
    try:
        for task in tasks:
            start_next_segment(task, None)
        while len(results) < len(tasks):
            try:
                kind, task, payload = messages.get(timeout=1.0)
            except queue.Empty:
                dead = [t for t, process in sorted(running.items()) if process.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(
                        f"ingest worker {dead[0]} died (exit code {running[dead[0]].exitcode})"
                    ) from None
                continue
            if kind == "progress":
                if progress:
                    progress(payload)
            elif kind == "handover":
                running.pop(task).join()
                start_next_segment(task, payload)
            elif kind == "result":
                results.append(payload)
                running.pop(task).join(timeout=10)
            else:
                raise RuntimeError(f"ingest worker {task} failed: {payload}")
    finally:
        for process in running.values():
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        _WORKER_CONTEXT.clear()
        gc.unfreeze()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def run_ingest(
    inputs: Sequence[ArchiveInput],
    *,
    registry: SchemaRegistry,
    profile: Profile,
    output: Storage,
    sink: InvalidSink,
    workers: int | None = None,
    app_id: str | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    progress: Callable[[int], None] | None = None,
    run_id: str | None = None,
    prefetch: int = 0,
    archives_per_process: int | None = None,
) -> dict:
    started = datetime.now(UTC)
    run_id = run_id or new_run_id()
    ctx = IngestContext(registry, profile, limits, app_id, load_ledger(output), prefetch)
    workers = max(1, workers or os.cpu_count() or 1)
    tasks = dict(enumerate(split_tasks(inputs, workers))) if inputs else {}
    per_process = archives_per_process or ARCHIVES_PER_PROCESS
    results = _run_tasks(tasks, ctx, output, run_id, progress, per_process)
    results, ctx = without_repeated_archives(
        results,
        ctx,
        output,
        lambda again, settled: _run_tasks(
            {task: tasks[task] for task in again}, settled, output, run_id, None, per_process
        ),
    )
    return finish_run(run_id, ctx, results, started, output, sink)


def without_repeated_archives(
    results: list[TaskResult],
    ctx: IngestContext,
    output: Storage,
    run_again: Callable[[list[int], IngestContext], list[TaskResult]],
) -> tuple[list[TaskResult], IngestContext]:
    """A run's task results with every archive given twice (one key twice, or
    two keys of the same bytes and metadata) ingested once, and the context
    that says which copy is kept. A task tells a copy that follows its
    original itself; copies the tasks could not tell apart show in their
    spools, and every task that ingested a copy other than the first runs
    again (``run_again``, on whatever runs the tasks), its part files
    replaced, knowing which copy is kept. Rare; nothing is read twice
    otherwise."""
    for _ in range(MAX_COPY_ROUNDS):
        repeated = repeated_archives(output, results)
        if not repeated.tasks:
            return results, ctx
        ctx = dataclasses.replace(ctx, kept_copies={**ctx.kept_copies, **repeated.kept})
        for result in results:
            if result.task in repeated.tasks:
                discard_task_output(output, result)
        again = sorted(repeated.tasks)
        results = [r for r in results if r.task not in repeated.tasks] + run_again(again, ctx)
    raise RuntimeError(f"ingest: archives given more than once were ingested twice after {MAX_COPY_ROUNDS} rounds")


# Rounds of re-running tasks that ingested a copy of an archive: one settles
# it; another only if an archive unreadable in the first round was read in
# the second and turned out a copy too.
MAX_COPY_ROUNDS = 3


def _run_tasks(
    tasks: Mapping[int, Sequence[ArchiveInput]],
    ctx: IngestContext,
    output: Storage,
    run_id: str,
    progress: Callable[[int], None] | None,
    per_process: int,
) -> list[TaskResult]:
    if len(tasks) > 1 or any(len(task_inputs) > per_process for task_inputs in tasks.values()):
        return _run_parallel(tasks, ctx, output, run_id, progress, per_process)
    # One process's worth of archives: no worker process needed. last=True
    # (the default): a finished task's result.
    return [
        cast(TaskResult, process_batch(task, task_inputs, ctx, output, run_id, on_archive=progress))
        for task, task_inputs in tasks.items()
    ]
