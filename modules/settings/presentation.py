"""Labels, components and ranges of the built-in settings (generation.md §17), and the categories
that group the Settings tab's pages (ui.md §9.1).

A component is named by a plain string ("slider", "radio", ...) so that this module, which the
settings registry imports, does not pull in Gradio; the Settings tab turns names into components
and also accepts the Gradio classes that extensions pass (A1111's OptionInfo.component)."""
import html

from modules.options import OptionError, OptionInfo, Options

# Category id -> heading, in A1111's order; pages of a section without a category go under
# "Uncategorized" (ui.md §9.1).
CATEGORIES = {
    "saving": "Saving images",
    "sd": "Stable Diffusion",
    "ui": "User Interface",
    "system": "System",
    "postprocessing": "Postprocessing",
    "training": "Training",
}
UNCATEGORIZED = "Uncategorized"

SECTION_CATEGORY = {
    "saving-images": "saving", "saving-paths": "saving", "saving-to-dirs": "saving",
    "sd": "sd", "sdxl": "sd", "sd3": "sd", "vae": "sd", "img2img": "sd", "optimizations": "sd",
    "compatibility": "sd", "sampler-params": "sd", "extra_networks": "sd",
    "ui_prompt_editing": "ui", "ui_gallery": "ui", "ui_alternatives": "ui", "ui": "ui",
    "infotext": "ui", "settings_in_ui": "ui",
    "system": "system", "API": "system", "profiler": "system", "callbacks": "system",
    "upscaling": "postprocessing", "face-restoration": "postprocessing", "postprocessing": "postprocessing",
    "training": "training",
}

# Settings that take effect only after Reload UI (ui.md §9.2).
NEEDS_RELOAD_UI = {
    "notification_audio", "show_warnings", "show_gradio_deprecation_warnings", "enable_quantization",
    "img2img_editor_height", "img2img_sketch_default_brush_color", "img2img_inpaint_mask_brush_color",
    "img2img_inpaint_sketch_default_brush_color", "extra_networks_card_order_field",
    "extra_networks_card_order", "extra_networks_tree_view_style",
    "extra_networks_tree_view_default_enabled", "extra_networks_tree_view_default_width",
    "ui_extra_networks_tab_reorder", "sd_webui_modal_lightbox_icon_opacity",
    "sd_webui_modal_lightbox_toolbar_opacity", "gallery_height", "compact_prompt_box",
    "samplers_in_dropdown", "dimensions_and_batch_together", "hires_fix_show_sampler",
    "hires_fix_show_prompts", "txt2img_settings_accordion", "img2img_settings_accordion",
    "localization", "quicksettings_list", "ui_tab_order", "hidden_tabs", "ui_reorder_list",
    "gradio_theme", "hide_samplers", "extra_options_txt2img", "extra_options_img2img",
    "extra_options_cols", "extra_options_accordion",
    # not in A1111's list, but its sections are built when the scripts load, so it acts only then
    "postprocessing_enable_in_main_ui",
}
# "(requires restart)": the prioritized_callbacks_* lists, made per callback category at start
# (callback_priority_option), since callbacks are put in order once, when they first run.
CALLBACKS_SECTION = ("callbacks", "Callbacks")
CALLBACK_PRIORITY_PREFIX = "prioritized_callbacks_"


# -- dynamic choices: named here, provided by the UI floor (modules/ui/settings_choices.py), which
# may import the model modules; this module is imported by shared_options and must not.
CHOICE_PROVIDERS: dict = {}  # name -> () -> list of choices
REFRESH_PROVIDERS: dict = {}  # name -> () -> None


def _provided(name: str):
    return lambda: CHOICE_PROVIDERS[name]()


_checkpoints, _vaes, _upscalers, _samplers = (_provided(n) for n in ("checkpoints", "vaes", "upscalers", "samplers"))
_setting_keys, _infotext_keys = _provided("setting_keys"), _provided("infotext_keys")
_postprocessing_steps = _provided("postprocessing_steps")
_attention_optimizations, _unets = _provided("attention_optimizations"), _provided("unets")


def _tab_names():
    return ["txt2img", "img2img", "Extras", "PNG Info", "Checkpoint Merger", "Train"]


def slider(minimum, maximum, step):
    return ("slider", {"minimum": minimum, "maximum": maximum, "step": step})


def radio(*choices):
    return ("radio", {"choices": list(choices)})


def dropdown(choices):
    return ("dropdown", {"choices": choices})


def multiselect(choices):
    return ("multiselect", {"choices": choices})


def checkboxes(*choices):
    return ("checkboxgroup", {"choices": list(choices)})


COLOR = ("color", {})
NUMBER = ("number", {})
INTEGER = ("number", {"precision": 0})

UI_ORDER_ITEMS = ["prompt", "image", "inpaint", "sampler", "accordions", "checkboxes", "dimensions",
                  "cfg", "denoising", "seed", "batch", "override_settings", "scripts"]
