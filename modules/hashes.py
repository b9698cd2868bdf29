"""File hashes for checkpoints and VAEs: full sha256 (cached on disk by mtime) and the legacy hash."""
import hashlib
import json
import os
import threading

_lock = threading.Lock()


class HashCache:
    """`cache.json` holding {"hashes-<kind>": {name: {"mtime": float, "sha256": str}}}."""

    def __init__(self, filename: str):
        self.filename = filename
        self._data: dict | None = None

    def _load(self) -> dict:
        if self._data is None:
            try:
                with open(self.filename, encoding="utf8") as file:
                    self._data = json.load(file)
            except FileNotFoundError:
                self._data = {}
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                print(f"Hash cache {self.filename} is unreadable ({e}); starting a new one")
                self._data = {}
        return self._data

    def get(self, kind: str, name: str, path: str) -> str | None:
        with _lock:
            entry = self._load().get(f"hashes-{kind}", {}).get(name)
        if entry and entry.get("mtime", 0) >= os.path.getmtime(path):
            return entry["sha256"]
        return None

    def put(self, kind: str, name: str, path: str, sha256: str) -> None:
        with _lock:
            data = self._load()
            data.setdefault(f"hashes-{kind}", {})[name] = {
                "mtime": os.path.getmtime(path), "sha256": sha256}
            tmp = self.filename + ".tmp"
            with open(tmp, "w", encoding="utf8") as file:
                json.dump(data, file, indent=2)
            os.replace(tmp, self.filename)


def calculate_sha256(path: str, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(cache: HashCache, kind: str, name: str, path: str) -> str:
    cached = cache.get(kind, name, path)
    if cached:
        return cached
    value = calculate_sha256(path)
    cache.put(kind, name, path, value)
    return value


def legacy_model_hash(path: str) -> str:
    """First 8 hex of sha256 over 64 KiB starting at 1 MiB (A1111's old 'Model hash')."""
    try:
        with open(path, "rb") as file:
            file.seek(0x100000)
            return hashlib.sha256(file.read(0x10000)).hexdigest()[:8]
    except OSError:
        return "NOFILE"
