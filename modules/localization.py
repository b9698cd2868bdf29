"""UI translations (A1111's localizations/*.json): a JSON object mapping English UI text to the
translation, found in the data folder's localizations/ (or --localizations-dir) and in every
active extension's localizations/. The chosen one (setting `localization`) goes into the page as
`window.localization`, which localization.js applies to the page's text."""
import json
import os

from modules import errors, extensions, shared

localizations: dict[str, str] = {}  # name (file stem) → path
JS_FILE = os.path.join(os.path.dirname(__file__), "localization.js")


def _scan(folder: str) -> dict[str, str]:
    found = {}
    if folder and os.path.isdir(folder):
        for file in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(file)
            if ext.lower() == ".json":
                found[stem] = os.path.join(folder, file)
    return found


def list_localizations(dirname: str | None = None) -> dict[str, str]:
    """Refresh `localizations`: the program's folder first, then extensions (later ones win, as A1111)."""
    localizations.clear()
    folder = dirname or getattr(shared.cmd_opts, "localizations_dir", None) or \
        os.path.join(shared.paths.data, "localizations")
    localizations.update(_scan(folder))
    for ext in extensions.active():
        localizations.update(_scan(os.path.join(ext.path, "localizations")))
    return localizations


def localization_data(name: str) -> dict:
    """The translation table `name`; {} for "None" or a missing/unreadable file (reported)."""
    path = localizations.get(name)
    if not name or name == "None":
        return {}
    if path is None:
        errors.report(f"Localization {name!r} not found; put {name}.json in "
                      f"{os.path.join(shared.paths.data, 'localizations')} or an extension's localizations/")
        return {}
    try:
        with open(path, encoding="utf8") as file:
            data = json.load(file)
    except (OSError, ValueError) as e:
        errors.report(f"Cannot read localization file {path}: {e}")
        return {}
    if not isinstance(data, dict):
        errors.report(f"Localization file {path} must hold a JSON object of English text to translation")
        return {}
    return {str(k): str(v) for k, v in data.items()}


def localization_js(name: str) -> str:
    """`window.localization = {...}` for the page (A1111's name)."""
    return f"window.localization = {json.dumps(localization_data(name), ensure_ascii=False)}"


def head_tags() -> str:
    """The <script> tags for the page head: the chosen table, then the code applying it."""
    list_localizations()
    table = localization_js(getattr(shared.opts, "localization", "None") or "None").replace("</", "<\\/")
    with open(JS_FILE, encoding="utf8") as file:
        code = file.read()
    return f"<script>{table}</script>\n<script>\n{code}\n</script>"