REALESRGAN_MODELS = ["R-ESRGAN General 4xV3", "R-ESRGAN General WDN 4xV3", "R-ESRGAN AnimeVideo",
                     "R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "R-ESRGAN 2x+"]
CANVAS_FUNCTIONS = ["Zoom", "Adjust brush size", "Hotkey enlarge brush", "Hotkey shrink brush",
                    "Moving canvas", "Fullscreen", "Reset Zoom", "Overlap"]

# key -> (A1111's label, component or None for the type's default: checkbox / number / textbox)
LABELS = {
    # saving-images
    "samples_save": ("Always save all generated images", None),
    "samples_format": ("File format for images", None),
    "samples_filename_pattern": ("Images filename pattern", None),
    "save_images_add_number": ("Add number to filename when saving", None),
    "save_images_replace_action": ("Saving the image to an existing file", radio("Replace", "Add number suffix")),
    "grid_save": ("Always save all generated image grids", None),
    "grid_format": ("File format for grids", None),
    "grid_extended_filename": ("Add extended info (seed, prompt) to filename when saving grid", None),
    "grid_only_if_multiple": ("Do not save grids consisting of one picture", None),
    "grid_prevent_empty_spots": ("Prevent empty spots in grid (when set to autodetect)", None),
    "grid_zip_filename_pattern": ("Archive filename pattern", None),
    "n_rows": ("Grid row count; use -1 for autodetect and 0 for it to be same as batch size", slider(-1, 16, 1)),
    "font": ("Font for image grids that have text", None),
    "grid_text_active_color": ("Text color for image grids", COLOR),
    "grid_text_inactive_color": ("Inactive text color for image grids", COLOR),
    "grid_background_color": ("Background color for image grids", COLOR),
    "save_images_before_face_restoration": ("Save a copy of image before doing face restoration.", None),
    "save_images_before_highres_fix": ("Save a copy of image before applying highres fix.", None),
    "save_images_before_color_correction": ("Save a copy of image before applying color correction to img2img results", None),
    "save_mask": ("For inpainting, save a copy of the greyscale mask", None),
    "save_mask_composite": ("For inpainting, save a masked composite", None),
    "jpeg_quality": ("Quality for saved jpeg and avif images", slider(1, 100, 1)),
    "webp_lossless": ("Use lossless compression for webp images", None),
    "export_for_4chan": ("Save copy of large images as JPG", None),
    "img_downscale_threshold": ("File size limit for the above option, MB", NUMBER),
    "target_side_length": ("Width/height limit for the above option, in pixels", INTEGER),
    "img_max_size_mp": ("Maximum image size", INTEGER),
    "use_original_name_batch": ("Use original name for output filename during batch process in extras tab", None),
    "use_upscaler_name_as_suffix": ("Use upscaler name as filename suffix in the extras tab", None),
    "save_selected_only": ("When using 'Save' button, only save a single selected image", None),
    "save_write_log_csv": ("Write log.csv when saving images using 'Save' button", None),
    "save_init_img": ("Save init images when using img2img", None),
    "temp_dir": ("Directory for temporary images; leave empty for default", None),
    "clean_temp_dir_at_start": ("Cleanup non-default temporary directory when starting webui", None),
    "save_incomplete_images": ("Save incomplete images", None),
    "notification_audio": ("Play notification sound after image generation", None),
    "notification_volume": ("Notification sound volume", slider(0, 100, 1)),
    # saving-paths
    "outdir_samples": ("Output directory for images; if empty, defaults to three directories below", None),
    "outdir_txt2img_samples": ("Output directory for txt2img images", None),
    "outdir_img2img_samples": ("Output directory for img2img images", None),
    "outdir_extras_samples": ("Output directory for images from extras tab", None),
    "outdir_grids": ("Output directory for grids; if empty, defaults to two directories below", None),
    "outdir_txt2img_grids": ("Output directory for txt2img grids", None),
    "outdir_img2img_grids": ("Output directory for img2img grids", None),
    "outdir_save": ("Directory for saving images using the Save button", None),
    "outdir_init_images": ("Directory for saving init images when using img2img", None),
    # saving-to-dirs
    "save_to_dirs": ("Save images to a subdirectory", None),
    "grid_save_to_dirs": ("Save grids to a subdirectory", None),
    "use_save_to_dirs_for_ui": ("When using \"Save\" button, save images to a subdirectory", None),
    "directories_filename_pattern": ("Directory name pattern", None),
    "directories_max_prompt_words": ("Max prompt words for [prompt_words] pattern", slider(1, 20, 1)),
    # upscaling
    "ESRGAN_tile": ("Tile size for ESRGAN upscalers.", slider(0, 512, 16)),
    "ESRGAN_tile_overlap": ("Tile overlap for ESRGAN upscalers.", slider(0, 48, 1)),
    "realesrgan_enabled_models": ("Select which Real-ESRGAN models to show in the web UI.", multiselect(REALESRGAN_MODELS)),
    "dat_enabled_models": ("Select which DAT models to show in the web UI.", multiselect(["DAT x2", "DAT x3", "DAT x4"])),
    "DAT_tile": ("Tile size for DAT upscalers.", slider(0, 512, 16)),
    "DAT_tile_overlap": ("Tile overlap for DAT upscalers.", slider(0, 48, 1)),
    "upscaler_for_img2img": ("Upscaler for img2img", dropdown(_upscalers)),
    "set_scale_by_when_changing_upscaler": ("Automatically set the Scale by factor based on the name of the selected Upscaler.", None),
    "SCUNET_tile": ("Tile size for SCUNET upscalers.", slider(0, 512, 16)),
    "SCUNET_tile_overlap": ("Tile overlap for SCUNET upscalers.", slider(0, 64, 1)),
    "SWIN_tile": ("Tile size for all SwinIR.", slider(16, 512, 16)),
    "SWIN_tile_overlap": ("Tile overlap, in pixels for SwinIR. Low values = visible seam.", slider(0, 48, 1)),
    "SWIN_torch_compile": ("Use torch.compile to accelerate SwinIR.", None),
    "ldsr_steps": ("LDSR processing steps. Lower = faster", slider(1, 200, 1)),
    "ldsr_cached": ("Cache LDSR model in memory", None),
    # face-restoration
    "face_restoration": ("Restore faces", None),
    "face_restoration_model": ("Face restoration model", radio("CodeFormer", "GFPGAN")),
    "code_former_weight": ("CodeFormer weight", slider(0, 1, 0.001)),
    "face_restoration_unload": ("Move face restoration model from VRAM into RAM after processing", None),
    # system
    "auto_launch_browser": ("Automatically open webui in browser on startup", radio("Disable", "Local", "Remote")),
    "enable_console_prompts": ("Print prompts to console when generating with txt2img and img2img.", None),
    "show_warnings": ("Show warnings in console.", None),
    "show_gradio_deprecation_warnings": ("Show gradio deprecation warnings in console.", None),
    "memmon_poll_rate": ("VRAM usage polls per second during generation.", slider(0, 40, 1)),
    "samples_log_stdout": ("Always print all generation info to standard output", None),
    "multiple_tqdm": ("Add a second progress bar to the console that shows progress for an entire job.", None),
    "enable_upscale_progressbar": ("Show a progress bar in the console for tiled upscaling.", None),
    "print_hypernet_extra": ("Print extra hypernetwork information to console.", None),
    "list_hidden_files": ("Load models/files in hidden directories", None),
    "disable_mmap_load_safetensors": ("Disable memmapping for loading .safetensors files.", None),
    "hide_ldm_prints": ("Prevent Stability-AI's ldm/sgm modules from printing noise to console.", None),
    "dump_stacks_on_signal": ("Print stack traces before exiting the program with ctrl+c.", None),
    # profiler
    "profiling_enable": ("Enable profiling", None),
    "profiling_activities": ("Activities", checkboxes("CPU", "CUDA")),
    "profiling_record_shapes": ("Record shapes", None),
    "profiling_profile_memory": ("Profile memory", None),
    "profiling_with_stack": ("Include python stack", None),
    "profiling_filename": ("Profile filename", None),
    # API
    "api_enable_requests": ("Allow http:// and https:// URLs for input images in API", None),
    "api_forbid_local_requests": ("Forbid URLs to local resources", None),
    "api_useragent": ("User agent for requests", None),
    # training
    "unload_models_when_training": ("Move VAE and CLIP to RAM when training if possible. Saves VRAM.", None),
    "pin_memory": ("Turn on pin_memory for DataLoader. Makes training slightly faster but can increase memory usage.", None),
    "save_optimizer_state": ("Saves Optimizer state as separate *.optim file. Training of embedding or HN can be resumed with the matching optim file.", None),
    "save_training_settings_to_txt": ("Save textual inversion and hypernet settings to a text file whenever training starts.", None),
    "dataset_filename_word_regex": ("Filename word regex", None),
    "dataset_filename_join_string": ("Filename join string", None),
    "training_image_repeats_per_epoch": ("Number of repeats for a single input image per epoch; used only for displaying epoch number", INTEGER),
    "training_write_csv_every": ("Save an csv containing the loss to log directory every N steps, 0 to disable", INTEGER),
    "training_xattention_optimizations": ("Use cross attention optimizations while training", None),
    "training_enable_tensorboard": ("Enable tensorboard logging.", None),
    "training_tensorboard_save_images": ("Save generated images within tensorboard.", None),
    "training_tensorboard_flush_every": ("How often, in seconds, to flush the pending tensorboard events and summaries to disk.", INTEGER),
    # sd
    "sd_model_checkpoint": ("Stable Diffusion Checkpoint", dropdown(_checkpoints)),
    "sd_checkpoints_limit": ("Maximum number of checkpoints loaded at the same time", slider(1, 10, 1)),
    "sd_checkpoints_keep_in_cpu": ("Only keep one model on device", None),
    "sd_checkpoint_cache": ("Checkpoints to cache in RAM", slider(0, 10, 1)),
    "sd_unet": ("SD Unet", dropdown(_unets)),
    "enable_quantization": ("Enable quantization in K samplers for sharper and cleaner results. This may change existing seeds", None),
    "emphasis": ("Emphasis mode", radio("None", "Ignore", "Original", "No norm")),
    "enable_batch_seeds": ("Make K-diffusion samplers produce same images in a batch as when making a single image", None),
    "comma_padding_backtrack": ("Prompt word wrap length limit", slider(0, 74, 1)),
    "sdxl_clip_l_skip": ("Clip skip SDXL", None),
    "CLIP_stop_at_last_layers": ("Clip skip", slider(1, 12, 1)),
    "upcast_attn": ("Upcast cross attention layer to float32", None),
    "randn_source": ("Random number generator source.", radio("GPU", "CPU", "NV")),
    "tiling": ("Tiling", None),
    "hires_fix_refiner_pass": ("Hires fix: which pass to enable refiner for", radio("first pass", "second pass", "both passes")),
    "enable_prompt_comments": ("Enable comments", None),
    # sdxl, sd3
    "sdxl_crop_top": ("crop top coordinate", INTEGER),
    "sdxl_crop_left": ("crop left coordinate", INTEGER),
    "sdxl_refiner_low_aesthetic_score": ("SDXL low aesthetic score", NUMBER),
    "sdxl_refiner_high_aesthetic_score": ("SDXL high aesthetic score", NUMBER),
    "sd3_enable_t5": ("Enable T5", None),
    # vae
    "sd_vae_checkpoint_cache": ("VAE Checkpoints to cache in RAM", slider(0, 10, 1)),
    "sd_vae": ("SD VAE", dropdown(_vaes)),
    "sd_vae_overrides_per_model_preferences": ("Selected VAE overrides per-model preferences", None),
    "auto_vae_precision_bfloat16": ("Automatically convert VAE to bfloat16", None),
    "auto_vae_precision": ("Automatically revert VAE to 32-bit floats", None),
    "sd_vae_encode_method": ("VAE type for encode", radio("Full", "TAESD")),
    "sd_vae_decode_method": ("VAE type for decode", radio("Full", "TAESD")),
    # img2img
    "inpainting_mask_weight": ("Inpainting conditioning mask strength", slider(0, 1, 0.01)),
    "initial_noise_multiplier": ("Noise multiplier for img2img", slider(0, 1.5, 0.001)),
    "img2img_extra_noise": ("Extra noise multiplier for img2img and hires fix", slider(0, 1, 0.01)),
    "img2img_color_correction": ("Apply color correction to img2img results to match original colors.", None),
    "img2img_fix_steps": ("With img2img, do exactly the amount of steps the slider specifies.", None),
    "img2img_background_color": ("With img2img, fill transparent parts of the input image with this color.", COLOR),
    "img2img_editor_height": ("Height of the image editor", slider(80, 1600, 1)),
    "img2img_sketch_default_brush_color": ("Sketch initial brush color", COLOR),
    "img2img_inpaint_mask_brush_color": ("Inpaint mask brush color", COLOR),
    "img2img_inpaint_sketch_default_brush_color": ("Inpaint sketch initial brush color", COLOR),
    "return_mask": ("For inpainting, include the greyscale mask in results for web", None),
    "return_mask_composite": ("For inpainting, include masked composite in results for web", None),
    "img2img_batch_show_results_limit": ("Show the first N batch img2img results in UI", slider(-1, 1000, 1)),
    "overlay_inpaint": ("Overlay original for inpaint", None),
    # optimizations
    "cross_attention_optimization": ("Cross attention optimization", dropdown(_attention_optimizations)),
    "s_min_uncond": ("Negative Guidance minimum sigma", slider(0, 15, 0.01)),
    "s_min_uncond_all": ("Negative Guidance minimum sigma all steps", None),
    "token_merging_ratio": ("Token merging ratio", slider(0, 0.9, 0.1)),
    "token_merging_ratio_img2img": ("Token merging ratio for img2img", slider(0, 0.9, 0.1)),
    "token_merging_ratio_hr": ("Token merging ratio for high-res pass", slider(0, 0.9, 0.1)),
    "pad_cond_uncond": ("Pad prompt/negative prompt", None),
    "pad_cond_uncond_v0": ("Pad prompt/negative prompt (v0)", None),
    "persistent_cond_cache": ("Persistent cond cache", None),
    "batch_cond_uncond": ("Batch cond/uncond", None),
    "fp8_storage": ("FP8 weight", radio("Disable", "Enable for SDXL", "Enable")),
    "cache_fp16_weight": ("Cache FP16 weight for LoRA", None),
    # compatibility
    "auto_backcompat": ("Automatic backward compatibility", None),
    "use_old_emphasis_implementation": ("Use old emphasis implementation. Can be useful to reproduce old seeds.", None),
    "use_old_karras_scheduler_sigmas": ("Use old karras scheduler sigmas (0.1 to 10).", None),
    "no_dpmpp_sde_batch_determinism": ("Do not make DPM++ SDE deterministic across different batch sizes.", None),
    "use_old_hires_fix_width_height": ("For hires fix, use width/height sliders to set final resolution rather than first pass (disables Upscale by, Resize width/height to).", None),
    "hires_fix_use_firstpass_conds": ("For hires fix, calculate conds of second pass using extra networks of first pass.", None),
    "use_old_scheduling": ("Use old prompt editing timelines.", None),
    "use_downcasted_alpha_bar": ("Downcast model alphas_cumprod to fp16 before sampling. For reproducing old seeds.", None),
    "refiner_switch_by_sample_steps": ("Switch to refiner by sampling steps instead of model timesteps. Old behavior for refiner.", None),
    # interrogate
    "interrogate_keep_models_in_memory": ("Keep models in VRAM", None),
    "interrogate_return_ranks": ("Include ranks of model tags matches in results.", None),
    "interrogate_clip_num_beams": ("BLIP: num_beams", slider(1, 16, 1)),
    "interrogate_clip_min_length": ("BLIP: minimum description length", slider(1, 128, 1)),
    "interrogate_clip_max_length": ("BLIP: maximum description length", slider(1, 256, 1)),
    "interrogate_clip_dict_limit": ("CLIP: maximum number of lines in text file", INTEGER),
    "interrogate_clip_skip_categories": ("CLIP: skip inquire categories", multiselect([])),
    "interrogate_deepbooru_score_threshold": ("deepbooru: score threshold", slider(0, 1, 0.01)),
    "deepbooru_sort_alpha": ("deepbooru: sort tags alphabetically", None),
    "deepbooru_use_spaces": ("deepbooru: use spaces in tags", None),
    "deepbooru_escape": ("deepbooru: escape (\\) brackets", None),
    "deepbooru_filter_tags": ("deepbooru: filter out those tags", None),
    # extra_networks (the LoRA settings of the built-in extension join this page, as in A1111)
    "extra_networks_show_hidden_directories": ("Show hidden directories", None),
    "extra_networks_dir_button_function": ("Add a '/' to the beginning of directory buttons", None),
    "extra_networks_hidden_models": ("Show cards for models in hidden directories", radio("Always", "When searched", "Never")),
    "extra_networks_default_multiplier": ("Default multiplier for extra networks", slider(0, 2, 0.01)),
    "extra_networks_card_width": ("Card width for Extra Networks", INTEGER),
    "extra_networks_card_height": ("Card height for Extra Networks", INTEGER),
    "extra_networks_card_text_scale": ("Card text scale", slider(0, 2, 0.01)),
    "extra_networks_card_show_desc": ("Show description on card", None),
    "extra_networks_card_description_is_html": ("Treat card description as HTML", None),
    "extra_networks_card_order_field": ("Default order field for Extra Networks cards", dropdown(["Path", "Name", "Date Created", "Date Modified"])),
    "extra_networks_card_order": ("Default order for Extra Networks cards", dropdown(["Ascending", "Descending"])),
    "extra_networks_tree_view_style": ("Extra Networks directory view style", radio("Tree", "Dirs")),
    "extra_networks_tree_view_default_enabled": ("Show the Extra Networks directory view by default", None),
    "extra_networks_tree_view_default_width": ("Default width for the Extra Networks directory tree view", NUMBER),
    "extra_networks_add_text_separator": ("Extra networks separator", None),
    "ui_extra_networks_tab_reorder": ("Extra networks tab order", None),
    "textual_inversion_print_at_load": ("Print a list of Textual Inversion embeddings when loading model", None),
    "textual_inversion_add_hashes_to_infotext": ("Add Textual Inversion hashes to infotext", None),
    "sd_hypernetwork": ("Add hypernetwork to prompt", dropdown(["None"])),
    "sd_lora": ("Add network to prompt", dropdown(["None"])),
    "lora_preferred_name": ("When adding to prompt, refer to Lora by", radio("Alias from file", "Filename")),
    "lora_add_hashes_to_infotext": ("Add Lora hashes to infotext", None),
    "lora_bundled_ti_to_infotext": ("Add Lora name as TI hashes for bundled Textual Inversion", None),
    "lora_show_all": ("Always show all networks on the Lora page", None),
    "lora_hide_unknown_for_versions": ("Hide networks of unknown versions for model versions", checkboxes("SD1", "SD2", "SDXL")),
    "lora_in_memory_limit": ("Number of Lora networks to keep cached in memory", INTEGER),
    "lora_not_found_warning_console": ("Lora not found warning in console", None),
    "lora_not_found_gradio_warning": ("Lora not found warning popup in webui", None),
    "lora_functional": ("Lora/Networks: use old method that takes longer when you have multiple Loras active and produces same results as kohya-ss/sd-webui-additional-networks extension", None),
    # ui_prompt_editing
    "keyedit_precision_attention": ("Precision for (attention:1.1) when editing the prompt with Ctrl+up/down", slider(0.01, 0.2, 0.001)),
    "keyedit_precision_extra": ("Precision for <extra networks:0.9> when editing the prompt with Ctrl+up/down", slider(0.01, 0.2, 0.001)),
    "keyedit_delimiters": ("Word delimiters when editing the prompt with Ctrl+up/down", None),
    "keyedit_delimiters_whitespace": ("Ctrl+up/down whitespace delimiters", checkboxes("Tab", "Carriage Return", "Line Feed")),
    "keyedit_move": ("Alt+left/right moves prompt elements", None),
    "disable_token_counters": ("Disable prompt token counters", None),
    "include_styles_into_token_counters": ("Count tokens of enabled styles", None),
    # ui_gallery
    "return_grid": ("Show grid in gallery", None),
    "do_not_show_images": ("Do not show any images in gallery", None),
    "js_modal_lightbox": ("Full page image viewer: enable", None),
    "js_modal_lightbox_initially_zoomed": ("Full page image viewer: show images zoomed in by default", None),
    "js_modal_lightbox_gamepad": ("Full page image viewer: navigate with gamepad", None),
    "js_modal_lightbox_gamepad_repeat": ("Full page image viewer: gamepad repeat period", INTEGER),
    "sd_webui_modal_lightbox_icon_opacity": ("Full page image viewer: control icon unfocused opacity", slider(0, 1, 0.01)),
    "sd_webui_modal_lightbox_toolbar_opacity": ("Full page image viewer: tool bar opacity", slider(0, 1, 0.01)),
    "gallery_height": ("Gallery height", None),
    "open_dir_button_choice": ("What directory the [📂] button opens", radio("Output Root", "Subdirectory", "Subdirectory (even temp dir)")),
    # ui_alternatives
    "compact_prompt_box": ("Compact prompt layout", None),
    "samplers_in_dropdown": ("Use dropdown for sampler selection instead of radio group", None),
    "dimensions_and_batch_together": ("Show Width/Height and Batch sliders in same row", None),
    "sd_checkpoint_dropdown_use_short": ("Checkpoint dropdown: use filenames without paths", None),
    "hires_fix_show_sampler": ("Hires fix: show hires checkpoint and sampler selection", None),
    "hires_fix_show_prompts": ("Hires fix: show hires prompt and negative prompt", None),
    "txt2img_settings_accordion": ("Settings in txt2img hidden under Accordion", None),
    "img2img_settings_accordion": ("Settings in img2img hidden under Accordion", None),
    "interrupt_after_current": ("Don't Interrupt in the middle", None),
    # ui (User interface)
    "localization": ("Localization", dropdown(["None"])),
    "quicksettings_list": ("Quicksettings list", multiselect(_setting_keys)),
    "ui_tab_order": ("UI tab order", multiselect(_tab_names)),
    "hidden_tabs": ("Hidden UI tabs", multiselect(_tab_names)),
    "ui_reorder_list": ("UI item order for txt2img/img2img tabs", multiselect(UI_ORDER_ITEMS)),
    "gradio_theme": ("Gradio theme", dropdown(["Default"])),
    "gradio_themes_cache": ("Cache gradio themes locally", None),
    "show_progress_in_title": ("Show generation progress in window title.", None),
    "send_seed": ("Send seed when sending prompt or image to other interface", None),
    "send_size": ("Send size when sending prompt or image to another interface", None),
    "enable_reloading_ui_scripts": ("Reload UI scripts when using Reload UI option", None),
    # infotext
    "enable_pnginfo": ("Write infotext to metadata of the generated image", None),
    "save_txt": ("Create a text file with infotext next to every generated image", None),
    "add_model_name_to_info": ("Add model name to infotext", None),
    "add_model_hash_to_info": ("Add model hash to infotext", None),
    "add_vae_name_to_info": ("Add VAE name to infotext", None),
    "add_vae_hash_to_info": ("Add VAE hash to infotext", None),
    "add_user_name_to_info": ("Add user name to infotext when authenticated", None),
    "add_version_to_infotext": ("Add program version to infotext", None),
    "disable_weights_auto_swap": ("Disregard checkpoint information from pasted infotext", None),
    "infotext_skip_pasting": ("Disregard fields from pasted infotext", multiselect(_infotext_keys)),
    "infotext_styles": ("Infer styles from prompts of pasted infotext", radio("Ignore", "Apply", "Discard", "Apply if any")),
    # ui (Live previews)
    "show_progressbar": ("Show progressbar", None),
    "live_previews_enable": ("Show live previews of the created image", None),
    "live_previews_image_format": ("Live preview file format", radio("jpeg", "png", "webp")),
    "show_progress_grid": ("Show previews of all images generated in a batch as a grid", None),
    "show_progress_every_n_steps": ("Live preview display period", slider(-1, 32, 1)),
    "show_progress_type": ("Live preview method", radio("Full", "Approx NN", "Approx cheap", "TAESD")),
    "live_preview_allow_lowvram_full": ("Allow Full live preview method with lowvram/medvram", None),
    "live_preview_content": ("Live preview subject", radio("Combined", "Prompt", "Negative prompt")),
    "live_preview_refresh_period": ("Progressbar and preview update period", INTEGER),
    "live_preview_fast_interrupt": ("Return image with chosen live preview method on interrupt", None),
    "js_live_preview_in_modal_lightbox": ("Show Live preview in full page image viewer", None),
    "prevent_screen_sleep_during_generation": ("Prevent screen sleep during generation", None),
    # sampler-params
    "hide_samplers": ("Hide samplers in user interface", ("checkboxgroup", {"choices": _samplers})),
    "eta_ddim": ("Eta for DDIM", slider(0, 1, 0.01)),
    "eta_ancestral": ("Eta for k-diffusion samplers", slider(0, 1, 0.01)),
    "ddim_discretize": ("img2img DDIM discretize", radio("uniform", "quad")),
    "s_churn": ("sigma churn", slider(0, 100, 0.01)),
    "s_tmin": ("sigma tmin", slider(0, 10, 0.01)),
    "s_tmax": ("sigma tmax", slider(0, 999, 0.01)),
    "s_noise": ("sigma noise", slider(0, 1.1, 0.001)),
    "sigma_min": ("sigma min", NUMBER),
    "sigma_max": ("sigma max", NUMBER),
    "rho": ("rho", NUMBER),
    "eta_noise_seed_delta": ("Eta noise seed delta", INTEGER),
    "always_discard_next_to_last_sigma": ("Always discard next-to-last sigma", None),
    "sgm_noise_multiplier": ("SGM noise multiplier", None),
    "uni_pc_variant": ("UniPC variant", radio("bh1", "bh2", "vary_coeff")),
    "uni_pc_skip_type": ("UniPC skip type", radio("time_uniform", "time_quadratic", "logSNR")),
    "uni_pc_order": ("UniPC order", slider(1, 50, 1)),
    "uni_pc_lower_order_final": ("UniPC lower order final", None),
    "sd_noise_schedule": ("Noise schedule for sampling", radio("Default", "Zero Terminal SNR")),
    "skip_early_cond": ("Ignore negative prompt during early sampling", slider(0, 1, 0.01)),
    "beta_dist_alpha": ("Beta scheduler - alpha", slider(0.01, 1, 0.01)),
    "beta_dist_beta": ("Beta scheduler - beta", slider(0.01, 1, 0.01)),
    # postprocessing
    "postprocessing_enable_in_main_ui": ("Enable postprocessing operations in txt2img and img2img tabs", multiselect(_postprocessing_steps)),
    "postprocessing_disable_in_extras": ("Disable postprocessing operations in extras tab", multiselect(_postprocessing_steps)),
    "postprocessing_operation_order": ("Postprocessing operation order", multiselect(_postprocessing_steps)),
    "upscaling_max_images_in_cache": ("Maximum number of images in upscaling cache", slider(0, 10, 1)),
    "postprocessing_existing_caption_action": ("Action for existing captions", radio("Ignore", "Keep", "Prepend", "Append")),
    # hypertile (built-in extension, Uncategorized)
    "hypertile_enable_unet": ("Enable Hypertile U-Net", None),
    "hypertile_enable_unet_secondpass": ("Enable Hypertile U-Net for hires fix second pass", None),
    "hypertile_max_depth_unet": ("Hypertile U-Net max depth", slider(0, 3, 1)),
    "hypertile_max_tile_unet": ("Hypertile U-Net max tile size", slider(0, 512, 16)),
    "hypertile_swap_size_unet": ("Hypertile U-Net swap size", slider(0, 64, 1)),
    "hypertile_enable_vae": ("Enable Hypertile VAE", None),
    "hypertile_max_depth_vae": ("Hypertile VAE max depth", slider(0, 3, 1)),
    "hypertile_max_tile_vae": ("Hypertile VAE max tile size", slider(0, 512, 16)),
    "hypertile_swap_size_vae": ("Hypertile VAE swap size", slider(0, 64, 1)),
    # settings_in_ui (built-in extra options)
    "extra_options_txt2img": ("Settings for txt2img", multiselect(_setting_keys)),
    "extra_options_img2img": ("Settings for img2img", multiselect(_setting_keys)),
    "extra_options_cols": ("Number of columns for added settings", INTEGER),
    "extra_options_accordion": ("Place added settings into an accordion", None),
    # canvas_hotkey (built-in extension, Uncategorized)
    "canvas_hotkey_zoom": ("Zoom canvas", radio("Shift", "Ctrl", "Alt")),
    "canvas_hotkey_adjust": ("Adjust brush size", radio("Shift", "Ctrl", "Alt")),
    "canvas_hotkey_shrink_brush": ("Shrink the brush size", None),
    "canvas_hotkey_grow_brush": ("Enlarge the brush size", None),
    "canvas_hotkey_move": ("Moving the canvas", None),
    "canvas_hotkey_fullscreen": ("Fullscreen Mode, maximizes the picture so that it fits into the screen and stretches it to its full width", None),
    "canvas_hotkey_reset": ("Reset zoom and canvas position", None),
    "canvas_hotkey_overlap": ("Toggle overlap", None),
    "canvas_show_tooltip": ("Enable tooltip on the canvas", None),
    "canvas_auto_expand": ("Automatically expands an image that does not fit completely in the canvas area, similar to manually pressing the S and R buttons", None),
    "canvas_blur_prompt": ("Take the focus off the prompt when working with a canvas", None),
    "canvas_disabled_functions": ("Disable function that you don't use", checkboxes(*CANVAS_FUNCTIONS)),
}

# Sections the generated table lumps together, split into A1111's pages.
SECTION_OF = {}
for _key in ("sd_lora", "lora_preferred_name", "lora_add_hashes_to_infotext", "lora_bundled_ti_to_infotext",
             "lora_show_all", "lora_hide_unknown_for_versions", "lora_in_memory_limit",
             "lora_not_found_warning_console", "lora_not_found_gradio_warning", "lora_functional"):
    SECTION_OF[_key] = ("extra_networks", "Extra Networks")
for _key in ("SCUNET_tile", "SCUNET_tile_overlap", "SWIN_tile", "SWIN_tile_overlap", "SWIN_torch_compile",
             "ldsr_steps", "ldsr_cached"):
    SECTION_OF[_key] = ("upscaling", "Upscaling")
for _key in LABELS:
    if _key.startswith("hypertile_"):
        SECTION_OF[_key] = ("hypertile", "Hypertile")
    elif _key.startswith("canvas_"):
        SECTION_OF[_key] = ("canvas_hotkey", "Canvas Hotkeys")
    elif _key.startswith("extra_options_"):
        SECTION_OF[_key] = ("settings_in_ui", "Settings in UI")
for _key in ("localization", "quicksettings_list", "ui_tab_order", "hidden_tabs", "ui_reorder_list",
             "gradio_theme", "gradio_themes_cache", "show_progress_in_title", "send_seed", "send_size",
             "enable_reloading_ui_scripts"):
    SECTION_OF[_key] = ("ui", "User interface")
for _key in ("show_progressbar", "live_previews_enable", "live_previews_image_format", "show_progress_grid",
             "show_progress_every_n_steps", "show_progress_type", "live_preview_allow_lowvram_full",
             "live_preview_content", "live_preview_refresh_period", "live_preview_fast_interrupt",
             "js_live_preview_in_modal_lightbox", "prevent_screen_sleep_during_generation"):
    SECTION_OF[_key] = ("ui", "Live previews")

REFRESH = {key: (lambda key=key: REFRESH_PROVIDERS[key]()) for key in ("sd_model_checkpoint", "sd_vae", "sd_unet", "cross_attention_optimization")}


def describe_builtin_options(opts: Options) -> None:
    """Give the registered built-in settings A1111's labels, components, pages and badges; the
    meaning text of the table becomes the hint under each control."""
    for key, (label, component) in LABELS.items():
        info = opts.data_labels.get(key)
        if info is None:
            continue
        hint = info.label
        info.label = label
        if hint and hint != label:
            info.comment_after = f"<span class='info'>({hint})</span>" + info.comment_after
        if component is not None:
            info.component, info.component_args = component
        if key in SECTION_OF:
            info.section = SECTION_OF[key]
        if key in REFRESH:
            info.refresh = REFRESH[key]
        if key in NEEDS_RELOAD_UI:
            info.needs_reload_ui()
    for info in opts.data_labels.values():
        if info.section and info.category_id is None:
            info.category_id = SECTION_CATEGORY.get(info.section[0])


def _names_are_text(key: str):
    def check(value):
        wrong = [name for name in value if not isinstance(name, str)]
        if wrong:
            raise OptionError(f"Setting '{key}' cannot take the value {value!r}: expected a list of callback names")
    return check


def callback_priority_option(category: str, default_order: list[str]) -> tuple[str, OptionInfo]:
    """The Callbacks page's setting for one category (extensions.md §6.3): the callbacks it lists
    run first, in its order; the others follow in `default_order`."""
    key = CALLBACK_PRIORITY_PREFIX + category
    info = OptionInfo(default=[], label=f"{category} callback priority", component="multiselect",
                      component_args={"choices": list(default_order)}, section=CALLBACKS_SECTION,
                      category_id="system", validate=_names_are_text(key))
    info.html(f"<span class='info'>(default order: {html.escape(', '.join(default_order))})</span>")
    info.needs_restart()
    return key, info


def category_of(info) -> str | None:
    """The category of a setting's page: its own, else the one its section belongs to."""
    if info.category_id:
        return info.category_id
    return SECTION_CATEGORY.get(info.section[0]) if info.section else None


def needs_reload_ui(info) -> bool:
    return "(requires Reload UI)" in (info.comment_after or "")


def needs_restart(info) -> bool:
    return "(requires restart)" in (info.comment_after or "")
