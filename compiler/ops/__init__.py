"""The core op set.  Importing this package registers every op kind."""

from . import core, elementwise, indexing, linalg, nn, pooling, shape_ops  # noqa: F401  (registration side effects)
from . import quant  # noqa: F401,E402  (quantize, dequantize, qmatmul)
from . import fused  # noqa: F401,E402  (skip_layer_norm, bias_gelu: onnxruntime contrib fusions)
from . import control  # noqa: F401,E402  (cond: tf.cond decided at run time)
