"""Applying a batch of setting changes from the Settings tab or the quicksettings bar (ui.md §9.2).

The whole batch is checked before anything is set; the checkpoint is switched on the job queue;
each other change runs its on-change hook (a failing hook restores the old value); then config.json
is written once."""
from dataclasses import dataclass, field

from modules.options import OptionError, Options
from modules.settings import presentation


@dataclass
class ApplyResult:
    changed: list[str] = field(default_factory=list)
    reload_ui: list[str] = field(default_factory=list)   # changed keys that need Reload UI
    restart: list[str] = field(default_factory=list)     # changed keys that need a restart

    def message(self) -> str:
        if not self.changed:
            return "Nothing changed."
        text = f"{len(self.changed)} settings changed: {', '.join(self.changed)}."
        if self.reload_ui:
            text += f" Reload UI to see the effect of: {', '.join(self.reload_ui)}."
        if self.restart:
            text += f" Restart the program for: {', '.join(self.restart)}."
        return text


def frozen_message(opts: Options, key: str) -> str:
    flag = opts.frozen_by.get(key, "a command-line flag")
    return f"Setting '{key}' is frozen by {flag}"


def changed_values(opts: Options, values: dict) -> dict:
    """The entries whose value differs from the stored one, converted to the settings' types;
    a value of the wrong type or for a frozen setting fails the whole batch."""
    changed = {}
    for key, value in values.items():
        info = opts.data_labels.get(key)
        if info is None:
            raise OptionError(f"Unknown setting '{key}'")
        if _same(getattr(opts, key), value):
            continue
        if key in opts.frozen_keys:
            raise OptionError(frozen_message(opts, key))
        changed[key] = value
    converted = opts.validate(changed)
    return {key: value for key, value in converted.items() if not _same(getattr(opts, key), value)}


def _same(old, new) -> bool:
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return list(old) == list(new)
    if isinstance(old, bool) or isinstance(new, bool):
        return old is new or old == new and type(old) is type(new)
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return float(old) == float(new)
    return old == new or (old in (None, "") and new in (None, ""))


def apply_settings(opts: Options, values: dict, settings_file: str) -> ApplyResult:
    """Check, set and save; raises OptionError (nothing applied) or the checkpoint's load error."""
    from modules import sd_models, sd_vae, shared
    changed = changed_values(opts, values)
    if "sd_vae" in changed and not sd_vae.is_known_choice(changed["sd_vae"]):
        raise OptionError(f"VAE '{changed['sd_vae']}' not found; choose Automatic, None or a file of models/VAE")
    checkpoint = changed.get("sd_model_checkpoint")
    if checkpoint:
        info = sd_models.get_closet_checkpoint_match(checkpoint)
        if info is None:
            raise OptionError(f"Checkpoint '{checkpoint}' not found")
        model = shared.job_queue.run(lambda: shared.model_holder.switch_to(info), name="load-checkpoint")
        changed["sd_model_checkpoint"] = model.sd_checkpoint_info.title
    result = ApplyResult()
    for key, value in changed.items():
        if opts.set(key, value):
            result.changed.append(key)
            info = opts.data_labels[key]
            if presentation.needs_reload_ui(info):
                result.reload_ui.append(key)
            if presentation.needs_restart(info):
                result.restart.append(key)
    if result.changed:
        opts.save(settings_file)
    return result
