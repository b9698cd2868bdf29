"""The Extensions tab (offline-first): installed extensions with enable checkboxes, version and
path, "Apply and restart UI"; install from a local folder or .zip; the online index and install from
URL say so when the machine is offline."""
import datetime
import html

import gradio as gr

from modules import extensions, scripts
from modules.extension_loading import manage

DEFAULT_INDEX_URL = "https://raw.githubusercontent.com/AUTOMATIC1111/stable-diffusion-webui-extensions/master/index.json"


def _installed_table() -> str:
    rows = []
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        date = datetime.datetime.fromtimestamp(ext.commit_date).strftime("%Y-%m-%d %H:%M") if ext.commit_date else ""
        version = html.escape(ext.version or "(not a git repository)")
        remote = html.escape(ext.remote or "")
        rows.append(f"<tr><td>{html.escape(ext.name)}{' (built-in)' if ext.is_builtin else ''}</td>"
                    f"<td>{'enabled' if ext.enabled else 'disabled'}</td><td>{version}</td>"
                    f"<td>{html.escape(ext.branch or '')}</td><td>{date}</td><td>{remote}</td>"
                    f"<td><code>{html.escape(ext.path)}</code></td></tr>")
    if not rows:
        return "<p>No extensions are installed. Put them into the <code>extensions</code> folder, or install one below.</p>"
    errors_html = "".join(f"<p class='error'>{html.escape(m)}</p>" for m in scripts.load_errors)
    return ("<table id='extensions_table'><thead><tr><th>Extension</th><th>State</th><th>Version</th><th>Branch</th>"
            "<th>Date</th><th>URL</th><th>Path</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            + errors_html)


def _message(text: str, error: bool = False) -> str:
    body = html.escape(text).replace("\n", "<br>")
    return f"<div class='{'error' if error else 'extension-message'}'>{body}</div>"


def _apply(enabled, disable_all):
    try:
        manage.save_enabled(list(enabled or []), disable_all)
    except manage.ExtensionError as e:
        return _message(str(e), error=True)
    manage.restart_program()
    return _message("Saved. Restarting the program; reload the page in a few seconds.")


def _install_local(path, upload, name):
    source = upload or path
    if not source:
        return _message("Give the path of a folder or .zip, or upload a .zip", error=True), gr.skip(), gr.skip()
    try:
        report = manage.install_from_path(source, name or None)
    except (manage.ExtensionError, OSError) as e:
        return _message(str(e), error=True), gr.skip(), gr.skip()
    names = [e.name for e in extensions.extensions]
    return _message(report), _installed_table(), gr.CheckboxGroup(choices=names)


def _install_url(url, branch, name):
    try:
        return _message(manage.install_from_url(url or "", branch or "", name or ""))
    except manage.ExtensionError as e:
        return _message(str(e), error=True)


def _load_index(url):
    try:
        items = manage.load_index(url)
    except manage.ExtensionError as e:
        return _message(str(e), error=True)
    rows = "".join(f"<tr><td>{html.escape(str(i.get('name', '')))}</td><td>{html.escape(str(i.get('url', '')))}</td>"
                   f"<td>{html.escape(str(i.get('description', '')))}</td></tr>" for i in items)
    return f"<table><tr><th>Extension</th><th>URL</th><th>Description</th></tr>{rows}</table>"


def create_tab() -> None:
    private = {"api_visibility": "private"}
    with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
        with gr.Tabs(elem_id="tabs_extensions"):
            with gr.Tab("Installed", id="installed"):
                names = [e.name for e in extensions.extensions]
                with gr.Row():
                    apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply")
                    disable_all = gr.Radio(["none", "extra", "all"], value="none", label="Disable all extensions",
                                           elem_id="extensions_disable_all")
                enabled = gr.CheckboxGroup(names, value=[e.name for e in extensions.extensions if e.enabled],
                                           label="Enabled extensions", elem_id="extensions_enabled")
                table = gr.HTML(_installed_table(), elem_id="extensions_installed_html")
                apply_result = gr.HTML(elem_id="extensions_apply_result")
                apply.click(_apply, inputs=[enabled, disable_all], outputs=[apply_result], **private)
            with gr.Tab("Install from folder or zip", id="install_local"):
                path = gr.Textbox(label="Path to a folder or a .zip on this machine", elem_id="extensions_local_path")
                upload = gr.File(label="or upload a .zip", file_types=[".zip"], type="filepath",
                                 elem_id="extensions_zip_upload")
                local_name = gr.Textbox(label="Folder name (optional)", elem_id="extensions_local_name")
                install_local = gr.Button("Install", variant="primary", elem_id="extensions_install_local")
                local_result = gr.HTML(elem_id="extensions_local_result")
                install_local.click(_install_local, inputs=[path, upload, local_name],
                                    outputs=[local_result, table, enabled], **private)
            with gr.Tab("Available", id="available"):
                index_url = gr.Textbox(DEFAULT_INDEX_URL, label="Extension index URL", elem_id="extensions_index_url")
                load = gr.Button("Load from:", elem_id="extensions_load_index")
                index_html = gr.HTML(elem_id="extensions_index_html")
                load.click(_load_index, inputs=[index_url], outputs=[index_html], **private)
            with gr.Tab("Install from URL", id="install_url"):
                url = gr.Textbox(label="URL for extension's git repository", elem_id="extensions_install_url")
                branch = gr.Textbox(label="Specific branch name (optional)", elem_id="extensions_install_branch")
                url_name = gr.Textbox(label="Local directory name (optional)", elem_id="extensions_install_dirname")
                install_url = gr.Button("Install", variant="primary", elem_id="extensions_install_button")
                url_result = gr.HTML(elem_id="extensions_install_result")
                install_url.click(_install_url, inputs=[url, branch, url_name], outputs=[url_result], **private)


def collect_extension_tabs() -> list:
    """on_ui_tabs: (Blocks, title, elem_id) from every extension; built before the main Blocks, as
    in A1111, so each is a Blocks of its own that is rendered inside a tab."""
    from modules import errors, script_callbacks
    tabs = []
    for item in script_callbacks.ui_tabs_callback():
        try:
            component, title, elem_id = item[:3]
        except (TypeError, ValueError):
            errors.report(f"on_ui_tabs returned {item!r}; expected (component, title, elem_id)")
            continue
        tabs.append((component, title, elem_id))
    return tabs


def render_extension_tabs(tabs: list) -> None:
    """Inside the main gr.Tabs: one tab per extension tab."""
    from modules import errors
    for component, title, elem_id in tabs:
        try:
            with gr.Tab(title, id=elem_id, elem_id=f"tab_{elem_id}"):
                component.render()
        except Exception:  # noqa: BLE001 - one extension's tab must not take the UI down
            errors.report(f"Error adding the extension tab {title}", exc_info=True)
