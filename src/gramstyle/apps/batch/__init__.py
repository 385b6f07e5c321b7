"""`gramstyle batch`: many runs in one command, on this machine or a Ray cluster, resumable.

From Python::

    from gramstyle.apps.batch import batch, expand, LocalExecutor, RayExecutor
    jobs = expand(["photo.jpg"], ["starry.jpg", "scream.jpg"], Settings(size=256), [parse_axis("ratio=1e-4,1e-3")])
    summary = batch(jobs, "out", executor=LocalExecutor(jobs=2))
"""

from .jobs import Axis, Job, expand, expand_inputs, parse_axis
from .on_ray import RayExecutor
from .runner import MANIFEST, SHEET, Executor, LocalExecutor, Outcome, Summary, Work, batch, execute, write_sheet

__all__ = [
    "MANIFEST",
    "SHEET",
    "Axis",
    "Executor",
    "Job",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "Summary",
    "Work",
    "batch",
    "execute",
    "expand",
    "expand_inputs",
    "parse_axis",
    "write_sheet",
]
