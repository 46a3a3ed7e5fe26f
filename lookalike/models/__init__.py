"""Image (and text) encoders: `get_encoder(name)` and the registry of model names."""
from .base import Embeddings, ImageEncoder, l2_normalize
from .registry import DEFAULT_MODEL, check_model_name, get_encoder, register_model

__all__ = ["DEFAULT_MODEL", "Embeddings", "ImageEncoder", "check_model_name", "get_encoder", "l2_normalize",
           "register_model"]
