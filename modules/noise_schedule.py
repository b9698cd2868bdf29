"""The discrete DDPM noise table of SD1/SD2/SDXL and timestep <-> sigma conversion (spec §0.1, §0.2)."""

from __future__ import annotations

import torch

# ᾱ_999 after the zero-terminal-SNR rescale: a tiny positive value so that σ_max stays finite.
ZERO_TERMINAL_SNR_LAST_ALPHA_BAR = 4.8973451890853435e-08


def scaled_linear_alphas_cumprod(n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """ᾱ_t for the "scaled linear" betas: computed in float64, returned as float32 (as the models store it)."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def downcast_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Setting `use_downcasted_alpha_bar`: ᾱ rounded through float16 (old A1111 behaviour)."""
    return alphas_cumprod.to(torch.float16).to(torch.float32)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Setting `sd_noise_schedule = Zero Terminal SNR` (§0.1): shift and scale √ᾱ so that its last value is 0."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    rescaled = root ** 2
    rescaled[-1] = ZERO_TERMINAL_SNR_LAST_ALPHA_BAR
    return rescaled


MEMO_MAX_NUMEL = 64       # batch rows of one model call
MEMO_MAX_ENTRIES = 10_000  # distinct σ rows remembered per schedule


class DiscreteSchedule:
    """Sigma table of a discrete-time model, with fractional timestep interpolation in log-sigma."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.alphas_cumprod = alphas_cumprod
        # float32 throughout, like the reference, so sigmas and t(σ) agree to the last bit as far as possible
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()
        self._log_sigmas_on = {}  # device -> table: no copy to the GPU on every model call
        self._t_memo = {}  # (shape, σ values) -> t(σ), for small CPU inputs: jobs revisit the same sigmas

    def _log_table(self, device) -> torch.Tensor:
        table = self._log_sigmas_on.get(device)
        if table is None:
            table = self._log_sigmas_on[device] = self.log_sigmas.to(device)
        return table

    @classmethod
    def scaled_linear(cls) -> "DiscreteSchedule":
        return cls(scaled_linear_alphas_cumprod())

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def __len__(self) -> int:
        return self.sigmas.shape[0]

    def sigma_to_t(self, sigma) -> torch.Tensor:
        """Continuous timestep for σ (any shape): linear interpolation of ln σ between table entries.

        A small CPU input is looked up in a memo first (same values, same result: only the ~20 small
        tensor ops are saved). Reading a GPU tensor's values would wait for its queued work, so GPU
        inputs are always computed."""
        sigma = torch.as_tensor(sigma, dtype=self.log_sigmas.dtype)
        if sigma.device.type != "cpu" or sigma.numel() > MEMO_MAX_NUMEL:
            return self._sigma_to_t(sigma)
        key = (tuple(sigma.shape), tuple(sigma.reshape(-1).tolist()))
        t = self._t_memo.get(key)
        if t is None:
            if len(self._t_memo) >= MEMO_MAX_ENTRIES:
                self._t_memo.clear()
            t = self._t_memo[key] = self._sigma_to_t(sigma)
        return t.clone()  # callers own their tensor

    def _sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigmas = self._log_table(sigma.device)
        log_sigma = sigma.log()
        # lo = last index with ln σ_lo <= ln σ, clamped so that lo+1 is still in the table
        lo = torch.searchsorted(log_sigmas, log_sigma.reshape(-1).contiguous(), right=True) - 1
        lo = lo.clamp(0, log_sigmas.shape[0] - 2).reshape(log_sigma.shape)
        low, high = log_sigmas[lo], log_sigmas[lo + 1]
        w = ((low - log_sigma) / (low - high)).clamp(0, 1)
        return (1 - w) * lo + w * (lo + 1)

    def t_to_sigma(self, t) -> torch.Tensor:
        """σ for a fractional timestep (any shape): exp of the interpolated ln σ."""
        t = torch.as_tensor(t, dtype=self.log_sigmas.dtype)
        log_sigmas = self._log_table(t.device)
        lo, hi = t.floor().long(), t.ceil().long()
        f = t - lo
        return ((1 - f) * log_sigmas[lo] + f * log_sigmas[hi]).exp()

    def get_sigmas(self, n: int) -> torch.Tensor:
        """The model's own schedule ("Uniform"): n sigmas at evenly spaced fractional t from 999 to 0, then 0."""
        t = torch.linspace(len(self) - 1, 0, n, dtype=self.log_sigmas.dtype)
        return torch.cat([self.t_to_sigma(t), t.new_zeros([1])])


def schedule_settings_keys(opts) -> dict:
    """Infotext keys of the settings that change the noise table (infotext.md §3.2)."""
    keys = {}
    if opts.use_downcasted_alpha_bar:
        keys["Downcast alphas_cumprod"] = True
    if opts.sd_noise_schedule == "Zero Terminal SNR":
        keys["Noise Schedule"] = "Zero Terminal SNR"
    return keys


def apply_schedule_settings(alphas_cumprod: torch.Tensor, opts) -> torch.Tensor:
    """The model's ᾱ table with use_downcasted_alpha_bar, then sd_noise_schedule, applied (§0.1)."""
    if opts.use_downcasted_alpha_bar:
        alphas_cumprod = downcast_alphas_cumprod(alphas_cumprod)
    if opts.sd_noise_schedule == "Zero Terminal SNR":
        alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
    return alphas_cumprod
