"""The README's example runs as printed and prints what the README says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    """The first python block of the README runs in a fresh directory and prints the promised line."""
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    promised = re.search(r"prints `([^`]+)`", text)
    assert code is not None
    assert promised is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == promised.group(1) + "\n"
    again = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert again.stdout == result.stdout
