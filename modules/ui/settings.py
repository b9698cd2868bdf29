"""The Settings tab, built from the settings registry (ui.md §9): every registered setting that has
a section gets a control on its page, so settings that components and extensions register show up
without changes here. Search and page switching run in the browser; Apply checks the whole batch,
applies it, writes config.json and lists what changed."""
import gradio as gr

from modules import shared
from modules.options import OptionError
from modules.settings import apply, presentation
from modules.ui import settings_choices, settings_components  # noqa: F401 (choices register on import)

# Page switching and search only toggle visibility, so they run in the page (no server round trip).
CSS = """
#settings_nav { max-width: 12em; }
#settings_nav .settings-category { font-weight: bold; text-decoration: underline; margin-top: 0.6em; }
#settings .settings-page { display: none !important; }
#settings:not([data-page]) .settings-page.settings-first { display: flex !important; }
#settings .settings-page.settings-current { display: flex !important; }
#settings[data-all] .settings-page:not(.settings-fixed) { display: flex !important; }
#settings[data-searching] .settings-page.settings-fixed { display: none !important; }
"""

SHOW_PAGE_JS = """() => {
  const root = document.getElementById('settings');
  delete root.dataset.all; delete root.dataset.searching;
  root.dataset.page = '%s';
  root.querySelectorAll('.settings-page').forEach(p => p.classList.toggle('settings-current', p.id === '%s'));
}"""

SHOW_ALL_JS = """() => {
  const root = document.getElementById('settings');
  root.dataset.all = '1';
}"""

# 250 ms after typing: show the rows whose text (label, hint) or key contains the query, on all pages.
SEARCH_JS = """(query) => {
  clearTimeout(window.settingsSearchTimer);
  window.settingsSearchTimer = setTimeout(() => {
    const root = document.getElementById('settings');
    const text = (query || '').trim().toLowerCase();
    root.querySelectorAll('.settings-row').forEach(row => {
      const hay = (row.textContent + ' ' + row.id.replace(/^setting_/, '')).toLowerCase();
      row.style.display = !text || hay.includes(text) ? '' : 'none';
    });
    if (text) { root.dataset.all = '1'; root.dataset.searching = '1'; }
    else { delete root.dataset.all; delete root.dataset.searching; }
  }, 250);
  return query;
}"""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def settings_pages(opts, exclude=()) -> list[dict]:
    """Pages in A1111's order: categories in registration order, pages inside by label (byte
    order), then uncategorized pages; each page lists its keys in registration order."""
    pages: dict[tuple, dict] = {}
    for key, info in opts.data_labels.items():
        if not info.section or info.section[0] in (None, "None") or key in exclude:
            continue
        section = tuple(info.section[:2])
        page = pages.get(section)
        if page is None:
            page = pages[section] = {"id": section[0], "label": section[1], "keys": [],
                                     "category": presentation.category_of(info)}
        page["keys"].append(key)
    used = set()
    for page in pages.values():  # registration order: "User interface" keeps settings_ui
        dom = f"settings_{page['id']}"
        if dom in used:  # Live previews and User interface share the section id "ui"
            dom = f"{dom}_{_slug(page['label'])}"
        used.add(dom)
        page["dom_id"] = dom
    ordered = []
    for category in presentation.CATEGORIES:
        ordered += sorted((p for p in pages.values() if p["category"] == category), key=lambda p: p["label"])
    ordered += sorted((p for p in pages.values() if p["category"] not in presentation.CATEGORIES),
                      key=lambda p: p["label"])
    return ordered


def apply_from_ui(keys: list[str], values: tuple) -> str:
    try:
        result = apply.apply_settings(shared.opts, dict(zip(keys, values)), shared.paths.settings_file)
    except OptionError as e:
        return f"<span class='error'>Settings not applied: {e}</span>"
    except Exception as e:  # noqa: BLE001 - the checkpoint's load error, shown instead of a bare 'Error'
        return f"<span class='error'>Settings not applied: {type(e).__name__}: {e}</span>"
    return result.message()


def current_values(keys: list[str]) -> list:
    return [getattr(shared.opts, key) for key in keys]


def _nav_button(label: str, dom_id: str, elem_id: str):
    button = gr.Button(label, size="sm", elem_id=elem_id, elem_classes=["settings-page-button"])
    button.click(None, js=SHOW_PAGE_JS % (dom_id, dom_id))


def create_tab(demo: gr.Blocks) -> dict:
    """Build the tab (call inside gr.Tabs); returns its parts for the fixed pages' wiring."""
    from modules.ui import settings_pages as fixed_pages
    quick = set(shared.opts.quicksettings_list)
    pages = settings_pages(shared.opts, exclude=quick)
    keys, components = [], []
    with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
        with gr.Row():
            submit = gr.Button("Apply settings", variant="primary", elem_id="settings_submit", scale=4)
            reload_ui = gr.Button("Reload UI", variant="primary", elem_id="settings_restart_gradio", scale=1)
        result = gr.HTML(elem_id="settings_result")
        with gr.Row(elem_id="settings", equal_height=False):
            with gr.Column(elem_id="settings_nav", scale=0, min_width=160):
                search = gr.Textbox(show_label=False, placeholder="Search...", elem_id="settings_search",
                                    max_lines=1)
                category = None
                for page in pages:
                    heading = presentation.CATEGORIES.get(page["category"], presentation.UNCATEGORIZED)
                    if heading != category:
                        category = heading
                        gr.HTML(f"<div class='settings-category'>{heading}</div>")
                    _nav_button(page["label"], page["dom_id"], f"settings_tab_{page['dom_id'][9:]}")
                gr.HTML("<div class='settings-category'>Other</div>")
                for label, dom_id in fixed_pages.PAGES:
                    _nav_button(label, dom_id, f"settings_tab_{dom_id[9:]}")
                show_all = gr.Button("Show all pages", size="sm", elem_id="settings_show_all_pages")
            with gr.Column(elem_id="settings_pages", scale=6):
                for index, page in enumerate(pages):
                    classes = ["settings-page"] + (["settings-first"] if index == 0 else [])
                    with gr.Column(elem_id=page["dom_id"], elem_classes=classes):
                        gr.Markdown(f"### {page['label']}")
                        for key in page["keys"]:
                            info = shared.opts.data_labels[key]
                            keys.append(key)
                            components.append(settings_components.create(
                                key, info, getattr(shared.opts, key), elem_classes=["settings-row"]))
                fixed = fixed_pages.create(demo, result)
    search.change(None, inputs=[search], js=SEARCH_JS)  # change also fires when the box is emptied
    show_all.click(None, js=SHOW_ALL_JS)
    submit.click(lambda *values: apply_from_ui(keys, values), inputs=components, outputs=[result],
                 api_visibility="private")
    reload_ui.click(fixed_pages.reload_ui, outputs=[result], js=fixed_pages.RELOAD_JS, api_visibility="private")
    # the controls were built with the values of start-up: show the saved ones on every page load
    demo.load(lambda: current_values(keys), outputs=components, api_visibility="private")
    return {"keys": keys, "components": components, "result": result, **fixed}
