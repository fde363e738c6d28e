"""Atomic folder writes: everything is staged in a hidden sibling folder and swapped in with one rename.

A folder ``out`` is written through ``.out.tmp-PID-XXXX`` (same parent, so renames stay on one file system).
The swap exchanges the two folders with ``renameat2(RENAME_EXCHANGE)`` where Linux offers it, so a reader or a
kill sees either the old folder or the new one; elsewhere it renames the old folder to ``.out.old-PID-XXXX``
and the staged one into place, and the next write to ``out`` puts a lone backup back if a kill fell between the
two renames. Hidden folders whose process is gone (killed runs) are removed by the next write to the same path.

Output folders of commands (``--output-dir``) are replaced only when they are empty or a previous output of
the same kind (``is_own_output``), unless the caller passes ``overwrite=True``; a file there is always refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_STAGING_TAG = "tmp"
_BACKUP_TAG = "old"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# Weight files transformers' save_pretrained rewrites (shards, index); an old one must not survive a new save.
_WEIGHT_FILE = re.compile(r"(model|pytorch_model)(-\d{5}-of-\d{5})?\.(safetensors|bin)(\.index\.json)?")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _hidden_sibling(target: Path, tag: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(target.name)}\.{tag}-(\d+)(-[^.]*)?")


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def clean_stale_staging(target: str | os.PathLike) -> list[Path]:
    """Remove the hidden staging / backup siblings of ``target`` left by processes that no longer run; a backup
    whose swap was cut short (``target`` missing) is renamed back to ``target``. Returns the removed paths."""
    target = Path(target).absolute()
    if not target.parent.is_dir():
        return []
    removed = []
    for tag in (_BACKUP_TAG, _STAGING_TAG):
        pattern = _hidden_sibling(target, tag)
        for sibling in sorted(target.parent.iterdir()):
            match = pattern.fullmatch(sibling.name)
            if match is None or not sibling.is_dir() or _process_alive(int(match.group(1))):
                continue
            if tag == _BACKUP_TAG and not os.path.lexists(target):
                os.replace(sibling, target)
                continue
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


def staging_directory(target_dir: str | os.PathLike) -> Path:
    """Create an empty hidden folder next to ``target_dir`` (same file system, so the final swap is a rename),
    after cleaning what killed runs left next to it."""
    target_dir = Path(target_dir).absolute()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(target_dir)
    return Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.{_STAGING_TAG}-{os.getpid()}-", dir=target_dir.parent))


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(second))


def replace_directory(staged_dir: str | os.PathLike, target_dir: str | os.PathLike) -> None:
    """Put the fully written ``staged_dir`` in place of ``target_dir`` (a folder or nothing) in one swap; the old
    folder is deleted only afterwards. A file at ``target_dir`` is refused."""
    staged_dir, target_dir = Path(staged_dir).absolute(), Path(target_dir).absolute()
    if os.path.lexists(target_dir) and not target_dir.is_dir():
        raise ValueError(f"{target_dir} is a file, expected a folder; it was left as it is")
    if not target_dir.exists():
        os.replace(staged_dir, target_dir)
        return
    if _exchange(staged_dir, target_dir):
        shutil.rmtree(staged_dir, ignore_errors=True)
        return
    backup = tempfile.mkdtemp(prefix=f".{target_dir.name}.{_BACKUP_TAG}-{os.getpid()}-", dir=target_dir.parent)
    os.replace(target_dir, backup)
    try:
        os.replace(staged_dir, target_dir)
    except BaseException:
        os.replace(backup, target_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _link_tree(source: Path, destination: Path) -> None:
    """Hard-link (copy across file systems) ``source`` to ``destination``, leaving ``source`` untouched."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, destination)


