"""Helpers for tests with extensions: copy the test extensions into a data folder, build a tiny wheel."""
import base64
import hashlib
import os
import shutil
import zipfile

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "extension_fixtures")


def install_fixture(data_dir, name: str, as_name: str | None = None) -> str:
    target = os.path.join(str(data_dir), "extensions", as_name or name)
    shutil.copytree(os.path.join(FIXTURES, name), target, dirs_exist_ok=True)
    return target


def build_wheel(folder, name="tiny-ext-pkg", version="0.1", requires=()) -> str:
    """A pure-Python wheel written by hand (a zip with dist-info), so no build backend is needed."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": "VALUE = 42\n",
        f"{dist_info}/METADATA": "Metadata-Version: 2.1\n"
                                f"Name: {name}\nVersion: {version}\n"
                                + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    os.makedirs(str(folder), exist_ok=True)
    path = os.path.join(str(folder), f"{module}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        for name_in_zip, text in files.items():
            wheel.writestr(name_in_zip, text)
    return path
