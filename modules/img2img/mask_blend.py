"""The inpainting latent blend (generation.md §7.4 step 6): every denoiser prediction, and the final
latent once more, keeps the init latent where `mask` is 1 (timestep samplers: the model input, see
into_model_input). Always-on scripts may replace each blend
through on_mask_blend (extensions.md §5.3; soft inpainting does)."""
import torch


class LatentBlend:
    def __init__(self, p, init_latent: torch.Tensor, mask: torch.Tensor, nmask: torch.Tensor):
        self.p = p
        self.init_latent, self.mask, self.nmask = init_latent, mask, nmask

    def __call__(self, current: torch.Tensor, denoiser=None, sigma=None) -> torch.Tensor:
        """`denoiser` None = the final blend after sampling."""
        blended = current * self.nmask + self.init_latent * self.mask
        runner = getattr(self.p, "scripts", None)
        if runner is not None:
            blended = runner.blend_latent(self.p, current, self.init_latent, self.mask, self.nmask, blended,
                                          denoiser=denoiser, sigma=sigma)
        return blended

    def into_model_input(self, x: torch.Tensor, denoiser, sigma: torch.Tensor) -> torch.Tensor:
        """Timestep samplers blend before the model call, in their own (DDPM) space, as A1111's
        CompVis-style samplers do: there x_ddpm = x·√ᾱ = x/√(σ²+1), and the kept area gets z0 itself."""
        scale = ((sigma ** 2 + 1) ** 0.5).reshape(-1, 1, 1, 1)
        return self(x / scale, denoiser, sigma) * scale
