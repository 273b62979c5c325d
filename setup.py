"""Ships the default flows and translations inside the package (bot/data/flows,
bot/data/messages), so `pip install .` gives a `veivis` that runs without the checkout.

Everything else is in pyproject.toml. In the checkout (an editable install) the code reads
flows/ and messages/ at the repository root, where coordinators edit them
(bot.app.settings.shipped_data_dir).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = ("flows", "messages")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders
        target = Path(self.build_lib) / "bot" / "data"
        for name in DATA:
            dest = target / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(ROOT / name, dest,
                            ignore=shutil.ignore_patterns("__pycache__", "*.mo"))


setup(cmdclass={"build_py": BuildWithData})
