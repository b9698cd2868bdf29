"""What the Settings tab's dynamic dropdowns offer and their refresh buttons do, read when the tab is
built so they show what is installed now."""
from modules import sd_hijack, sd_models, sd_samplers, sd_unet, sd_vae, shared
from modules.postprocessing import runner as postprocessing_runner
from modules.settings import presentation
from modules.upscaling import core as upscaling_core


def _upscalers():
    names = upscaling_core.upscaler_names()
    return names if "None" in names else ["None", *names]


presentation.CHOICE_PROVIDERS.update({
    "checkpoints": sd_models.checkpoint_titles,
    "vaes": lambda: ["Automatic", "None", *sd_vae.vae_dict],
    "upscalers": _upscalers,
    "samplers": lambda: [s.name for s in sd_samplers.all_samplers],
    "setting_keys": lambda: list(shared.opts.data_labels),
    "postprocessing_steps": postprocessing_runner.step_names,
    "attention_optimizations": sd_hijack.choices,
    "unets": sd_unet.choices,
    "infotext_keys": lambda: sorted({info.infotext for info in shared.opts.data_labels.values() if info.infotext}),
})
presentation.REFRESH_PROVIDERS.update({
    "sd_model_checkpoint": lambda: shared.job_queue.run(sd_models.list_models, name="refresh-checkpoints"),
    "sd_vae": lambda: shared.job_queue.run(sd_vae.refresh_vae_list, name="refresh-vae"),
    "sd_unet": lambda: shared.job_queue.run(sd_unet.list_unets, name="refresh-unets"),
    "cross_attention_optimization": lambda: shared.job_queue.run(sd_hijack.list_optimizers,
                                                                 name="refresh-optimizers"),
})
