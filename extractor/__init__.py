"""extractor: black-box model-extraction distillation."""
from pathlib import Path as _Path

# Installed, `teachers/`, `students/` and `datasets/` sit inside this package (pyproject's package-dir
# maps them there). Imported straight from a source checkout (pytest from the repository root puts the
# root first on sys.path), they are this folder's siblings: look for subpackages there too.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "teachers").is_dir() and (_checkout / "teachers" / "__init__.py").is_file():
    __path__.append(str(_checkout))
