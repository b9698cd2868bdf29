"""The ControlNet section of the settings (controlnet.md §6), with the extension's keys and defaults.

Plain data, so that the settings registry can read it without importing the ControlNet code."""

SECTION = ("control_net", "ControlNet")

# key -> (default, label)
SETTINGS = {
    "control_net_detectedmap_dir": ("detected_maps", "Directory for detected maps auto saving"),
    "control_net_models_path": ("", "Extra path to scan for ControlNet models (e.g. training output directory)"),
    "control_net_modules_path": ("", "Path to directory containing annotator model directories (requires restart)"),
    "control_net_unit_count": (3, "Multi-ControlNet: ControlNet unit number (requires restart)"),
    "control_net_model_cache_size": (2, "Model cache size (requires restart)"),
    "control_net_inpaint_blur_sigma": (7, "ControlNet inpainting Gaussian blur sigma"),
    "control_net_no_detectmap": (False, "Do not append detectmap to output"),
    "control_net_detectmap_autosaving": (False, "Allow detectmap auto saving"),
    "control_net_allow_script_control": (False, "Allow other script to control this extension"),
    "control_net_sync_field_args": (True, "Paste ControlNet parameters in infotext"),
    "controlnet_show_batch_images_in_ui": (False, "Show batch images in gradio gallery output"),
    "controlnet_increment_seed_during_batch": (False, "Increment seed after each controlnet batch iteration"),
    "controlnet_disable_openpose_edit": (False, "Disable openpose edit"),
    "controlnet_disable_photopea_edit": (False, "Disable photopea edit"),
    "controlnet_photopea_warning": (True, "Photopea popup warning"),
    "controlnet_ignore_noninpaint_mask": (False, "Ignore mask on ControlNet input image if control type is not inpaint"),
    "controlnet_clip_detector_on_cpu": (False, "Load CLIP preprocessor model on CPU"),
    "controlnet_control_type_dropdown": (False, "Use dropdown for selecting control type"),
}
