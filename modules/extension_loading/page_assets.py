"""Extensions' javascript/*.js|*.mjs and style.css, added to the page after the core ones
(extensions.md §1), and user.css of the data folder last."""
import html
import os

from modules import errors, extensions, shared


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as e:
        errors.report(f"Cannot read {path}: {e}")
        return None


def extension_css() -> str:
    parts = []
    for ext in extensions.active():
        text = _read(os.path.join(ext.path, "style.css")) if os.path.isfile(os.path.join(ext.path, "style.css")) else None
        if text:
            parts.append(f"/* {ext.name} */\n{text}")
    user_css = os.path.join(shared.paths.data, "user.css")
    if os.path.isfile(user_css):
        parts.append(_read(user_css) or "")
    return "\n".join(parts)


def extension_head() -> str:
    """<script> tags with every active extension's JS, in extension order."""
    tags = []
    for ext in extensions.active():
        for path in ext.list_files("javascript", ".js") + ext.list_files("javascript", ".mjs"):
            text = _read(path)
            if text is None:
                continue
            kind = ' type="module"' if path.endswith(".mjs") else ""
            # a literal </script> inside the file would end the tag early
            body = text.replace("</script", "<\\/script")
            tags.append(f'<script{kind} data-extension="{html.escape(ext.name)}" '
                        f'data-file="{html.escape(os.path.basename(path))}">\n{body}\n</script>')
    from modules import localization
    tags.append(localization.head_tags())  # the chosen UI translation (setting `localization`)
    return "\n".join(tags)