def _link_or_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """One file (or symlink) of :func:`_link_tree`."""
    if os.path.islink(source):
        os.symlink(os.readlink(source), destination)
        return
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def commit_save(staged_dir: str | os.PathLike, target_dir: str | os.PathLike) -> None:
    """Finish a ``save_pretrained`` into ``target_dir`` staged in ``staged_dir``: entries of an existing
    ``target_dir`` the save did not write (e.g. a processor's files next to a model's, a Trainer's optimizer
    state) are linked into the staged folder, old weight shards are dropped when new weights were written, and
    the complete folder is swapped in with :func:`replace_directory`."""
    staged_dir, target_dir = Path(staged_dir), Path(target_dir)
    if target_dir.is_dir():
        wrote_weights = any(_WEIGHT_FILE.fullmatch(path.name) for path in staged_dir.iterdir())
        for entry in target_dir.iterdir():
            if os.path.lexists(staged_dir / entry.name) or (wrote_weights and _WEIGHT_FILE.fullmatch(entry.name)):
                continue
            _link_tree(entry, staged_dir / entry.name)
    replace_directory(staged_dir, target_dir)


@contextmanager
def staged_directory(target_dir: str | os.PathLike) -> Iterator[Path]:
    """``with staged_directory(folder) as staged:`` an empty folder ``staged`` (named like ``folder``) inside a
    hidden work folder next to ``folder``; nested staged writes into ``staged`` stay inside the work folder, which
    is removed on exit (after the caller swapped ``staged`` in, or on error)."""
    target_dir = Path(target_dir).absolute()
    workdir = staging_directory(target_dir)
    staged = workdir / target_dir.name
    staged.mkdir()
    try:
        yield staged
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def staged_save(save_directory: str | os.PathLike) -> Iterator[Path]:
    """``with staged_save(folder) as staging:`` write everything into ``staging``; on success it becomes
    ``folder`` (merged with what ``folder`` held, see :func:`commit_save`), on error it is discarded."""
    save_directory = Path(save_directory)
    if os.path.lexists(save_directory) and not save_directory.is_dir():
        raise ValueError(f"save_directory: {save_directory} is a file, expected a folder")
    with staged_directory(save_directory) as staging:
        yield staging
        commit_save(staging, save_directory)


def check_output_directory(
    target: str | os.PathLike,
    is_own_output: Callable[[Path], bool],
    description: str,
    overwrite: bool = False,
    argument: str = "output_dir",
) -> Path:
    """Refuse ``target`` unless it is absent, an empty folder, or a previous output (``is_own_output``) — or
    ``overwrite`` is set; a file is always refused. ``description`` names what the command writes (for errors).
    Stale staging folders of killed runs next to ``target`` are cleaned first. Returns the absolute path."""
    target = Path(target).absolute()
    clean_stale_staging(target)
    if os.path.lexists(target) and not target.is_dir():
        raise ValueError(f"{argument}: {target} is a file, expected a folder to write {description} into; it was left as it is")
    if target.is_dir() and any(target.iterdir()) and not overwrite and not is_own_output(target):
        flag = "--overwrite" if argument.startswith("--") else "overwrite=True"
        raise ValueError(
            f"{argument}: {target} is not empty and does not hold {description} written earlier; refusing to replace "
            f"it (nothing was changed). Choose a new or empty folder, or pass {flag} to replace its contents."
        )
    return target


@contextmanager
def output_directory(
    target: str | os.PathLike,
    is_own_output: Callable[[Path], bool],
    description: str,
    overwrite: bool = False,
    argument: str = "--output-dir",
) -> Iterator[Path]:
    """``with output_directory(dst, is_own, "a model folder", overwrite) as staging:`` checks ``dst`` with
    :func:`check_output_directory`, yields an empty staged folder to write into and, on success, checks again
    and swaps it in place of ``dst`` atomically; on error ``dst`` is left as it was and the staging is removed."""
    target = check_output_directory(target, is_own_output, description, overwrite, argument)
    with staged_directory(target) as staged:
        yield staged
        check_output_directory(target, is_own_output, description, overwrite, argument)
        replace_directory(staged, target)
