"""Training routes (api.md §13, merge-train.md §7): A1111's create/train embedding and hypernetwork,
and ours POST /sdapi/v1/train/lora with kohya-ss's argument names. Every route runs its work as a
job on the shared queue and waits for it; bad input is 422 naming the field."""
from __future__ import annotations

import dataclasses
import typing

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, create_model

from modules import jobs, sd_models, shared
from modules.state import Interrupted
from modules.training.datasets import DatasetError
from modules.training.embedding import TrainEmbeddingArgs, TrainingError, create_embedding, train_embedding
from modules.training.hypernetwork import TrainHypernetworkArgs, create_hypernetwork, train_hypernetwork
from modules.training.learn_schedule import ScheduleError
from modules.training.lora import LoraTrainArgs, train_lora

_CLIENT_ERRORS = (TrainingError, ScheduleError, DatasetError, sd_models.CheckpointNotFound)

class CreateEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    num_vectors_per_token: int = Field(1, ge=1, le=75)
    overwrite_old: bool = False
    init_text: str = "*"


class CreateHypernetworkRequest(BaseModel):
    """A1111's body; ours: every field but name and enable_sizes has the Create tab's default."""
    model_config = ConfigDict(extra="forbid")
    name: str
    enable_sizes: list[int | str]
    overwrite_old: bool = False
    layer_structure: list[float] | str | None = "1, 2, 1"
    activation_func: str | None = "linear"
    weight_init: str | None = "Normal"
    add_layer_norm: bool = False
    use_dropout: bool = False
    dropout_structure: list[float] | str | None = "0, 0, 0"


def _request_model(name: str, dataclass_type, overrides: dict) -> type[BaseModel]:
    """A pydantic body with the dataclass's fields and defaults; unknown fields are refused."""
    hints = typing.get_type_hints(dataclass_type)
    spec = {}
    for f in dataclasses.fields(dataclass_type):
        if f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:  # `...` is pydantic's "required": a missing field is a 422, not a 500 from the dataclass
            default = ... if f.default is dataclasses.MISSING else f.default
        spec[f.name] = (overrides.get(f.name, hints[f.name]), default)
    return create_model(name, __config__=ConfigDict(extra="forbid"), id_task=(str | None, None), **spec)


# A1111 takes these two as text (schedules such as "0.005:100, 1e-3:1000"); a number is made text.
_TEXT_OR_NUMBER = ("learn_rate", "clip_grad_value")
TrainEmbeddingRequest = _request_model("TrainEmbeddingRequest", TrainEmbeddingArgs,
                                       {key: str | float for key in _TEXT_OR_NUMBER})
TrainHypernetworkRequest = _request_model("TrainHypernetworkRequest", TrainHypernetworkArgs,
                                          {key: str | float for key in _TEXT_OR_NUMBER})
TrainLoraRequest = _request_model("TrainLoraRequest", LoraTrainArgs, {})


def _run(fn, kind: str, task_id: str | None):
    try:
        return shared.job_queue.run(fn, name=kind, task_id=task_id or jobs.new_task_id(kind))
    except _CLIENT_ERRORS as e:
        raise HTTPException(422, str(e)) from None
    except sd_models.NoModelError as e:
        raise HTTPException(503, str(e)) from None


def _train_and_answer(req, args_type, train, what: str) -> dict:
    """train/embedding and train/hypernetwork: the job, and the answer in A1111's words for `what`."""
    values = req.model_dump(exclude={"id_task"})
    for key in _TEXT_OR_NUMBER:
        values[key] = str(values[key])
    args = args_type(**values)
    try:
        message, path = _run(lambda: train(args), f"train_{what}", req.id_task)
    except Interrupted:
        return {"info": f"train {what} interrupted before training started: filename: None error: Interrupted"}
    return {"info": f"train {what} complete: filename: {path} error: None", "message": message}


# Names become file names (<name>.pt, <name>.safetensors, <name>-state): most file systems take 255 bytes.
MAX_NAME_BYTES = 200


def _check_file_name(field: str, value: str | None) -> None:
    if value is not None and len(value.encode("utf8", "surrogatepass")) > MAX_NAME_BYTES:
        raise HTTPException(422, f"{field}: at most {MAX_NAME_BYTES} bytes, it becomes a file name")


def create_router() -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    @router.post("/create/embedding")
    def create_embedding_api(req: CreateEmbeddingRequest):
        _check_file_name("name", req.name)
        path = _run(lambda: create_embedding(req.name, req.num_vectors_per_token, req.overwrite_old, req.init_text),
                    "create_embedding", None)
        return {"info": f"create embedding filename: {path}"}

    @router.post("/create/hypernetwork")
    def create_hypernetwork_api(req: CreateHypernetworkRequest):
        path = _run(lambda: create_hypernetwork(**req.model_dump()), "create_hypernetwork", None)
        return {"info": f"create hypernetwork filename: {path}"}

    @router.post("/train/embedding")
    def train_embedding_api(req: TrainEmbeddingRequest):
        _check_file_name("embedding_name", req.embedding_name)
        return _train_and_answer(req, TrainEmbeddingArgs, train_embedding, "embedding")

    @router.post("/train/hypernetwork")
    def train_hypernetwork_api(req: TrainHypernetworkRequest):
        return _train_and_answer(req, TrainHypernetworkArgs, train_hypernetwork, "hypernetwork")

    @router.post("/train/lora")
    def train_lora_api(req: TrainLoraRequest):
        _check_file_name("output_name", req.output_name)
        args = LoraTrainArgs(**req.model_dump(exclude={"id_task"}))
        try:
            message, path = _run(lambda: train_lora(args), "train_lora", req.id_task)
        except Interrupted:
            return {"info": "train lora interrupted before training started", "filename": None}
        return {"info": message, "filename": path}

    return router
