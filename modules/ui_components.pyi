"""Gradio building blocks under the names A1111 extensions import (extensions.md §7).

Each is a thin subclass of a Gradio 6 component that keeps its parent's block name, so the browser
renders it as the parent."""
import gradio as gr


class _SameBlock:
    """Render as the Gradio parent class (the front end knows components by block name)."""

    @classmethod
    def get_block_name(cls):
        for base in cls.__mro__[1:]:
            if base.__module__.startswith("gradio") and hasattr(base, "get_block_name"):
                return base.get_block_name()
        return super().get_block_name()


class FormComponent:
    def get_expected_parent(self):
        return gr.components.Form

from gradio.events import Dependency

class ToolButton(_SameBlock, FormComponent, gr.Button):
    """A small square button with an icon beside a field."""

    def __init__(self, *args, **kwargs):
        classes = kwargs.pop("elem_classes", [])
        kwargs.setdefault("min_width", 40)
        kwargs.setdefault("scale", 0)
        super().__init__(*args, elem_classes=["tool", *classes], **kwargs)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class ResizeHandleRow(_SameBlock, gr.Row):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormRow(_SameBlock, FormComponent, gr.Row):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormColumn(_SameBlock, FormComponent, gr.Column):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormGroup(_SameBlock, FormComponent, gr.Group):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormHTML(_SameBlock, FormComponent, gr.HTML):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormColorPicker(_SameBlock, FormComponent, gr.ColorPicker):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class DropdownMulti(_SameBlock, FormComponent, gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(multiselect=True, **kwargs)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class DropdownEditable(_SameBlock, FormComponent, gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(allow_custom_value=True, **kwargs)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class InputAccordion(_SameBlock, gr.Checkbox):
    """An accordion whose open state is a checkbox value (used as `with InputAccordion(False,
    label=...) as enabled:`; `enabled` is the value a script receives)."""

    global_index = 0

    def __init__(self, value, **kwargs):
        InputAccordion.global_index += 1
        self.accordion_id = kwargs.get("elem_id") or f"input-accordion-{InputAccordion.global_index}"
        label = kwargs.pop("label", "Accordion")
        accordion_kwargs = {"open": bool(value), "elem_id": f"{self.accordion_id}-accordion",
                            "elem_classes": ["input-accordion"]}
        super().__init__(value, label=label, visible=False, elem_id=f"{self.accordion_id}-checkbox",
                         **{k: v for k, v in kwargs.items() if k not in ("elem_id", "visible")})
        self.accordion = gr.Accordion(label, **accordion_kwargs)
        self.accordion.expand(lambda: True, outputs=[self], queue=False, api_visibility="private")
        self.accordion.collapse(lambda: False, outputs=[self], queue=False, api_visibility="private")

    def extra(self):
        """A column at the right of the accordion's title (A1111 puts small controls there)."""
        return gr.Column(elem_classes=["input-accordion-extra"], min_width=0, scale=0)

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.accordion.__exit__(exc_type, exc_val, exc_tb)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component