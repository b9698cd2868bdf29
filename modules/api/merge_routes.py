"""`POST /sdapi/v1/merge-checkpoints` (ours; A1111 has no merge route): the merger as a queued job.

Fields are the Checkpoint Merger's (A1111's `run_modelmerger` names) plus block weights, either as
the comma list `block_weights` or per block as `block_alphas`. Progress shows on `/sdapi/v1/progress`
while it runs; the new checkpoint is in `/sdapi/v1/sd-models` when it returns.
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from modules.merge import MergeError, MergeInterrupted, MergeRequest, jobs
from modules import shared


class BlockAlphas(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_alpha: float = Field(default=0.0, description="alpha of UNet keys no block names")
    input_blocks: str | dict[str, float] | None = Field(default=None, description='"index:alpha, ..." e.g. "0:0.5, 3:0.6"')
    middle_blocks: str | dict[str, float] | None = None
    output_blocks: str | dict[str, float] | None = None
    out: str | dict[str, float] | None = None
    time_embed: str | dict[str, float] | None = None
    label_emb: float | None = Field(default=None, description="SDXL only")


class MergeCheckpointsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary_model_name: str = Field(description="checkpoint title or name (GET /sd-models)")
    secondary_model_name: str | None = None
    tertiary_model_name: str | None = None
    interp_method: Literal["No interpolation", "Weighted sum", "Add difference"] = "Weighted sum"
    multiplier: float = Field(default=0.3, description="M: share of the secondary model")
    block_weights: str | None = Field(default=None, description="25/26 (SDXL 19/20) comma-separated values or a preset name")
    block_alphas: BlockAlphas | None = None
    text_encoder_alpha: float | None = None
    vae_alpha: float | None = None
    save_as_half: bool = False
    custom_name: str = ""
    checkpoint_format: Literal["safetensors", "ckpt"] = "safetensors"
    config_source: int = Field(default=0, ge=0, le=3, description="0 A, B or C; 1 B; 2 C; 3 don't copy")
    bake_in_vae: str = "None"
    discard_weights: str = ""
    save_metadata: bool = True
    add_merge_recipe: bool = True
    copy_metadata_fields: bool = True
    metadata_json: str = "{}"
    overwrite: bool = False


class MergeCheckpointsResponse(BaseModel):
    info: str
    filename: str
    title: str
    sha256: str


def build_request(body: MergeCheckpointsRequest) -> MergeRequest:
    """Names -> files (422 on unknown ones, listing the valid titles) and the engine's request."""
    models = {}
    for label, field in (("A", "primary_model_name"), ("B", "secondary_model_name"), ("C", "tertiary_model_name")):
        models[label] = jobs.resolve_checkpoint(getattr(body, field), field, exact=True)
    vae_path, vae_name = jobs.resolve_vae(body.bake_in_vae)
    alphas = body.block_alphas.model_dump(exclude_none=True) if body.block_alphas else None
    return MergeRequest(
        primary=models["A"].filename if models["A"] else "",
        secondary=models["B"].filename if models["B"] else None,
        tertiary=models["C"].filename if models["C"] else None,
        interp_method=body.interp_method, multiplier=body.multiplier, block_weights=body.block_weights or None,
        block_alphas=alphas, text_encoder_alpha=body.text_encoder_alpha, vae_alpha=body.vae_alpha,
        save_as_half=body.save_as_half, output_dir=shared.paths.checkpoints, custom_name=body.custom_name,
        checkpoint_format=body.checkpoint_format, bake_in_vae=vae_path, bake_in_vae_name=vae_name,
        discard_weights=body.discard_weights, save_metadata=body.save_metadata, add_recipe=body.add_merge_recipe,
        copy_metadata=body.copy_metadata_fields, metadata_json=body.metadata_json, config_source=body.config_source,
        overwrite=body.overwrite, presets=jobs.user_presets(),
        names={label: info.model_name for label, info in models.items() if info is not None})


def merge_checkpoints(body: MergeCheckpointsRequest) -> MergeCheckpointsResponse:
    try:
        saved = jobs.submit_merge(build_request(body))
    except MergeError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    except MergeInterrupted:
        raise HTTPException(status_code=409, detail="The merge was interrupted; no file was written") from None
    return MergeCheckpointsResponse(info=saved.info, filename=saved.filename, title=saved.title, sha256=saved.sha256)


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")
    router.add_api_route("/merge-checkpoints", merge_checkpoints, methods=["POST"],
                         response_model=MergeCheckpointsResponse)
    return router
