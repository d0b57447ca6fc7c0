"""The core op set.  Importing this package registers every op kind."""

from . import core, elementwise, indexing, linalg, nn, shape_ops  # noqa: F401  (registration side effects)
from . import quant  # noqa: F401,E402  (quantize, dequantize, qmatmul: issue 6)
from . import fused  # noqa: F401,E402  (skip_layer_norm, bias_gelu: issue 7, onnxruntime contrib fusions)
