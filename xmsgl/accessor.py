"""The ``ds.msgl`` accessor: thin methods that forward to xmsgl's functions.

The accessor holds no trained state: fitting returns an :class:`xmsgl.Downscaler`
that the user keeps, saves and passes back to :meth:`MsglAccessor.downscale`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    from xmsgl.graph import RiverGraphs
    from xmsgl.model import Downscaler

__all__ = ["MsglAccessor"]


@xr.register_dataset_accessor("msgl")
class MsglAccessor:
    """Multi-scale river methods on an :class:`xarray.Dataset` (``ds.msgl``)."""

    def __init__(self, ds: xr.Dataset) -> None:
        # Accessors are built for every object they are used on; never raise here.
        self._ds = ds

    def validate(self, **kwargs: Any) -> xr.Dataset:
        """Check the convention; see :func:`xmsgl.convention.validate`."""
        from xmsgl.convention import validate

        return validate(self._ds, **kwargs)

    def to_convention(self, **kwargs: Any) -> xr.Dataset:
        """Rename to the convention; see :func:`xmsgl.convention.to_convention`."""
        from xmsgl.convention import to_convention

        return to_convention(self._ds, **kwargs)

    def graphs(self, **kwargs: Any) -> RiverGraphs:
        """Build the coarse, fine and cross-scale graphs; see :func:`xmsgl.graph.build_graphs`."""
        from xmsgl.graph import build_graphs

        return build_graphs(self._ds, **kwargs)

    def fit(self, method: str = "msgl", **kwargs: Any) -> Downscaler:
        """Fit a downscaling model; see :func:`xmsgl.model.fit`."""
        from xmsgl.model import fit

        return fit(self._ds, method=method, **kwargs)

    def downscale(self, model: Any, **kwargs: Any) -> xr.DataArray:
        """Downscale with a fitted model or a saved model path; see :func:`xmsgl.downscale.downscale`."""
        from xmsgl.downscale import downscale

        return downscale(self._ds, model, **kwargs)

    def sparsify(self, keep: float = 0.01, **kwargs: Any) -> xr.Dataset:
        """Keep a random share of fine observations; see :func:`xmsgl.sampling.sparsify`."""
        from xmsgl.sampling import sparsify

        return sparsify(self._ds, keep=keep, **kwargs)

    def evaluate(
        self, prediction: xr.DataArray, observed: xr.DataArray | None = None, **kwargs: Any
    ) -> xr.Dataset:
        """Score ``prediction`` against this dataset; see :func:`xmsgl.evaluate.evaluate`.

        ``observed`` defaults to the full truth ``reach_temp_true`` when the dataset
        has it (the synthetic basin), else to the observations ``reach_temp``.
        """
        from xmsgl.evaluate import evaluate

        if observed is None:
            for name in ("reach_temp_true", "reach_temp"):
                if name in self._ds:
                    observed = self._ds[name]
                    break
            else:
                from xmsgl.exceptions import SchemaError

                raise SchemaError(
                    "the dataset has neither 'reach_temp_true' nor 'reach_temp' to score "
                    "against; pass observed=<DataArray>"
                )
        return evaluate(prediction, observed, **kwargs)
