"""img2img and inpainting: preparing init images and masks, and finishing the results
(generation.md §7). `modules.processing.StableDiffusionProcessingImg2Img` drives these modules."""
