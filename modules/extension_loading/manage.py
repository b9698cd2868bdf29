"""Managing installed extensions (extensions.md §3.1, offline-first): the access check, saving the
enabled list, installing from a local folder or .zip (then running its install.py), and the
network paths (index, install from URL) that say plainly when the machine is offline."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import zipfile

from modules import extensions, shared

REACH_TIMEOUT = 5  # seconds: an offline machine answers "offline" in this time, never hangs


class ExtensionError(RuntimeError):
    """A refusal or failure whose message is for the user."""


def check_access() -> None:
    from modules.cmd_args import is_exposed
    args = shared.cmd_opts
    if is_exposed(args) and not args.enable_insecure_extension_access:
        raise ExtensionError("Extension management is disabled because the server is exposed "
                             "(--listen, --share, --ngrok or --server-name); start it with "
                             "--enable-insecure-extension-access to allow it.")


def save_enabled(enabled_names: list[str], disable_all: str = "none") -> list[str]:
    """Store the disabled list (every installed extension not in `enabled_names`); returns it."""
    check_access()
    if disable_all not in ("none", "extra", "all"):
        raise ExtensionError(f"disable_all_extensions must be none, extra or all, got {disable_all!r}")
    disabled = [e.name for e in extensions.extensions if e.name not in enabled_names]
    shared.opts.set("disabled_extensions", disabled)
    shared.opts.set("disable_all_extensions", disable_all)
    shared.opts.save(shared.paths.settings_file)
    return disabled


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or not re.fullmatch(r"[\w.\- ]+", name) or name in (".", ".."):
        raise ExtensionError(f"'{name}' cannot be an extension folder name")
    if os.path.exists(os.path.join(extensions.extensions_dir(), name)):
        raise ExtensionError(f"Extension folder {name} already exists in {extensions.extensions_dir()}")
    return name


def _safe_extract(archive: zipfile.ZipFile, target: str) -> None:
    root = os.path.realpath(target)
    for member in archive.infolist():
        path = os.path.realpath(os.path.join(target, member.filename))
        if path != root and not path.startswith(root + os.sep):
            raise ExtensionError(f"The archive has a file outside its folder: {member.filename}")
    archive.extractall(target)


def _extension_root(folder: str) -> str:
    """An archive holding one folder (as GitHub's zips do) has the extension inside it."""
    entries = [e for e in os.listdir(folder) if not e.startswith(".") and e != "__MACOSX"]
    if len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        return os.path.join(folder, entries[0])
    return folder


def install_from_path(source: str, name: str | None = None) -> str:
    """Copy a folder, or unpack a .zip, into extensions/<name>, then run its install.py.
    Returns the report shown to the user."""
    check_access()
    source = os.path.abspath(os.path.expanduser(source.strip()))
    if not os.path.exists(source):
        raise ExtensionError(f"{source} does not exist")
    is_zip = os.path.isfile(source) and zipfile.is_zipfile(source)
    if not is_zip and not os.path.isdir(source):
        raise ExtensionError(f"{source} is neither a folder nor a .zip archive")
    default = os.path.basename(source.rstrip(os.sep))
    default = re.sub(r"\.zip$", "", default, flags=re.I)
    name = _check_name(name or re.sub(r"-(main|master)$", "", default))
    os.makedirs(extensions.extensions_dir(), exist_ok=True)
    target = os.path.join(extensions.extensions_dir(), name)
    with tempfile.TemporaryDirectory(dir=extensions.extensions_dir(), prefix=".installing-") as tmp:
        if is_zip:
            try:
                with zipfile.ZipFile(source) as archive:
                    _safe_extract(archive, tmp)
            except zipfile.BadZipFile as e:
                raise ExtensionError(f"{source} is not a readable .zip archive: {e}") from None
            shutil.move(_extension_root(tmp), target)
        else:
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    lines = [f"Installed {name} into {target}."]
    if os.path.isfile(os.path.join(target, "install.py")):
        from modules.extension_loading import installer
        ok, output = installer.run_install_script(name, target)
        lines.append(f"install.py {'finished' if ok else 'failed'}" + (f":\n{output}" if output else "."))
        if ok:
            data = installer._read_json(shared.paths.cache_file).get(installer.CACHE_KEY, {})
            data[name] = installer.content_hash(target)
            installer._write_cache(shared.paths.cache_file, installer.CACHE_KEY, data)
    lines.append("Restart the UI (Apply and restart) to load it.")
    extensions.list_extensions()
    return "\n".join(lines)


def reachable(url: str) -> str | None:
    """None when the URL's host accepts a connection within REACH_TIMEOUT, else the reason."""
    parts = urllib.parse.urlparse(url)
    host = parts.hostname
    if not host:
        return f"'{url}' is not a URL"
    port = parts.port or (443 if parts.scheme in ("https", "") else 80)
    result: list = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=REACH_TIMEOUT).close()
            result.append(None)
        except (OSError, RuntimeError) as e:  # RuntimeError: the tests' network guard
            result.append(f"{type(e).__name__}: {e}")
    thread = threading.Thread(target=attempt, daemon=True)  # name resolution has no timeout of its own
    thread.start()
    thread.join(REACH_TIMEOUT + 1)
    if not result:
        return f"no answer from {host} within {REACH_TIMEOUT} s"
    return result[0]


def offline_message(url: str, reason: str) -> str:
    return (f"Cannot reach {url}: this machine appears to be offline ({reason}). "
            f"Install extensions from a local folder or .zip instead.")


def load_index(url: str) -> list[dict]:
    """The online extension index (a JSON with an "extensions" list), when the network allows."""
    reason = reachable(url)
    if reason:
        raise ExtensionError(offline_message(url, reason))
    import json
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return json.loads(response.read().decode("utf8")).get("extensions", [])
    except (OSError, ValueError) as e:
        raise ExtensionError(f"Cannot read the extension index at {url}: {e}") from None


def _normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    url = re.sub(r"\.git$", "", url)
    parts = urllib.parse.urlparse(url)
    return parts._replace(netloc=parts.netloc.lower()).geturl()


def install_from_url(url: str, branch: str = "", name: str = "") -> str:
    check_access()
    if not url.strip():
        raise ExtensionError("Enter the URL of the extension's git repository")
    name = _check_name(name or re.sub(r"\.git$", "", url.strip().rstrip("/").split("/")[-1]))
    for ext in extensions.extensions:
        ext.read_info_from_repo()
        if ext.remote and _normalize_url(ext.remote) == _normalize_url(url):
            raise ExtensionError(f"Extension with this URL is already installed: {ext.name}")
    reason = reachable(url)
    if reason:
        raise ExtensionError(offline_message(url, reason))
    tmp = os.path.join(shared.paths.data, "tmp", name)
    shutil.rmtree(tmp, ignore_errors=True)
    command = ["git", "clone", "--filter=blob:none", *(["--branch", branch] if branch else []), url, tmp]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise ExtensionError(f"git clone of {url} took longer than 5 minutes; stopped") from None
    if result.returncode != 0:
        raise ExtensionError(f"git clone of {url} failed: {result.stderr.strip()[-1000:]}")
    subprocess.run(["git", "-C", tmp, "submodule", "update", "--init", "--recursive"], capture_output=True,
                   timeout=300)
    report = install_from_path(tmp, name)
    shutil.rmtree(tmp, ignore_errors=True)
    return report


def restart_program() -> None:
    """Replace this process with a fresh one with the same command line (after a short delay, so
    the answer to the click reaches the browser)."""
    def later():
        import time
        time.sleep(0.5)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    threading.Thread(target=later, daemon=True).start()
