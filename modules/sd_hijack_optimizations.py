"""A1111's cross-attention optimisation interface (extensions register theirs with
on_list_optimizers). The program itself always uses PyTorch's scaled-dot-product attention."""


class SdOptimization:
    name: str | None = None
    label: str | None = None
    cmd_opt: str | None = None
    priority: int = 0

    def title(self) -> str:
        return self.name if self.label is None else f"{self.name} - {self.label}"

    def is_available(self) -> bool:
        return True

    def apply(self) -> None:
        pass

    def undo(self) -> None:
        pass


class SdOptimizationSdp(SdOptimization):
    """Our built-in: diffusers' attention already runs on torch SDPA, so apply/undo change nothing."""
    name = "sdp"
    label = "scaled dot product"
    cmd_opt = "opt_sdp_attention"
    priority = 80

    def title(self) -> str:
        return "SDP"  # the setting's value for it (generation.md §17)


# A1111's own entries we do not ship (generation.md §17: kept, validated, ignored with a warning);
# a saved config or an API client may still name them. "sdp - scaled dot product" is our SDP.
A1111_SDP_TITLE = "sdp - scaled dot product"
A1111_UNSHIPPED_TITLES = (
    "xformers", "sdp-no-mem - scaled dot product without memory efficient attention",
    "sub-quadratic", "V1 - original v1", "InvokeAI", "Doggettx",
)


def list_optimizers(res: list) -> None:
    """The program's own entry (registered like an extension's, as A1111 does)."""
    res.append(SdOptimizationSdp())
