"""Checkpoint merging: A1111's methods plus per-block weights, streamed tensor by tensor.

The tab (modules/ui/checkpoint_merger.py), the API (modules/api/merge_routes.py) and the command
line (tools/merge_unet_blocks.py) all call `engine.merge`; `jobs.run_merge_job` runs it on the queue.
"""
from modules.merge.engine import METHODS, MergeInterrupted, MergeRequest, MergeResult, merge  # noqa: F401
from modules.merge.errors import MergeError  # noqa: F401
