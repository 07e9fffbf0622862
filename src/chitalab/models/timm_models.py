"""Any timm model by name, with timm's pretrained weights when asked for."""

from __future__ import annotations

import difflib
import logging
from typing import Any

from torch import nn

from ..errors import UserError, require_extra

log = logging.getLogger(__name__)


def create_timm_model(name: str, num_classes: int | None = None, pretrained: bool = False) -> nn.Module:
    """`timm.create_model(name)`; with `pretrained`, timm fetches the weights (or takes them from
    its local cache), and a failure names the alternatives instead of ending in a traceback."""
    require_extra("timm", "timm", f"model {name}")
    import timm  # imported here: it adds a second to every start-up otherwise

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise UserError(f"model.name={name!r} is not a timm model (see timm.list_models()){hint}")
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    try:
        model = timm.create_model(name, pretrained=True, **kwargs)
    except Exception as err:  # no network, no cached copy, or no weights for this name
        raise UserError(
            f"model.pretrained=true but timm could not load pretrained weights for {name!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); go online, point "
            "model.checkpoint at a weights file with model.pretrained=false, or set model.pretrained=false "
            "to prune random weights"
        ) from None
    log.info("loaded timm's pretrained weights for %s", name)
    trained_for = dict(getattr(model, "pretrained_cfg", None) or {}).get("num_classes")
    if num_classes is not None and trained_for and num_classes != trained_for:
        log.warning(
            "model.pretrained=true: timm's weights for %s classify %d classes, the data set has %d; the classifier "
            "head is new and random (fine-tune it with schedule=gradual, or prune on a %d-class data set)",
            name,
            trained_for,
            num_classes,
            trained_for,
        )
    return model
