"""A1111's `modules.sd_hijack` names extensions use: the list of cross-attention optimisations,
built from the program's own entry and every on_list_optimizers callback (highest priority first),
and the one the `cross_attention_optimization` setting applies.

The applied optimisation is process state, like the loaded checkpoint: a job re-applies what its
(possibly overridden) setting names, so a per-request override lasts for that job only. A raising
apply() never leaves the model half-patched: the previous optimisation is put back and the error,
naming the extension, is raised (setting change: refused) or reported (model load, job)."""
from modules import errors, script_callbacks, sd_hijack_optimizations, shared

optimizers: list = []
current_optimizer = None
_sources: dict[int, str] = {}  # id(optimizer) -> the callback that offered it (names the extension)
_applied_for = None            # the model current_optimizer was applied with
_failed: set = set()           # (title, id(model)) whose apply raised: reported once, not retried
_warned: set = set()           # setting values already warned about (not shipped here)


class OptimizationError(RuntimeError):
    """An optimisation's apply() raised; the message names it and its extension."""


def list_optimizers() -> list:
    found = []
    sd_hijack_optimizations.list_optimizers(found)
    _sources.clear()
    for source, optimizer in script_callbacks.collect_with_sources("list_optimizers"):
        try:
            available = optimizer.is_available()
        except Exception:  # noqa: BLE001 - an extension's check must not stop start-up
            errors.report(f"Error checking optimizer {getattr(optimizer, 'name', optimizer)!r} "
                          f"from {source}", exc_info=True)
            continue
        if available:
            found.append(optimizer)
            _sources[id(optimizer)] = source
    optimizers[:] = sorted(found, key=lambda o: o.priority, reverse=True)  # stable: ties keep order
    _failed.clear()
    return optimizers


def optimizer_titles() -> list[str]:
    return [optimizer.title() for optimizer in optimizers]


def choices() -> list[str]:
    """The setting's dropdown, as A1111 lists it."""
    return ["Automatic", *optimizer_titles(), "None"]


def is_known_choice(value) -> bool:
    return value in choices() or value in (sd_hijack_optimizations.A1111_SDP_TITLE,
                                           *sd_hijack_optimizations.A1111_UNSHIPPED_TITLES)


def source_of(optimizer) -> str:
    return _sources.get(id(optimizer), "the program")


def describe(optimizer) -> str:
    return f"'{optimizer.title()}' (from {source_of(optimizer)})"


def _builtin():
    return next((o for o in optimizers if isinstance(o, sd_hijack_optimizations.SdOptimizationSdp)), None)


def find_optimizer(selection: str):
    """What a setting value means: Automatic → the one a command-line flag names (cmd_opt), else
    the highest priority (with --disable-opt-split-attention: our built-in); a title → that one;
    anything else (None, A1111 kernels we do not ship) → our built-in, with a warning
    (generation.md §17)."""
    if selection == "Automatic" and getattr(shared.cmd_opts, "disable_opt_split_attention", False):
        return _builtin()  # A1111: no optimisation; plain attention is ours
    if selection == "Automatic":
        flagged = [o for o in optimizers if o.cmd_opt and getattr(shared.cmd_opts, o.cmd_opt, False)]
        return (flagged or optimizers or [None])[0]
    titled = next((o for o in optimizers if o.title() == selection), None)
    if titled is not None:
        return titled
    if selection != sd_hijack_optimizations.A1111_SDP_TITLE and selection not in _warned:
        _warned.add(selection)
        print(f"Warning: cross_attention_optimization '{selection}' is not available here; "
              f"PyTorch SDP attention is used")
    return _builtin()


def undo_optimizations() -> None:
    global current_optimizer
    if current_optimizer is not None:
        current_optimizer.undo()
    current_optimizer = None


def apply_optimizations(option: str | None = None, model=None) -> str:
    """Undo the applied optimisation and apply the one `option` (default: the setting) names;
    returns its name. On a raising apply() the previous one comes back and OptimizationError is
    raised. `model` is what it is applied with (default: the loaded one)."""
    global current_optimizer, _applied_for
    selection = option or shared.opts.cross_attention_optimization
    wanted = find_optimizer(selection)
    if model is None:
        model = shared.model_holder.sd_model if shared.model_holder is not None else None
    previous = current_optimizer
    undo_optimizations()
    if wanted is None:
        _applied_for = model
        return ""
    try:
        wanted.apply()
    except Exception as e:  # noqa: BLE001 - an extension's failure: reported with its name, never half-applied
        _undo_quietly(wanted)
        restored = _restore(previous, wanted)
        raise OptimizationError(f"Attention optimization {describe(wanted)} failed to apply: "
                                f"{type(e).__name__}: {e}; keeping "
                                f"{describe(restored) if restored else 'none'}") from e
    if wanted is not previous:
        print(f"Applied attention optimization: {wanted.name}")
    current_optimizer, _applied_for = wanted, model
    return wanted.name


def _undo_quietly(optimizer) -> None:
    try:
        optimizer.undo()
    except Exception:  # noqa: BLE001 - cleaning up after a failed apply; the apply error is the one raised
        errors.report(f"Undoing attention optimization {describe(optimizer)} after its failed apply also raised",
                      exc_info=True)


def _restore(previous, failed):
    """Apply `previous` again (or the built-in when there was none); returns what is applied."""
    global current_optimizer
    for candidate in (previous, _builtin()):
        if candidate is None or candidate is failed:
            continue
        try:
            candidate.apply()
        except Exception:  # noqa: BLE001 - reported; the built-in below is the last resort
            errors.report(f"Re-applying attention optimization {describe(candidate)} failed", exc_info=True)
            continue
        current_optimizer = candidate
        return candidate
    return None


def apply_for_job(model) -> None:
    """Make the applied optimisation the one this job's setting names, for this model. A failure
    is reported in the log (once per optimisation and model) and the previous one is kept."""
    wanted = find_optimizer(shared.opts.cross_attention_optimization)
    if wanted is current_optimizer and _applied_for is model:
        return
    key = (wanted.title() if wanted else None, id(model))
    if key in _failed:
        return
    try:
        apply_optimizations(model=model)
    except OptimizationError as e:
        _failed.add(key)
        errors.report(str(e), exc_info=True)


def setting_changed() -> None:
    """onchange of cross_attention_optimization: apply it now; a failure refuses the change."""
    from modules.options import OptionError
    _failed.clear()
    try:
        shared.job_queue.run(apply_optimizations, name="apply-attention-optimization")  # touches the model
    except OptimizationError as e:
        errors.report(str(e), exc_info=True)
        raise OptionError(str(e)) from e
