"""Parsimonious inference (Theodorakopoulos et al., arXiv 1701.05221): learned kernel switching whose
savings show up on the clock.

>>> from thinkonce import gating
>>> gated = gating.insert(model, after="all")                 # doctest: +SKIP
>>> loss = task_loss + gating.sparsity_loss(gated, gain=0.5)  # doctest: +SKIP
>>> fast = gating.deploy(gated, threshold=0.5)                # doctest: +SKIP

* :mod:`.lkam`: the switch module and its training relaxations;
* :mod:`.insert`: the fx transformation that places gates;
* :mod:`.loss`: the engaged-kernel cost;
* :mod:`.deploy` / :mod:`.gathered`: the inference model that skips switched-off kernels;
* :mod:`.recipe`: the training recipe (relaxation, schedule, compute budget);
* :mod:`.native_model` (:func:`native`): the deployed model as one compiled C call (kernels skipped inside the loops).
"""

from .deploy import DeployedModel, deploy
from .insert import GateError, gates, gating_layers, insert
from .lkam import LKAM, apply_gate
from .loss import engaged, sparsity_loss
from . import recipe
from .recipe import fit
from .native_model import NativeGated, native
from . import stream_ops as _stream_ops  # noqa: F401  (registers the streaming rules)

__all__ = ["LKAM", "insert", "sparsity_loss", "deploy", "DeployedModel", "GateError", "gates", "gating_layers",
           "engaged", "apply_gate", "fit", "recipe", "native", "NativeGated"]
