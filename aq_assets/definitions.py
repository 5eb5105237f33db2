"""The aq code location: every definition under `aq_assets/defs`, loaded as `dg` loads it
(`[tool.dg]` in pyproject.toml), for the `dagster` CLI, `workspace.yaml` and the image.

`dg.load_from_defs_folder` would find the folder through pyproject.toml, which an installed
package (the Docker image) does not have, so the tree is built from the module itself."""

import warnings
from pathlib import Path

import dagster as dg

import aq_assets.defs

with warnings.catch_warnings():
    # The components loader is a preview API and says so at every load.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = dg.ComponentTree.from_module(
        defs_module=aq_assets.defs, project_root=Path(__file__).resolve().parent.parent
    ).build_defs()
