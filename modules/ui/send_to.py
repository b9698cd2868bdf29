""""Send to img2img" / "Send to inpaint" (ui.md §11.1): from the txt2img and img2img galleries
(the selected image, prompts, steps, seed, size) and from PNG Info (the image and all parameters)."""
import gradio as gr

from modules.ui.img2img import mode_updates

from modules.ui.gallery_values import open_image

# what a gallery sends along with its image (size only to img2img)
GALLERY_FIELDS = ("prompt", "negative_prompt", "steps", "seed")
MODE_OF_TARGET = {"img2img": (0, "img2img", "img2img"), "inpaint": (2, "inpaint", "inpaint")}


def _selected(gallery_value, selected_index):
    if not gallery_value:
        return None, 0
    index = selected_index if isinstance(selected_index, int) and 0 <= selected_index < len(gallery_value) else 0
    return open_image(gallery_value[index]).copy(), index


def wire_gallery(source: dict, img2img_tab: dict, tabs: gr.Tabs, with_parameters: bool) -> None:
    """The source tab's send buttons -> the img2img tab's image of that mode (+ parameters)."""
    for target, button in source["send_buttons"].items():
        mode, source_key, tab_id = MODE_OF_TARGET[target]
        names = [*GALLERY_FIELDS, *(("width", "height") if target == "img2img" else ())] if with_parameters else []
        controls = [img2img_tab["controls"][name] for name in names]

        def send(gallery_value, selected_index, infotexts, names=names, mode=mode, tab_id=tab_id):
            image, index = _selected(gallery_value, selected_index)
            if image is None:
                return [gr.skip()] * (len(names) + 6)
            text = infotexts[index] if infotexts and index < len(infotexts) else ""
            values = img2img_tab["paste_some"](text, names) if names else []
            return [image, *values, *mode_updates(mode), gr.Tabs(selected=tab_id), gr.Tabs(selected="img2img")]

        button.click(send, inputs=[source["gallery"], source["selected_index"], source["infotexts"]],
                     outputs=[img2img_tab["sources"][source_key if target == "img2img" else "inpaint"], *controls,
                              *img2img_tab["mode_outputs"], img2img_tab["mode_tabs"], tabs],
                     show_progress="hidden", api_visibility="private")


def wire_png_info(pnginfo: dict, img2img_tab: dict, tabs: gr.Tabs) -> None:
    controls = list(img2img_tab["controls"].values())
    for target in ("img2img", "inpaint"):
        mode, _key, tab_id = MODE_OF_TARGET[target]

        def send(image, text, mode=mode, tab_id=tab_id):
            return [image if image is not None else gr.skip(), *img2img_tab["paste"](text), *mode_updates(mode),
                    gr.Tabs(selected=tab_id), gr.Tabs(selected="img2img")]

        pnginfo["send_buttons"][target].click(
            send, inputs=[pnginfo["image"], pnginfo["generation_info"]],
            outputs=[img2img_tab["sources"]["img2img" if target == "img2img" else "inpaint"], *controls,
                     *img2img_tab["mode_outputs"], img2img_tab["mode_tabs"], tabs],
            show_progress="hidden", api_visibility="private")


def wire_extras(extras_tab: dict, img2img_tab: dict, tabs: gr.Tabs) -> None:
    """The Extras gallery's Send to img2img / inpaint / extras: the selected image only (an Extras
    result has no generation parameters to send)."""
    buttons = extras_tab["send_buttons"]
    for target in ("img2img", "inpaint"):
        mode, source_key, tab_id = MODE_OF_TARGET[target]

        def send(gallery_value, selected_index, mode=mode, tab_id=tab_id):
            image, _ = _selected(gallery_value, selected_index)
            if image is None:
                return [gr.skip()] * 6
            return [image, *mode_updates(mode), gr.Tabs(selected=tab_id), gr.Tabs(selected="img2img")]

        buttons[target].click(send, inputs=[extras_tab["gallery"], extras_tab["selected_index"]],
                              outputs=[img2img_tab["sources"][source_key], *img2img_tab["mode_outputs"],
                                       img2img_tab["mode_tabs"], tabs],
                              show_progress="hidden", api_visibility="private")

    def to_extras(gallery_value, selected_index):
        image, _ = _selected(gallery_value, selected_index)
        if image is None:
            return [gr.skip()] * 4
        return [image, 0, gr.Tabs(selected="single_image"), gr.Tabs(selected="extras")]

    buttons["extras"].click(to_extras, inputs=[extras_tab["gallery"], extras_tab["selected_index"]],
                            outputs=[extras_tab["image"], extras_tab["tab_index"], extras_tab["mode_tabs"], tabs],
                            show_progress="hidden", api_visibility="private")
