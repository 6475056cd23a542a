"""The encoder registry: ``encoder.kind`` in a model's configuration -> encoder class.

The method's encoders (:mod:`.encoder`) and the ablation baselines' encoders
(:mod:`.baselines`) are listed here, the one place that imports both, so neither module
imports the other and :func:`build_encoder` needs no import inside a function.

Example:
    >>> build_encoder("deepset", latent_dim=2, in_features=2).latent_dim
    2
    >>> sorted(ENCODERS)[:3]
    ['deepset', 'deepset-mlpdec', 'deepset-setdec']
"""

from ..registry import Registry
from .baselines import DeepSetMLPDecoderEncoder, DeepSetSetDecoderEncoder, FlatMLPEncoder
from .encoder import DeepSetEncoder, NullEncoder, SetTransformerEncoder
from .nn import SetEncoder

__all__ = ["ENCODERS", "register_encoder", "build_encoder"]



def _check_encoder(kind: str, cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, SetEncoder)):
        raise ValueError(f"encoder {kind!r}: {cls!r} is not a SetEncoder subclass")


#: encoder kind (``config["encoder"]["kind"]``, ``train --encoder``) -> class; other
#: packages add encoders under the entry-point group ``openmm_closure.encoders``
ENCODERS = Registry("encoder", group="openmm_closure.encoders", check=_check_encoder)
for _kind, _cls in (
    ("deepset", DeepSetEncoder),
    ("settransformer", SetTransformerEncoder),
    ("none", NullEncoder),  # the no-closure model: d = 0
    # the ablation baselines' encoders (each holds its own reconstruction decoder)
    ("flat-mlp", FlatMLPEncoder),
    ("deepset-mlpdec", DeepSetMLPDecoderEncoder),
    ("deepset-setdec", DeepSetSetDecoderEncoder),
):
    ENCODERS.register(_kind, _cls)


def register_encoder(kind: str, cls: type) -> type:
    """Make ``cls`` (a :class:`~openmm_closure.models.nn.SetEncoder` subclass) buildable as ``kind``.

    Returns:
        ``cls``, so it can be used as ``register_encoder("mine", MyEncoder)`` after the class.

    Raises:
        ValueError: ``kind`` is taken by another class, or ``cls`` is not a SetEncoder.
    """
    if kind in ENCODERS and ENCODERS[kind] is not cls:
        raise ValueError(f"encoder kind {kind!r} is already registered to {ENCODERS[kind].__name__}")
    return ENCODERS.register(kind, cls)


def build_encoder(kind: str, **kwargs) -> SetEncoder:
    """Build the encoder registered as ``kind`` (``"deepset"``, ``"settransformer"``,
    ``"none"`` for no closure, or a baseline's kind) with the keyword arguments of its class.

    Raises:
        ValueError: ``kind`` is not registered.
    """
    return ENCODERS[kind](**kwargs)
