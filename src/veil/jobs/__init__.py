"""Job files and ``veil run``: parse a job, run its steps with one process per party.

Public API: :func:`load_job` (parse + validate a job file), :func:`run_job`
(run it locally), :func:`register` + :class:`StepContext` (add a step).
"""

from veil.jobs.context import StepContext
from veil.jobs.registry import register
from veil.jobs.runner import RunOptions, RunResult, run_job
from veil.jobs.spec import JobSpec, PartySpec, StepSpec, load_job

__all__ = [
    "JobSpec",
    "PartySpec",
    "RunOptions",
    "RunResult",
    "StepContext",
    "StepSpec",
    "load_job",
    "register",
    "run_job",
]
