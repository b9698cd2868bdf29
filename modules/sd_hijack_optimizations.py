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
    name = "sdp"
    label = "scaled dot product"
    cmd_opt = "opt_sdp_attention"
    priority = 80


def list_optimizers(res: list) -> None:
    """The program's own entry (registered like an extension's, as A1111 does)."""
    res.append(SdOptimizationSdp())
