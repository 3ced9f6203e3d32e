"""Read and write JSON Lines files: one JSON object per line.

Reading reports the file and line of any bad line, so a broken data file
is easy to find. Writing goes to a temporary file first and then replaces
the target in one step, so a crash never leaves a half-written file.
"""

import json
import os
import tempfile


def iter_jsonl(path):
    """Yield (line_number, object) for every non-blank line of `path`."""
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield line_number, row


def read_jsonl(path):
    """All objects of a JSON Lines file, as a list of dicts."""
    return [row for _, row in iter_jsonl(path)]


def write_atomically(path, data):
    """Write `data` (bytes) to `path` so readers see the old file or the new one, never half."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The temporary file must be in the same folder: os.replace is only atomic within one filesystem.
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, file_mode())  # mkstemp makes it private (0600): give it the user's umask
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def file_mode() -> int:
    """The mode a new file gets from the user's umask (os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_jsonl(path, rows):
    """Write dicts to `path`, one JSON object per line, atomically."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_atomically(path, text.encode("utf-8"))
